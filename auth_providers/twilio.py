"""Twilio: Flex agents (``AUTH_OPTION=Twilio``) and applications (``APP_AUTH_OPTION=Twilio``).

- ``TwilioProvider``: the Flex token is posted as ``{"Token": <token>}`` to
  ``{TWILIO_FLEX_URL}/verify`` (a Twilio Function of the customer's Flex
  environment); a 200 accepts it. The function's body is not prescribed, so
  it is read only to find an ``identity`` for the desktop token.
- ``TwilioAppProvider``: the body's ``{"accountSid", "authToken"}`` are the
  HTTP basic credentials of ``GET {TWILIO_API_URL}/2010-04-01/Accounts/{TWILIO_ACCOUNT_SID}.json``;
  accepted when Twilio answers 200 with that account's ``sid``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from django.conf import settings

from auth_providers import http
from auth_providers.base import BaseIdentityProvider, Identity, ProviderUnavailable, TokenRejected
from common import untrusted

VERIFY_PATH = "/verify"
ACCOUNTS_PATH = "/2010-04-01/Accounts/{sid}.json"
# Twilio answers 404 (error 20404) when valid credentials cannot see the
# requested account: for us that is a refusal, not an outage.
APP_REJECTING_STATUSES = http.REJECTING_STATUSES | {404}


class TwilioProvider(BaseIdentityProvider):
    """Accepts a Flex token that the configured Flex environment's ``/verify`` function accepts."""

    name = "Twilio"

    async def authenticate(self, *, token: str, body: dict[str, Any]) -> Identity:
        """Post the token to the Flex verify function."""
        flex_token = http.bearer_token(token)
        base = settings.TWILIO_FLEX_URL
        if not base:
            raise ProviderUnavailable("Twilio: neither TWILIO_FLEX_ENVIRONMENT nor TWILIO_FLEX_URL is set")
        response = await http.send(self.name, "POST", base.rstrip("/") + VERIFY_PATH, json={"Token": flex_token})
        try:
            answer = untrusted.json_object(response.content)
        except untrusted.NotJsonObject:
            answer = {}
        return Identity(user=http.first_text(answer, "identity"))

    def settings_problems(self) -> list[str]:
        """Settings this provider cannot work without (reported by the start-up checks)."""
        if not settings.TWILIO_FLEX_URL:
            return ["TWILIO_FLEX_ENVIRONMENT is not set (nor TWILIO_FLEX_URL): Flex tokens are verified there."]
        return []


class TwilioAppProvider(BaseIdentityProvider):
    """Accepts application credentials that can read the configured Twilio account."""

    name = "TwilioApp"

    async def authenticate(self, *, token: str, body: dict[str, Any]) -> Identity:
        """Fetch the configured account with the caller's credentials."""
        account_sid, auth_token = body.get("accountSid"), body.get("authToken")
        if not (isinstance(account_sid, str) and account_sid and isinstance(auth_token, str) and auth_token):
            raise TokenRejected("TwilioApp: the body lacks accountSid and authToken")
        if not (account_sid.isascii() and auth_token.isascii()):
            # Twilio's are ASCII; a lone surrogate (a JSON "\ud800" escape) would make httpx raise.
            raise TokenRejected("TwilioApp: accountSid and authToken must be ASCII")
        expected = settings.TWILIO_ACCOUNT_SID
        if not expected:
            raise ProviderUnavailable("TwilioApp: TWILIO_ACCOUNT_SID is not set")
        url = settings.TWILIO_API_URL.rstrip("/") + ACCOUNTS_PATH.format(sid=quote(expected, safe=""))
        response = await http.send(
            self.name, "GET", url, auth=(account_sid, auth_token), rejecting=APP_REJECTING_STATUSES
        )
        account = http.json_object(self.name, response)
        sid = account.get("sid")
        if not isinstance(sid, str):
            raise ProviderUnavailable("TwilioApp: Twilio answered 200 without an account sid")
        if sid != expected:
            raise TokenRejected("TwilioApp: the credentials are for another account")
        return Identity(user=sid)

    def settings_problems(self) -> list[str]:
        """Settings this provider cannot work without (reported by the start-up checks)."""
        if not settings.TWILIO_ACCOUNT_SID:
            return ["TWILIO_ACCOUNT_SID is not set: application credentials are checked against that account."]
        return []
