"""Verdict on the OIDC token Pub/Sub attaches to an authenticated push.

With authentication configured on a push subscription, Pub/Sub sends
``Authorization: Bearer <JWT>``: a Google-signed ID token whose ``email`` is
the subscription's service account and whose ``aud`` is the configured
audience (by default the push endpoint URL). This module judges such a token
against certificates it is given; fetching them is ``interceptor.google_certs``'s job.

Outcomes: the claims, or ``Unauthenticated`` (401: no token, not a Google
token, wrong audience, expired...) or ``Forbidden`` (403: a genuine Google
token, but for another or unverified account). Reasons never contain the
token or attacker-chosen text: google-auth's own messages may quote the token,
so they are mapped to fixed phrases here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.http import HttpRequest
from django.utils.encoding import escape_uri_path
from google.auth import jwt

from common.bearer import bearer_token

#: The issuers of Google ID tokens (google.oauth2.id_token accepts exactly these).
GOOGLE_ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
#: Tolerated difference between Google's clock and ours, for ``iat`` and ``exp``.
CLOCK_SKEW_SECONDS = 10


class PushAuthError(Exception):
    """The push is refused; ``status`` is the HTTP answer and ``reason`` is safe to log and return."""

    status = 401

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Unauthenticated(PushAuthError):
    """No valid Google token for this endpoint (401)."""

    status = 401


class Forbidden(PushAuthError):
    """A valid Google token, but not for the configured, verified service account (403)."""

    status = 403


def token_from_header(authorization: str | None) -> str:
    """The JWT in a ``Bearer`` ``Authorization`` value, checked for shape only (no certificates needed).

    Shape is checked first so that garbage never costs a certificate fetch.
    """
    if not authorization or not authorization.strip():
        raise Unauthenticated("Authorization header is missing.")
    token = bearer_token(authorization, scheme_required=True)
    if not token:
        raise Unauthenticated("Authorization header is not 'Bearer <token>'.")
    try:
        header = jwt.decode_header(token)
    except (ValueError, TypeError, RecursionError):
        # binascii.Error, UnicodeDecodeError and google-auth's MalformedError are all ValueErrors;
        # RecursionError: a header or payload of deeply nested JSON (a few KB suffice).
        raise Unauthenticated("Bearer token is not a well-formed JWT.") from None
    if not isinstance(header.get("alg"), str):
        raise Unauthenticated("Bearer token names no signing algorithm.")
    return token


def verify(
    token: str, certificates: Mapping[str, str], *, audiences: Sequence[str], service_account: str
) -> Mapping[str, Any]:
    """Return the token's claims if Google signed it for ``audiences`` and ``service_account``.

    Signature (against ``certificates``: key id -> PEM), ``iat``/``exp`` and
    audience are checked by ``google.auth.jwt.decode``; issuer, ``email`` and
    ``email_verified`` here. Pure CPU: no I/O.
    """
    header = jwt.decode_header(token)
    key_id = header.get("kid")
    if key_id is not None and (not isinstance(key_id, str) or key_id not in certificates):
        # Google lists each key well before signing with it, so a fresh copy always holds it.
        raise Unauthenticated("Token is signed with a key Google does not publish.")
    try:
        claims = jwt.decode(
            token, certs=certificates, audience=list(audiences), clock_skew_in_seconds=CLOCK_SKEW_SECONDS
        )
    except (ValueError, TypeError) as error:
        raise Unauthenticated(_decode_failure(str(error), token, audiences)) from None

    issuer = claims.get("iss")
    if issuer not in GOOGLE_ISSUERS:
        raise Unauthenticated("Token is not issued by Google (iss).")
    email = claims.get("email")
    if not isinstance(email, str) or email.casefold() != service_account.strip().casefold():
        # Naming the account helps an operator who configured the wrong one; quoted, so it cannot forge log lines.
        raise Forbidden(f"Token is for {_quoted(email)}, not the configured push service account.")
    if claims.get("email_verified") not in (True, "true", "True"):
        raise Forbidden("Token's email is not verified (email_verified).")
    return claims


def _decode_failure(message: str, token: str, audiences: Sequence[str]) -> str:
    # Matched on google-auth's wording (tests pin each case); anything unrecognised gets a generic reason.
    if message.startswith("Could not verify token signature"):
        return "Token signature does not verify against Google's certificates."
    if message.startswith("Token expired"):
        return "Token has expired."
    if message.startswith("Token used too early"):
        return "Token is not valid yet (iat in the future)."
    if "does not contain required claim" in message:
        return "Token lacks iat or exp."
    if "wrong audience" in message:
        # google-auth checks the audience last, so the signature held: this is a genuine Google token,
        # though anyone can get one for an audience of their choosing; quoted and cut short for the log.
        return f"Token audience {_quoted(token_audience(token))} is not {' or '.join(map(_quoted, audiences))}."
    if message.startswith(("Unsupported signature algorithm", "Certificate key type does not match")):
        return "Token uses a signing algorithm Google does not use for these certificates."
    return "Token is not a valid Google ID token."


def _quoted(value: object, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def token_audience(token: str) -> object:
    """The ``aud`` claim, read without verification (for the wrong-audience reason only)."""
    try:
        return jwt.decode(token, verify=False).get("aud")
    except (ValueError, TypeError):
        return None


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
