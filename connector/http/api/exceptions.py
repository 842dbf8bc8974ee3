"""One exception handler for every DRF view of the connector: each error is the contract's ``{"message": ...}``.

The body is written by ``common.responses.message_response`` (Django's
``JsonResponse``), byte for byte what the service answered before DRF, with
``WWW-Authenticate`` on a 401, ``Retry-After`` on a 429 (and a 503 that says when) and ``Allow`` on a 405.
Anything that is not an ``APIException`` is a defect of ours: one ERROR line
with its traceback, and a JSON 500, never Django's HTML page.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpResponse
from rest_framework import exceptions

from common.responses import message_response

logger = logging.getLogger(__name__)

INTERNAL_ERROR_MESSAGE = "Internal error; the service logged it."


class RequestTooLarge(exceptions.APIException):
    """A request body over an endpoint's documented limit."""

    status_code = 413
    default_detail = "The request body is too large."
    default_code = "request_too_large"


class RateLimited(exceptions.Throttled):
    """429 with a message of our own (DRF's ``Throttled`` appends its own sentence to any detail)."""

    def __init__(self, wait: float, message: str) -> None:
        exceptions.APIException.__init__(self, message)
        self.wait = wait


def exception_handler(exc: Exception, context: dict[str, Any]) -> HttpResponse:
    """The answer for ``exc`` raised in a connector view (``REST_FRAMEWORK["EXCEPTION_HANDLER"]``)."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        view = context.get("view")
        logger.error("Unexpected error in %s", type(view).__name__, exc_info=exc)
        response = message_response(500, INTERNAL_ERROR_MESSAGE)
        response._has_been_logged = True  # type: ignore[attr-defined]  # not a second ERROR line from Django
        return response
    retry_after = None
    wait = getattr(exc, "wait", None)  # DRF's Throttled, and our own 503s that say when to retry
    if wait is not None:
        retry_after = max(1, math.ceil(wait))
    # An exception that says it was logged (``logged = True``) gets no second ERROR line from Django.
    response = message_response(
        exc.status_code, first_message(exc.detail), retry_after=retry_after, logged=getattr(exc, "logged", False)
    )
    auth_header = getattr(exc, "auth_header", None)
    if auth_header:
        response["WWW-Authenticate"] = auth_header
    if isinstance(exc, exceptions.MethodNotAllowed) and context.get("view") is not None:
        response["Allow"] = ", ".join(context["view"].allowed_methods)
    return response


def first_message(detail: Any) -> str:
    """The text of ``detail``: itself when it is text, else its first entry (DRF nests lists and dicts)."""
    while isinstance(detail, (list, dict)) and detail:
        detail = next(iter(detail.values())) if isinstance(detail, dict) else detail[0]
    return str(detail) if detail else "Request refused."
