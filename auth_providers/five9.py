"""``AUTH_OPTION=Five9``: a shared secret between the Five9 integration and this backend.

The caller sends ``Authorization: Bearer <FIVE9_TRUST_TOKEN>``; nothing is
called out. The comparison takes the same time however much of the secret
matches, so the secret cannot be guessed byte by byte.
"""

from __future__ import annotations

import hmac
from typing import Any

from django.conf import settings

from auth_providers.base import BaseIdentityProvider, Identity, ProviderUnavailable, TokenRejected
from common.bearer import bearer_token


class Five9Provider(BaseIdentityProvider):
    """Accepts callers that present the configured trust token."""

    name = "Five9"

    async def authenticate(self, *, token: str, body: dict[str, Any]) -> Identity:
        """Compare ``Bearer <secret>`` with ``FIVE9_TRUST_TOKEN`` in constant time."""
        presented = bearer_token(token, scheme_required=True)
        if not presented:
            raise TokenRejected("Five9: the Authorization header is not 'Bearer <trust token>'")
        expected = settings.FIVE9_TRUST_TOKEN
        if not expected:
            # Never compare against an empty secret: that would accept "Bearer ".
            raise ProviderUnavailable("Five9: FIVE9_TRUST_TOKEN is not set")
        if not hmac.compare_digest(presented.encode(), expected.encode()):
            raise TokenRejected("Five9: the trust token does not match")
        return Identity(user="")

    def settings_problems(self) -> list[str]:
        """Settings this provider cannot work without (reported by the start-up checks)."""
        if not settings.FIVE9_TRUST_TOKEN:
            return ["FIVE9_TRUST_TOKEN is not set: Five9 callers authenticate with it."]
        return []
