"""The desktop JWT on HTTP endpoints: ``@jwt_required`` for async views.

The token is read from ``Authorization`` only (bare, as the UI modules send
it, or ``Bearer <token>``). A token-like query parameter (any case) is refused
outright, even next to a valid header: URLs end up in access logs, browser
history and proxies, so a client that puts a token there must be told at once.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from common.responses import message_response
from connector import tokens

# Query parameters (compared lower-cased) a client might use to put a token into a URL.
TOKEN_QUERY_PARAMETERS = frozenset({"token", "access_token", "id_token", "jwt", "auth", "authorization"})
URL_TOKEN_MESSAGE = "Tokens are accepted only in the Authorization header, never in the URL."

AsyncView = Callable[..., Awaitable[HttpResponse]]


def jwt_required(view: AsyncView) -> AsyncView:
    """Run ``view`` only for a valid desktop token; sets ``request.desktop`` to its identity."""

    @functools.wraps(view)
    async def guarded(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if any(name.lower() in TOKEN_QUERY_PARAMETERS for name in request.GET):
            return unauthorized(URL_TOKEN_MESSAGE)
        try:
            request.desktop = tokens.validate_token(request.headers.get("Authorization"))
        except tokens.InvalidToken as error:
            return unauthorized(str(error))
        return await view(request, *args, **kwargs)

    return guarded


def unauthorized(message: str) -> JsonResponse:
    """401 in the contract's shape: ``{"message": <why>}``, with the challenge RFC 9110 requires of a 401."""
    response = message_response(401, message)
    response["WWW-Authenticate"] = "Bearer"
    return response
