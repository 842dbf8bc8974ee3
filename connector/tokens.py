"""The desktop JWT: issued by /register, required by every protected entry point.

Built on djangorestframework-simplejwt's ``Token`` machinery with our own
``TokenBackend`` (HS256 pinned, keys from ``connector.jwt_secret``), so the
secrets are read at start-up instead of at import as simplejwt's module-level
backend would. Claims: the contract's ``exp``, ``gcp_agent_assist_project``
and ``gcp_agent_assist_user``, plus simplejwt's ``token_type``, ``iat`` and ``jti``.
Once the signature is verified, every claim present must have its JSON type
and range (``check_claim_types``) before PyJWT and simplejwt look at it, so a
correctly signed but malformed token is refused like any other.

Rotation: new tokens are always signed with the current secret; a token
signed with the previous secret (``JWT_PREVIOUS_SECRET_*``) is accepted
while that secret stays configured, so desktops are not logged out when the
secret changes. Remove it once the longest token lifetime has passed.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar

import jwt
from django.conf import settings
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.exceptions import TokenBackendError, TokenError
from rest_framework_simplejwt.tokens import Token

from common.bearer import bearer_token
from connector import jwt_secret

ALGORITHM = "HS256"
PROJECT_CLAIM = "gcp_agent_assist_project"
USER_CLAIM = "gcp_agent_assist_user"
MISSING_TOKEN_MESSAGE = "Token is missing."
EXPIRED_TOKEN_MESSAGE = "Token is expired"  # simplejwt's wording for an expired token
INVALID_TOKEN_MESSAGE = "Token is invalid"  # simplejwt's own wording, so every refusal reads the same
# Longest gcp_agent_assist_user a token may carry (and /register may be asked to put in one).
MAX_USER_LENGTH = 256
# NumericDate claims (RFC 7519): seconds since 1970 up to the last second of 9999, the range datetime can hold.
_TIME_CLAIMS = ("exp", "iat", "nbf")
_LATEST_TIME = 253402300799
# String claims and their longest accepted length.
_TEXT_CLAIMS = {PROJECT_CLAIM: 256, USER_CLAIM: MAX_USER_LENGTH, "token_type": 64, "jti": 256}

logger = logging.getLogger(__name__)

# Only checks which secret signed a token; RotatingTokenBackend then verifies it in full.
_SIGNATURE_CHECK = jwt.PyJWS()


class InvalidToken(Exception):
    """The presented token cannot be accepted; ``str()`` says why, safe to show the client."""


@dataclass(frozen=True)
class DesktopIdentity:
    """Who a validated token speaks for; ``token_id`` is its ``jti`` (not part of equality)."""

    project: str
    user: str
    token_id: str = field(default="", compare=False)
    expires_at: float | None = field(default=None, compare=False)  # the token's exp (seconds since the epoch)
    # DRF's IsAuthenticated asks request.user this; only validate_token makes one.
    is_authenticated: ClassVar[bool] = True


class RotatingTokenBackend(TokenBackend):
    """HS256 only. Signs with the first secret; verifies with whichever of ``secrets`` signed the token."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        """``secrets``: the current secret first (it signs), then any previous one (it only verifies)."""
        super().__init__(ALGORITHM, signing_key=secrets[0])
        self.secrets = secrets

    def decode(self, token: str | bytes, verify: bool = True) -> dict[str, Any]:  # type: ignore[override]
        """The token's claims, verified with the secret that signed it; ``TokenBackendError`` otherwise."""
        if not verify:
            return super().decode(token, verify=False)
        secret, payload = self._secret_that_signed(token)
        # Before PyJWT and simplejwt read the claims: they raise TypeError or OverflowError
        # (a 500) on an exp of "123", 10**20 or Infinity.
        check_claim_types(payload)
        # simplejwt's own decode (claims, expiry, errors) with the one key that matches.
        return TokenBackend(ALGORITHM, signing_key=secret).decode(token)

    def _secret_that_signed(self, token: str | bytes) -> tuple[str, bytes]:
        """The secret whose signature ``token`` carries, and the payload it signed."""
        for secret in self.secrets:
            try:
                payload = _SIGNATURE_CHECK.decode(token, secret, algorithms=[ALGORITHM])
            except jwt.InvalidSignatureError:
                continue
            except jwt.InvalidTokenError as error:
                # Malformed, or another algorithm (alg none, HS512, RS256): no key can make it valid.
                raise TokenBackendError(INVALID_TOKEN_MESSAGE) from error
            return secret, payload
        raise TokenBackendError(INVALID_TOKEN_MESSAGE)


