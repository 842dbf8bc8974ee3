"""``/conversation-name``: the contract's key/value endpoint, an async DRF view; a desktop JWT or service caller.

    POST   {"conversationIntegrationKey": k, "conversationName": n}  -> 200 {k: n}           | 400 Bad request
    GET    ?conversationIntegrationKey=k                             -> 200 {"conversationName": n or ""} | 400
    DELETE ?conversationIntegrationKey=k                             -> 200 Success | 404 Not found | 400

Plain-text bodies as in the sample. Our own refusals are JSON ``{"message"}``:
401 (token), 413 (body over ``API_MAX_BODY_BYTES``), 429 (more than
``CONVERSATION_NAME_RATE_LIMIT`` POSTs, or ``CONVERSATION_NAME_LOOKUP_RATE_LIMIT``
GETs and DELETEs, with one token; or more lookups than
``CONVERSATION_NAME_LOOKUP_USER_RATE_LIMIT`` for one user, or
``CONVERSATION_NAME_LOOKUP_ADDRESS_RATE_LIMIT`` from one client address),
503 (Redis unreachable), 507 (a POST of a new key while the store holds
``CONVERSATION_NAME_MAX_ENTRIES``).
The name must be a conversation name (``events.conversations.normalise``
accepts it) and is stored as given. Keys and names are never logged: a key
is often a customer's phone number.
"""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpResponse, JsonResponse
from rest_framework.exceptions import ParseError
from rest_framework.permissions import IsAuthenticated

from common.responses import message_response
from connector.http import integration_keys
from connector.http.api.authentication import DesktopJWTAuthentication, GoogleServiceAccountAuthentication
from connector.http.api.parsers import JsonObjectParser
from connector.http.api.throttling import (
    ConversationNameAddressLookupThrottle,
    ConversationNameLookupThrottle,
    ConversationNameUserLookupThrottle,
    ConversationNameWriteThrottle,
)
from connector.http.api.views import AsyncAPIView
from events import conversations

logger = logging.getLogger(__name__)

KEY_FIELD = "conversationIntegrationKey"
NAME_FIELD = "conversationName"
UNAVAILABLE_MESSAGE = "The conversation name store (Redis) is unavailable."
FULL_MESSAGE = "The conversation name store is full: delete entries or let them expire."


class ConversationNameView(AsyncAPIView):
    """Set (POST), read (GET) or remove (DELETE) the conversation name stored for an integration key."""

    http_method_names = ["get", "post", "delete"]
    # A service account's Google ID token first (it passes on any other token), then the desktop JWT.
    authentication_classes = [GoogleServiceAccountAuthentication, DesktopJWTAuthentication]
    permission_classes = [IsAuthenticated]
    throttle_classes = [ConversationNameWriteThrottle, ConversationNameLookupThrottle,
                        ConversationNameUserLookupThrottle, ConversationNameAddressLookupThrottle]
    parser_classes = [JsonObjectParser]

    async def post(self, request: Any) -> HttpResponse:
        """Store the body's name under its key; 400 unless the body is a JSON object holding both."""
        try:
            body = request.data  # RequestTooLarge (413) is not a ParseError and goes on to the exception handler
        except ParseError:
            return _bad_request()
        key = _text(body.get(KEY_FIELD), integration_keys.MAX_KEY_LENGTH)
        name = _text(body.get(NAME_FIELD), conversations.MAX_LENGTH)
        if key is None or name is None or not _is_conversation_name(name):
            return _bad_request()
        try:
            await integration_keys.put(key, name)
        except integration_keys.StoreUnavailable:
            return message_response(503, UNAVAILABLE_MESSAGE)
        except integration_keys.StoreFull:
            logger.warning("Refusing a /conversation-name entry: the store holds CONVERSATION_NAME_MAX_ENTRIES")
            return message_response(507, FULL_MESSAGE, logged=True)
        return JsonResponse({key: name})

    async def get(self, request: Any) -> HttpResponse:
        """The stored name, ``""`` when there is none."""
        key = _text(request.query_params.get(KEY_FIELD), integration_keys.MAX_KEY_LENGTH)
        if key is None:
            return _bad_request()
        try:
            name = await integration_keys.get(key)
        except integration_keys.StoreUnavailable:
            return message_response(503, UNAVAILABLE_MESSAGE)
        return JsonResponse({NAME_FIELD: name or ""})

    async def delete(self, request: Any) -> HttpResponse:
        """``Success``, or ``Not found`` when nothing was stored."""
        key = _text(request.query_params.get(KEY_FIELD), integration_keys.MAX_KEY_LENGTH)
        if key is None:
            return _bad_request()
        try:
            removed = await integration_keys.delete(key)
        except integration_keys.StoreUnavailable:
            return message_response(503, UNAVAILABLE_MESSAGE)
        return _text_response("Success", 200) if removed else _text_response("Not found", 404)


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


def _is_conversation_name(name: str) -> bool:
    """Whether ``name`` is a conversation name in either form (it is stored as given, not normalised)."""
    try:
        conversations.normalise(name)
    except conversations.InvalidConversationName:
        return False
    return True


def _bad_request() -> HttpResponse:
    return _text_response("Bad request", 400)


def _text_response(text: str, status: int) -> HttpResponse:
    return HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")


conversation_name = ConversationNameView.as_view()
