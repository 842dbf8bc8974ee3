"""The connector's own JSON on HTTP: ``{"message"}`` answers (CONTRACT.md) and JSON-object request bodies."""

from __future__ import annotations

import json
from typing import Any

from django.http import JsonResponse


def message_response(status: int, message: str) -> JsonResponse:
    """An answer of our own in the contract's shape: ``{"message": <why>}`` with ``status``."""
    return JsonResponse({"message": message}, status=status)


def json_object(body: bytes) -> dict[str, Any] | None:
    """``body`` as a JSON object, ``{}`` when it is blank, ``None`` when it is anything else."""
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        # ValueError: JSONDecodeError, UnicodeDecodeError, and integers longer than Python's
        # int_max_str_digits (valid JSON that json.loads refuses); RecursionError: deep nesting.
        return None
    return value if isinstance(value, dict) else None