def check_claim_types(payload: bytes) -> None:
    """Raise ``TokenError`` naming the first claim present with the wrong JSON type or out of range.

    A payload that is not a JSON object is left to PyJWT, which refuses it.
    """
    try:
        claims = json.loads(payload)
    except ValueError:
        return
    if not isinstance(claims, dict):
        return
    for claim in _TIME_CLAIMS:
        value = claims.get(claim)
        # bool is an int to Python, but JSON true is not a NumericDate.
        if claim in claims and not (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
            and 0 <= value <= _LATEST_TIME
        ):
            raise TokenError(f"Token has an invalid {claim} claim")
    for claim, longest in _TEXT_CLAIMS.items():
        value = claims.get(claim)
        if claim in claims and not (isinstance(value, str) and len(value) <= longest and _encodable(value)):
            raise TokenError(f"Token has an invalid {claim} claim")


def is_usable_user(user: str) -> bool:
    """Whether a token may carry ``user``: at most ``MAX_USER_LENGTH`` characters that UTF-8 can encode."""
    return len(user) <= MAX_USER_LENGTH and _encodable(user)


def _encodable(text: str) -> bool:
    """False for a lone surrogate (a JSON "\\ud800" escape), which no UTF-8 log line or frame can carry."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class AgentAssistToken(Token):
    """Stateless access token for an agent desktop."""

    token_type = "agent_assist"

    @property
    def lifetime(self) -> timedelta:  # type: ignore[override]
        """``JWT_LIFETIME_MINUTES``, read on each use (simplejwt's own tokens fix their lifetime at import)."""
        return timedelta(minutes=settings.JWT_LIFETIME_MINUTES)

    def get_token_backend(self) -> TokenBackend:
        """A backend holding the secrets of ``connector.jwt_secret`` (loaded once, at start-up)."""
        return RotatingTokenBackend(jwt_secret.verification_secrets())

    def verify(self) -> None:
        """simplejwt's checks (expiry, token type), then the project claim against ``GCP_PROJECT_ID``."""
        super().verify()
        project = self.payload.get(PROJECT_CLAIM)
        if not project:
            raise TokenError("Token has no gcp_agent_assist_project claim")
        if project != settings.GCP_PROJECT_ID:
            raise TokenError("Token is for another project")


def issue_token(*, user: str) -> str:
    """Sign a new token for ``user`` in this service's project."""
    token = AgentAssistToken()
    token[PROJECT_CLAIM] = settings.GCP_PROJECT_ID
    token[USER_CLAIM] = user
    return str(token)


def validate_token(raw: str | None) -> DesktopIdentity:
    """Return the identity in ``raw`` (bare or ``Bearer <token>``), or raise ``InvalidToken``."""
    token = bearer_token(raw)
    if not token:
        raise InvalidToken(MISSING_TOKEN_MESSAGE)
    if not token.isascii():
        # A JWS is base64url and dots. PyJWT would raise UnicodeEncodeError, not an
        # InvalidTokenError, on a lone surrogate (a "\ud800" escape in a WebSocket frame).
        raise InvalidToken(INVALID_TOKEN_MESSAGE)
    try:
        validated = AgentAssistToken(token)  # type: ignore[arg-type]
    except TokenError as error:
        raise InvalidToken(str(error.args[0]) if error.args else INVALID_TOKEN_MESSAGE) from None
    except (TypeError, ValueError, OverflowError) as error:
        # check_claim_types should leave nothing that PyJWT or simplejwt crash on; should a library
        # change still do so, the client gets a 401, and the log says which error (never the token).
        logger.error("A token check raised %s; the token was refused", error.__class__.__name__)
        raise InvalidToken(INVALID_TOKEN_MESSAGE) from None
    return DesktopIdentity(
        project=validated[PROJECT_CLAIM],
        user=str(validated.get(USER_CLAIM, "")),
        token_id=str(validated.get("jti", "")),
        expires_at=float(validated["exp"]) if "exp" in validated.payload else None,
    )
