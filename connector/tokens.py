"""The desktop JWT: issued by /register, required by every protected entry point.

Built on djangorestframework-simplejwt's ``Token`` machinery with our own
``TokenBackend`` (HS256 pinned, key from ``connector.jwt_secret``), so the
secret is read on first use instead of at import as simplejwt's module-level
backend would. Claims: the contract's ``exp``, ``gcp_agent_assist_project``
and ``gcp_agent_assist_user``, plus simplejwt's ``token_type``, ``iat`` and ``jti``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import Token

from connector import jwt_secret

ALGORITHM = "HS256"
PROJECT_CLAIM = "gcp_agent_assist_project"
USER_CLAIM = "gcp_agent_assist_user"
MISSING_TOKEN_MESSAGE = "Token is missing."


class InvalidToken(Exception):
    """The presented token cannot be accepted; ``str()`` says why, safe to show the client."""


@dataclass(frozen=True)
class DesktopIdentity:
    """Who a validated token speaks for."""

    project: str
    user: str


class AgentAssistToken(Token):
    """Stateless access token for an agent desktop."""

    token_type = "agent_assist"

    @property
    def lifetime(self) -> timedelta:  # type: ignore[override]
        return timedelta(minutes=settings.JWT_LIFETIME_MINUTES)

    def get_token_backend(self) -> TokenBackend:
        return TokenBackend(ALGORITHM, signing_key=jwt_secret.signing_secret())

    def verify(self) -> None:
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
    token = strip_bearer(raw or "")
    if not token:
        raise InvalidToken(MISSING_TOKEN_MESSAGE)
    try:
        validated = AgentAssistToken(token)  # type: ignore[arg-type]
    except TokenError as error:
        raise InvalidToken(str(error.args[0]) if error.args else "Token is invalid") from None
    return DesktopIdentity(project=validated[PROJECT_CLAIM], user=str(validated.get(USER_CLAIM, "")))


def strip_bearer(value: str) -> str:
    """Accept both the bare token (what the UI modules send) and ``Bearer <token>``."""
    value = value.strip()
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "bearer":
        return rest.strip()
    return value
