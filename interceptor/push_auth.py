"""Verdict on the OIDC token Pub/Sub attaches to an authenticated push.

With authentication configured on a push subscription, Pub/Sub sends
``Authorization: Bearer <JWT>``: a Google-signed ID token whose ``email`` is
the subscription's service account and whose ``aud`` is the configured
audience (by default the push endpoint URL). ``common.google_id_tokens``
judges the token (signature, times, audience, issuer) against certificates
it is given (fetched by ``common.google_certs``); this module adds the push's
own rules: the one service account, verified, and the push URL as default audience.

Outcomes: the claims, or ``Unauthenticated`` (401: no token, not a Google
token, wrong audience, expired...) or ``Forbidden`` (403: a genuine Google
token, but for another or unverified account). Reasons never contain the
token or attacker-chosen text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.http import HttpRequest
from django.utils.encoding import escape_uri_path

from common import google_id_tokens
from common.google_id_tokens import CLOCK_SKEW_SECONDS, GOOGLE_ISSUERS, Forbidden, Unauthenticated, token_from_header

# The push path's names for the shared verdicts (its callers catch PushAuthError).
PushAuthError = google_id_tokens.IdTokenError
__all__ = [
    "CLOCK_SKEW_SECONDS",
    "GOOGLE_ISSUERS",
    "Forbidden",
    "PushAuthError",
    "Unauthenticated",
    "request_audiences",
    "token_from_header",
    "verify",
]


def verify(
    token: str, certificates: Mapping[str, str], *, audiences: Sequence[str], service_account: str
) -> Mapping[str, Any]:
    """Return the token's claims if Google signed it for ``audiences`` and ``service_account``.

    Signature, ``iat``/``exp``, audience and issuer: ``google_id_tokens.verify``;
    ``email`` and ``email_verified`` here. Pure CPU: no I/O.
    """
    claims = google_id_tokens.verify(token, certificates, audiences=audiences)
    email = claims.get("email")
    if not isinstance(email, str) or email.casefold() != service_account.strip().casefold():
        # Naming the account helps an operator who configured the wrong one; quoted, so it cannot forge log lines.
        raise Forbidden(f"Token is for {google_id_tokens.quoted(email)}, not the configured push service account.")
    if not google_id_tokens.email_is_verified(claims):
        raise Forbidden("Token's email is not verified (email_verified).")
    return claims


def request_audiences(request: HttpRequest) -> list[str]:
    """The audiences Pub/Sub uses by default for this request: its own URL, ``scheme://host/path``.

    The scheme comes from ``X-Forwarded-Proto`` when present: behind Cloud Run
    (and most load balancers) TLS ends at Google's front end and the container
    is reached over plain http, while Pub/Sub signed for the https URL.
    Trusting the header is harmless here, because it can only swap http for
    https on this same host and path. The host is ``request.get_host()``,
    which Django checks against ``ALLOWED_HOSTS``. If the endpoint was
    configured with a query string, that form is accepted too.
    """
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    scheme = forwarded if forwarded in ("http", "https") else request.scheme
    base = f"{scheme}://{request.get_host()}{escape_uri_path(request.path)}"
    query = request.META.get("QUERY_STRING", "")
    return [base, f"{base}?{query}"] if query else [base]
