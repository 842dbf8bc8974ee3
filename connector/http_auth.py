"""The desktop JWT on HTTP endpoints: ``@jwt_required`` for async views.

The token is read from ``Authorization`` only (bare, as the UI modules send
it, or ``Bearer <token>``). A token in the query string is refused outright:
URLs end up in access logs, browser history and proxies.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from connector import tokens

# Query parameters a client might use to smuggle a token into a URL.
TOKEN_QUERY_PARAMETERS = ("token", "access_token", "jwt", "auth")

AsyncView = Callable[..., Awaitable[HttpResponse]]


def jwt_required(view: AsyncView) -> AsyncView:
    """Run ``view`` only for a valid desktop token; sets ``request.desktop`` to its identity."""

    @functools.wraps(view)
    async def guarded(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if any(name in request.GET for name in TOKEN_QUERY_PARAMETERS):
            return unauthorized("Tokens are accepted only in the Authorization header, never in the URL.")
        try:
            request.desktop = tokens.validate_token(request.headers.get("Authorization"))
        except tokens.InvalidToken as error:
            return unauthorized(str(error))
        return await view(request, *args, **kwargs)

    return guarded


def unauthorized(message: str) -> JsonResponse:
    """401 in the contract's shape: ``{"message": <why>}``."""
    return JsonResponse({"message": message}, status=401)
