"""The interface every identity provider implements.

A provider answers one question: does this identity-provider token (what the
desktop sends to ``/register``) belong to someone allowed to use this
backend? It answers asynchronously, so a slow provider never blocks other
requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Identity:
    """Who the provider vouched for."""

    user: str = ""


class TokenRejected(Exception):
    """The provider judged the token and refused it (answer 401)."""


class ProviderUnavailable(Exception):
    """The provider could not judge the token: down, slow or answering garbage (answer 503)."""


class BaseIdentityProvider:
    """Subclass and implement ``authenticate``; name the class in ``AUTH_OPTION``."""

    #: Shown in logs and errors; never includes a token.
    name = "base"
    #: Allowed only with DEVELOPMENT_MODE=true (the system checks refuse it otherwise).
    development_only = False

    async def authenticate(self, *, token: str, body: dict[str, Any]) -> Identity:
        """Return the identity behind ``token`` or raise ``TokenRejected`` / ``ProviderUnavailable``.

        ``token`` is the ``Authorization`` header as sent (it may carry a
        ``Bearer `` prefix); ``body`` is the request's JSON object (empty when absent).
        """
        raise NotImplementedError

    def settings_problems(self) -> list[str]:
        """Messages naming settings this provider needs but lacks; start-up refuses to run if any."""
        return []
