"""``AUTH_OPTION=Skip``: accept every caller. Development only."""

from __future__ import annotations

from typing import Any

from auth_providers.base import BaseIdentityProvider, Identity


class SkipProvider(BaseIdentityProvider):
    """Vouches for anyone; the system checks refuse it outside development mode."""

    name = "Skip"
    development_only = True

    async def authenticate(self, *, token: str, body: dict[str, Any]) -> Identity:
        """Vouch for the caller without looking at ``token`` or ``body``."""
        return Identity(user="")
