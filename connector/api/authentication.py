"""DRF authentication of the desktop JWT (``connector.tokens``): ``Authorization`` only, bare or ``Bearer``.

A token-like query parameter (any case) is refused outright, even next to a
valid header: URLs end up in access logs, browser history and proxies, so a
client that puts a token there must be told at once. A request without a
token is left unauthenticated (``None``), so the view's permission answers
401 ``Token is missing.``; every refusal carries ``WWW-Authenticate: Bearer``
(``authenticate_header``), as RFC 9110 requires of a 401.
"""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication

from common.bearer import bearer_token
from connector import tokens

# Query parameters (compared lower-cased) a client might use to put a token into a URL.
TOKEN_QUERY_PARAMETERS = frozenset({"token", "access_token", "id_token", "jwt", "auth", "authorization"})
URL_TOKEN_MESSAGE = "Tokens are accepted only in the Authorization header, never in the URL."


class DesktopJWTAuthentication(BaseAuthentication):
    """``request.user``: the ``tokens.DesktopIdentity`` of a valid desktop JWT; ``request.auth``: its ``jti``."""

    def authenticate(self, request: Any) -> tuple[tokens.DesktopIdentity, str] | None:
        """The identity and token id, ``None`` without a token, ``AuthenticationFailed`` (401) for a bad one."""
        if any(name.lower() in TOKEN_QUERY_PARAMETERS for name in request.query_params):
            raise exceptions.AuthenticationFailed(URL_TOKEN_MESSAGE)
        authorization = request.headers.get("Authorization")
        if not bearer_token(authorization):
            return None
        try:
            identity = tokens.validate_token(authorization)
        except tokens.InvalidToken as error:
            raise exceptions.AuthenticationFailed(str(error)) from None
        return identity, identity.token_id

    def authenticate_header(self, request: Any) -> str:
        """The challenge of every 401 of this scheme."""
        return "Bearer"
