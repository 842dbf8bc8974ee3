"""``AUTH_OPTION=SalesforceLWC``: a Lightning Web Component's access token (client credentials flow).

Same userinfo endpoint as ``Salesforce``, but the token travels as the
``access_token`` query parameter (as the sample sends it). Organisation ids
are compared on their common 15-character prefix, because an org id may be
configured in its 15-character form while Salesforce answers with 18.
"""

from __future__ import annotations

from typing import Any

from auth_providers import http
from auth_providers.base import BaseIdentityProvider, Identity, TokenRejected
from auth_providers.salesforce import (
    configured_organization,
    organization_problems,
    returned_organization,
    user_of,
    userinfo_url,
)

SHORT_ID_LENGTH = 15


def same_organization(returned: str, configured: str) -> bool:
    """True when two Salesforce org ids name the same organisation (15- and 18-character forms)."""
    if len(returned) < SHORT_ID_LENGTH or len(configured) < SHORT_ID_LENGTH:
        # A shorter "id" would turn a prefix comparison into a wildcard.
        return False
    if len(returned) == len(configured):
        return returned == configured
    # The 15-character form is the case-sensitive id; the 18-character form
    # appends a 3-character checksum of its case.
    return returned[:SHORT_ID_LENGTH] == configured[:SHORT_ID_LENGTH]


class SalesforceLWCProvider(BaseIdentityProvider):
    """Accepts a Salesforce access token of the configured organisation, sent as a query parameter."""

    name = "SalesforceLWC"

    async def authenticate(self, *, token: str, body: dict[str, Any]) -> Identity:
        """Ask Salesforce whose token this is, then compare the organisation on its 15-character id."""
        access_token = http.bearer_token(token)
        organization = configured_organization(self.name)
        response = await http.send(self.name, "GET", userinfo_url(), params={"access_token": access_token})
        userinfo = http.json_object(self.name, response)
        if not same_organization(returned_organization(self.name, userinfo), organization):
            raise TokenRejected(f"{self.name}: the token belongs to another organisation")
        return Identity(user=user_of(userinfo))

    def settings_problems(self) -> list[str]:
        """Settings this provider cannot work without (reported by the start-up checks)."""
        return organization_problems()
