"""DRF authentication: the desktop JWT (``connector.tokens``), and a service account's Google ID token.

Both come in ``Authorization`` only, bare or ``Bearer``.

A token-like query parameter (any case) is refused outright, even next to a
valid header: URLs end up in access logs, browser history and proxies, so a
client that puts a token there must be told at once. A request without a
token is left unauthenticated (``None``), so the view's permission answers
401 ``Token is missing.``; every refusal carries ``WWW-Authenticate: Bearer``
(``authenticate_header``), as RFC 9110 requires of a 401.

``GoogleServiceAccountAuthentication`` goes first where both are declared: it
takes only tokens that claim Google as their issuer (``None`` for any other,
so the desktop JWT class judges them) and refuses a bad one itself, with
Google's verdict (401/403, logged once without the token) or 503 when
Google's certificates cannot be fetched. With no allow-list
(``SERVICE_AUTH_ALLOWED_CALLERS``) it takes nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication

from common import google_certs
from common.bearer import bearer_token
from connector import tokens
from connector.http import service_callers

logger = logging.getLogger(__name__)

# Query parameters (compared lower-cased) a client might use to put a token into a URL.
TOKEN_QUERY_PARAMETERS = frozenset({"token", "access_token", "id_token", "jwt", "auth", "authorization"})
URL_TOKEN_MESSAGE = "Tokens are accepted only in the Authorization header, never in the URL."
# Seconds a caller should wait when Google's certificates could not be fetched.
CERTIFICATES_RETRY_AFTER_SECONDS = 5


class CertificatesUnavailable(exceptions.APIException):
    """503 with ``Retry-After`` (``wait``, as on DRF's ``Throttled``): the token could not be judged."""

    status_code = 503
    default_detail = "Google's certificates are unavailable; retry later."
    default_code = "certificates_unavailable"
    wait = CERTIFICATES_RETRY_AFTER_SECONDS
    logged = True  # GoogleServiceAccountAuthentication logs why before raising it


def refuse_url_tokens(request: Any) -> None:
    """``AuthenticationFailed`` when a query parameter looks like a token (any case)."""
    if any(name.lower() in TOKEN_QUERY_PARAMETERS for name in request.query_params):
        raise exceptions.AuthenticationFailed(URL_TOKEN_MESSAGE)


class DesktopJWTAuthentication(BaseAuthentication):
    """``request.user``: the ``tokens.DesktopIdentity`` of a valid desktop JWT; ``request.auth``: its ``jti``."""

    def authenticate(self, request: Any) -> tuple[tokens.DesktopIdentity, str] | None:
        """The identity and token id, ``None`` without a token, ``AuthenticationFailed`` (401) for a bad one."""
        refuse_url_tokens(request)
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


class GoogleServiceAccountAuthentication(BaseAuthentication):
    """``request.user``: the ``service_callers.ServiceCaller`` of an accepted Google ID token; ``request.auth``:
    ``service:<email>`` (what per-token rate limits count it under)."""

    async def authenticate(self, request: Any) -> tuple[service_callers.ServiceCaller, str] | None:
        """The caller, ``None`` for a request without a Google ID token (or with the feature off), else a refusal."""
        if not service_callers.enabled():
            return None
        authorization = request.headers.get("Authorization")
        if not service_callers.is_id_token(authorization):
            return None
        refuse_url_tokens(request)
        try:
            caller = await service_callers.authenticate(authorization)
        except service_callers.IdTokenError as error:
            logger.warning("Refusing a service caller on %s with HTTP %s: %s", request.path, error.status, error.reason)
            if error.status == 403:
                raise exceptions.PermissionDenied(error.reason) from None
            raise exceptions.AuthenticationFailed(error.reason) from None
        except google_certs.CertificatesUnavailable as error:
            logger.error("Cannot check a service caller's token on %s: %s; answering 503", request.path, error)
            raise CertificatesUnavailable() from None
        logger.debug("Service caller %s accepted on %s", caller.email, request.path)
        return caller, caller.token_id

    def authenticate_header(self, request: Any) -> str:
        """The challenge of every 401 of this scheme."""
        return "Bearer"
