"""``AUTH_OPTION=GenesysCloud``: a Genesys Cloud platform token, checked with the Users API.

``GET {GENESYS_CLOUD_API_URL}/api/v2/users/me`` with the bearer token; a 200
means the token is valid for that Genesys Cloud region (the API answers
without an organisation to compare).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from auth_providers import http
from auth_providers.base import BaseIdentityProvider, Identity

USERS_ME_PATH = "/api/v2/users/me"


class GenesysCloudProvider(BaseIdentityProvider):
    """Accepts any token the configured Genesys Cloud region accepts."""

    name = "GenesysCloud"

    async def authenticate(self, *, token: str, body: dict[str, Any]) -> Identity:
        """Ask Genesys Cloud who the token's user is."""
        access_token = http.bearer_token(token)
        url = settings.GENESYS_CLOUD_API_URL.rstrip("/") + USERS_ME_PATH
        response = await http.send(self.name, "GET", url, headers={"Authorization": f"Bearer {access_token}"})
        user = http.json_object(self.name, response)
        return Identity(user=http.first_text(user, "email", "username", "id"))

    def settings_problems(self) -> list[str]:
        """Settings this provider cannot work without (reported by the start-up checks)."""
        if not settings.GENESYS_CLOUD_API_URL:
            return ["GENESYS_CLOUD_API_URL is empty: set GENESYS_CLOUD_ENVIRONMENT (for example mypurecloud.com)."]
        return []
