"""``AUTH_OPTION=GenesysCloud``: a Genesys Cloud platform token, checked with the Users API.

``GET {GENESYS_CLOUD_API_URL}/api/v2/users/me`` with the bearer token; a 200
means the token is valid for that Genesys Cloud region (the API answers
without an organisation to compare). The URL is ``https://api.`` followed by
the region's domain, ``GENESYS_CLOUD_REGION`` (or the sample's
``GENESYS_CLOUD_ENVIRONMENT``), unless ``GENESYS_CLOUD_API_URL`` names another.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings

from auth_providers import http
from auth_providers.base import BaseIdentityProvider, Identity

USERS_ME_PATH = "/api/v2/users/me"
# A host name of at least two labels (letters, digits, inner hyphens): what follows "api." in the API's URL.
_REGION_DOMAIN = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))+$")
# Hosts of a region rather than the region: "api." would be doubled in front of them.
_HOST_PREFIXES = ("api.", "login.", "apps.")


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
            return ["GENESYS_CLOUD_API_URL is empty: set GENESYS_CLOUD_REGION (for example mypurecloud.com)."]
        region = settings.GENESYS_CLOUD_REGION
        # Genesys's SDKs name regions us_east_1 or us-east-1; this setting is the domain, as the sample's is.
        # Only a region the API URL is made from matters: an explicit URL (a proxy, a test double) replaces it.
        derived = settings.GENESYS_CLOUD_API_URL == f"https://api.{region}"
        if derived and (not _REGION_DOMAIN.match(region) or region.lower().startswith(_HOST_PREFIXES)):
            return [f"GENESYS_CLOUD_REGION {region[:64]!r} is not a Genesys Cloud region domain: use the domain "
                    "alone, as in https://login.<domain>, for example mypurecloud.com, usw2.pure.cloud or "
                    "mypurecloud.de (GENESYS_CLOUD_ENVIRONMENT, the sample's name for it, takes the same)."]
        return []
