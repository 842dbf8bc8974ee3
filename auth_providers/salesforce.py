"""``AUTH_OPTION=Salesforce``: the desktop's Salesforce access token, checked at the OpenID userinfo endpoint.

``GET {SALESFORCE_URL}/services/oauth2/userinfo`` with ``Authorization: Bearer
<token>``; the token is accepted when Salesforce answers 200 and the user's
``organization_id`` equals ``SALESFORCE_ORGANIZATION_ID``.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings

from auth_providers import http
from auth_providers.base import BaseIdentityProvider, Identity, ProviderUnavailable, TokenRejected

USERINFO_PATH = "/services/oauth2/userinfo"
# Salesforce record ids are 15 case-sensitive or 18 case-insensitive-safe alphanumerics.
_ORGANIZATION_ID = re.compile(r"[A-Za-z0-9]{15}([A-Za-z0-9]{3})?")


def userinfo_url() -> str:
    """The userinfo endpoint of the configured Salesforce domain."""
    return settings.SALESFORCE_URL.rstrip("/") + USERINFO_PATH


def organization_problems() -> list[str]:
    """Start-up problems with ``SALESFORCE_ORGANIZATION_ID`` (shared by both Salesforce providers)."""
    organization = settings.SALESFORCE_ORGANIZATION_ID
    if not organization:
        return ["SALESFORCE_ORGANIZATION_ID is not set: Salesforce tokens are accepted only for one organisation."]
    if not _ORGANIZATION_ID.fullmatch(organization):
        return [f"SALESFORCE_ORGANIZATION_ID={organization!r} is not a 15- or 18-character Salesforce id."]
    return []


def configured_organization(provider: str) -> str:
    """``SALESFORCE_ORGANIZATION_ID``; without it no token can be judged (the start-up checks say so too)."""
    organization = settings.SALESFORCE_ORGANIZATION_ID
    if not organization:
        raise ProviderUnavailable(f"{provider}: SALESFORCE_ORGANIZATION_ID is not set")
    return organization


def returned_organization(provider: str, userinfo: dict[str, Any]) -> str:
    """The ``organization_id`` of a userinfo answer; its absence means the answer is not userinfo."""
    organization = userinfo.get("organization_id")
    if not isinstance(organization, str) or not organization:
        raise ProviderUnavailable(f"{provider} answered 200 without an organization_id")
    return organization


def user_of(userinfo: dict[str, Any]) -> str:
    """Who the token belongs to, for ``gcp_agent_assist_user``."""
    return http.first_text(userinfo, "preferred_username", "email", "user_id", "sub")


class SalesforceProvider(BaseIdentityProvider):
    """Accepts a Salesforce access token of a user in the configured organisation."""

    name = "Salesforce"

    async def authenticate(self, *, token: str, body: dict[str, Any]) -> Identity:
        """Ask Salesforce whose token this is, then compare the organisation exactly."""
        access_token = http.bearer_token(token)
        organization = configured_organization(self.name)
        response = await http.send(
            self.name, "GET", userinfo_url(), headers={"Authorization": f"Bearer {access_token}"}
        )
        userinfo = http.json_object(self.name, response)
        if returned_organization(self.name, userinfo) != organization:
            raise TokenRejected(f"{self.name}: the user belongs to another organisation")
        return Identity(user=user_of(userinfo))

    def settings_problems(self) -> list[str]:
        """Settings this provider cannot work without (reported by the start-up checks)."""
        return organization_problems()
