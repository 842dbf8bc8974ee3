"""Verdict on a Google-signed OIDC ID token (Pub/Sub's push token, a service account's ID token).

Google signs an ID token with one of the keys it publishes (``common.google_certs``
fetches them); its claims name the audience it was requested for (``aud``), its
issuer (``iss``), the account (``email``) and whether Google verified that
address (``email_verified``). This module judges such a token against
certificates it is given; which accounts may call is the caller's business
(``interceptor.push_auth``: the one push service account; ``connector.http.service_callers``:
an allow-list).

Outcomes: the claims, or ``Unauthenticated`` (401: no token, not a Google
token, wrong audience, expired...) or ``Forbidden`` (403: a genuine Google
token, but for an unverified address, or an account the caller refuses).
Reasons never contain the token or unquoted attacker-chosen text: google-auth's
own messages may quote the token, so they are mapped to fixed phrases here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from google.auth import jwt

from common.bearer import bearer_token

#: The issuers of Google ID tokens (google.oauth2.id_token accepts exactly these).
GOOGLE_ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
#: Tolerated difference between Google's clock and ours, for ``iat`` and ``exp``.
CLOCK_SKEW_SECONDS = 10


class IdTokenError(Exception):
    """The token is refused; ``status`` is the HTTP answer and ``reason`` is safe to log and return."""

    status = 401

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Unauthenticated(IdTokenError):
    """No valid Google token for this audience (401)."""

    status = 401


class Forbidden(IdTokenError):
    """A valid Google token, but for an account that is refused or not verified (403)."""

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


def claims_google_issuer(token: str) -> bool:
    """Whether ``token`` is a JWT whose unverified ``iss`` is Google's: it means to be a Google ID token.

    Tells a Google ID token from another bearer token (a desktop JWT) before
    anything is verified; never raises, whatever ``token`` holds.
    """
    try:
        claims = jwt.decode(token, verify=False)
    except (ValueError, TypeError, RecursionError):
        return False
    return isinstance(claims, dict) and isinstance(claims.get("iss"), str) and claims["iss"] in GOOGLE_ISSUERS


def verify(token: str, certificates: Mapping[str, str], *, audiences: Sequence[str]) -> Mapping[str, Any]:
    """Return the token's claims if Google signed it (against ``certificates``: key id -> PEM) for ``audiences``.

    Signature, ``iat``/``exp`` and audience are checked by ``google.auth.jwt.decode``;
    the issuer here. The account (``email``) is the caller's to judge, with
    ``verified_email`` or its own rule. Pure CPU: no I/O.
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
    if claims.get("iss") not in GOOGLE_ISSUERS:
        raise Unauthenticated("Token is not issued by Google (iss).")
    return claims


def email_is_verified(claims: Mapping[str, Any]) -> bool:
    """Whether Google vouches for the token's ``email`` (``email_verified``, a boolean or its string form)."""
    return claims.get("email_verified") in (True, "true", "True")


def verified_email(claims: Mapping[str, Any]) -> str:
    """The token's ``email``, or ``Forbidden`` when there is none or Google did not verify it."""
    email = claims.get("email")
    if not isinstance(email, str) or not email:
        raise Forbidden("Token names no email (request it with the account's email included).")
    if not email_is_verified(claims):
        raise Forbidden("Token's email is not verified (email_verified).")
    return email


def quoted(value: object, limit: int = 200) -> str:
    """``value`` as a quoted literal cut to ``limit`` characters: it cannot forge log lines or flood them."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


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
        return f"Token audience {quoted(token_audience(token))} is not {' or '.join(map(quoted, audiences))}."
    if message.startswith(("Unsupported signature algorithm", "Certificate key type does not match")):
        return "Token uses a signing algorithm Google does not use for these certificates."
    return "Token is not a valid Google ID token."


def token_audience(token: str) -> object:
    """The ``aud`` claim, read without verification (for the wrong-audience reason only)."""
    try:
        return jwt.decode(token, verify=False).get("aud")
    except (ValueError, TypeError, RecursionError):
        return None
