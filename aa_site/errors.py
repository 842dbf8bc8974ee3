"""Django's error views for every role, in the service's one error shape: JSON ``{"message": ...}``.

They answer what reaches Django's own handlers rather than a view: an
unknown path (404), a request Django refuses before any view (400, 403), an
unexpected exception outside the DRF views (500). Django's defaults are HTML
pages, which no client of this service reads.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from common.responses import message_response


def bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """400."""
    return message_response(400, "Bad request.")


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """403."""
    return message_response(403, "Forbidden.")


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """404: no such path on this role."""
    return message_response(404, "Not found.")


def server_error(request: HttpRequest) -> JsonResponse:
    """500 (Django has logged the exception)."""
    return message_response(500, "Internal error; the service logged it.")
