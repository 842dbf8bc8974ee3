"""JSON-object request bodies of the connector's HTTP endpoints."""

from __future__ import annotations

from typing import Any

from common import untrusted


def json_object(body: bytes) -> dict[str, Any] | None:
    """``body`` as a JSON object, ``{}`` when it is blank, ``None`` when it is anything else."""
    if not body.strip():
        return {}
    try:
        return untrusted.json_object(body)
    except untrusted.NotJsonObject:
        return None
