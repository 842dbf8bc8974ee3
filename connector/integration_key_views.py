"""``/conversation-name``: the contract's key/value endpoint, JWT required.

    POST   {"conversationIntegrationKey": k, "conversationName": n}  -> 200 {k: n}           | 400 Bad request
    GET    ?conversationIntegrationKey=k                             -> 200 {"conversationName": n or ""} | 400
    DELETE ?conversationIntegrationKey=k                             -> 200 Success | 404 Not found | 400

Plain-text bodies as in the sample; Redis unreachable is 503 JSON ``{"message"}``.
Keys and names are never logged: a key is often a customer's phone number.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_http_methods

from common.responses import message_response
from connector import integration_keys
from connector.http_auth import jwt_required
from connector.http_json import json_object

KEY_FIELD = "conversationIntegrationKey"
NAME_FIELD = "conversationName"


@require_http_methods(["GET", "POST", "DELETE"])
@jwt_required
async def conversation_name(request: HttpRequest) -> HttpResponse:
    """Set (POST), read (GET) or remove (DELETE) the conversation name stored for an integration key."""
    try:
        if request.method == "POST":
            return await _post(request)
        key = _text(request.GET.get(KEY_FIELD), integration_keys.MAX_KEY_LENGTH)
        if key is None:
            return _bad_request()
        if request.method == "GET":
            return JsonResponse({NAME_FIELD: await integration_keys.get(key) or ""})
        if await integration_keys.delete(key):
            return _text_response("Success", 200)
        return _text_response("Not found", 404)
    except integration_keys.StoreUnavailable:
        return message_response(503, "The conversation name store (Redis) is unavailable.")


async def _post(request: HttpRequest) -> HttpResponse:
    """Store the body's name under its key; 400 unless the body is a JSON object holding both."""
    body = json_object(request.body)
    if body is None:
        return _bad_request()
    key = _text(body.get(KEY_FIELD), integration_keys.MAX_KEY_LENGTH)
    name = _text(body.get(NAME_FIELD), integration_keys.MAX_NAME_LENGTH)
    if key is None or name is None:
        return _bad_request()
    await integration_keys.put(key, name)
    return JsonResponse({key: name})


def _text(value: Any, max_length: int) -> str | None:
    """``value`` when it is a non-empty string of at most ``max_length`` characters that UTF-8 can encode."""
    if not (isinstance(value, str) and 0 < len(value) <= max_length):
        return None
    try:
        # Keys are hashed and names stored as UTF-8: a lone surrogate (a JSON "\ud800" escape) cannot be.
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


def _bad_request() -> HttpResponse:
    return _text_response("Bad request", 400)


def _text_response(text: str, status: int) -> HttpResponse:
    return HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")
