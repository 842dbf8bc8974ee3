"""The service's own HTTP error answers: one JSON shape, ``{"message": <why>}``, for every 4xx and 5xx it writes.

Google's sample answers 401 with this shape; every other refusal the service writes
itself (429, 503, ...) uses it too, so a client needs one way to read them.
Answers relayed from elsewhere (Dialogflow's) are passed on as they came.
"""

from __future__ import annotations

from django.http import JsonResponse


def message_response(
    status: int, message: str, *, retry_after: int | None = None, logged: bool = False
) -> JsonResponse:
    """``{"message": message}`` with ``status``; ``Retry-After`` (seconds) when given.

    ``logged``: the caller has already logged why it answers so; Django then
    adds no second line of its own (``django.request`` logs every 5xx at ERROR).
    """
    response = JsonResponse({"message": message}, status=status)
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    if logged:
        response._has_been_logged = True  # type: ignore[attr-defined]  # django.utils.log.log_response honours it
    return response
