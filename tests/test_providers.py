"""The built-in identity providers, each called directly against a real fake provider on 127.0.0.1.

Every test checks both what ``authenticate`` decided and what the fake
received (method, path, query, headers, body), so a provider that sends the
token the wrong way fails even when the decision happens to be right.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from auth_providers import http
from auth_providers.base import BaseIdentityProvider, Identity, ProviderUnavailable, TokenRejected
from auth_providers.five9 import Five9Provider
from auth_providers.genesys_cloud import GenesysCloudProvider
from auth_providers.salesforce import SalesforceProvider
from auth_providers.salesforce_lwc import SalesforceLWCProvider, same_organization
from auth_providers.twilio import TwilioAppProvider, TwilioProvider
from testing import fake_providers
from testing.fake_providers import (
    ACCESS_TOKEN,
    ACCOUNT_PATH,
    ACCOUNT_SID,
    AUTH_TOKEN,
    GENESYS_USER_ID,
    ORGANIZATION_ID,
    OTHER_ACCOUNT_SID,
    OTHER_ORGANIZATION_ID,
    SALESFORCE_USER_ID,
    USER_EMAIL,
    USERINFO_PATH,
    USERS_ME_PATH,
    VERIFY_PATH,
    Behaviour,
    FakeProvider,
)

FIVE9_SECRET = "five9-shared-trust-token-0123456789"


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeProvider]:
    """One fake provider for the module (reset before every test)."""
    with fake_providers.serve() as fake:
        yield fake


@pytest.fixture
def fake(fake_server: FakeProvider, settings) -> FakeProvider:
    """The fake, judging like the real services, with every provider setting pointing at it."""
    fake_server.reset()
    settings.SALESFORCE_URL = fake_server.url
    settings.GENESYS_CLOUD_API_URL = fake_server.url
    settings.TWILIO_FLEX_URL = fake_server.url
    settings.TWILIO_API_URL = fake_server.url
    settings.SALESFORCE_ORGANIZATION_ID = ORGANIZATION_ID
    settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
    settings.FIVE9_TRUST_TOKEN = FIVE9_SECRET
    return fake_server


@dataclass(frozen=True)
class Call:
    """One valid call of an HTTP-checked provider, and the secret in it that must never leak."""

    provider: BaseIdentityProvider
    token: str
    secret: str
    path: str
    user: str
    body: dict[str, Any] = field(default_factory=dict)

    async def run(self, *, token: str | None = None, body: dict[str, Any] | None = None) -> Identity:
        """Call ``authenticate`` with these credentials (or the ones given)."""
        return await self.provider.authenticate(
            token=self.token if token is None else token, body=self.body if body is None else body
        )


CALLS = {
    "Salesforce": Call(SalesforceProvider(), ACCESS_TOKEN, ACCESS_TOKEN, USERINFO_PATH, USER_EMAIL),
    "SalesforceLWC": Call(SalesforceLWCProvider(), f"Bearer {ACCESS_TOKEN}", ACCESS_TOKEN, USERINFO_PATH, USER_EMAIL),
    "GenesysCloud": Call(GenesysCloudProvider(), f"Bearer {ACCESS_TOKEN}", ACCESS_TOKEN, USERS_ME_PATH, USER_EMAIL),
    "Twilio": Call(TwilioProvider(), ACCESS_TOKEN, ACCESS_TOKEN, VERIFY_PATH, USER_EMAIL),
    "TwilioApp": Call(
        TwilioAppProvider(), "", AUTH_TOKEN, ACCOUNT_PATH, ACCOUNT_SID,
        body={"accountSid": ACCOUNT_SID, "authToken": AUTH_TOKEN},
    ),
}
# Providers whose 200 answer must be a JSON object (Twilio's /verify is the
# customer's own function and only its status is prescribed).
JSON_CALLS = [name for name in CALLS if name != "Twilio"]


async def assert_unavailable(call: Call, **overrides: Any) -> ProviderUnavailable:
    """The call raises ProviderUnavailable with a message that names the provider and not the secret."""
    with pytest.raises(ProviderUnavailable) as caught:
        await call.run(**overrides)
    message = str(caught.value)
    assert call.provider.name in message
    assert call.secret not in message
    assert ACCESS_TOKEN not in message and AUTH_TOKEN not in message
    return caught.value


# --- Every HTTP-checked provider --------------------------------------------------------


@pytest.mark.parametrize("name", CALLS)
async def test_valid_credentials_are_accepted_with_the_user_the_provider_names(fake, name):
    """The real service's 200 for valid credentials yields an Identity after exactly one request."""
    call = CALLS[name]
    assert await call.run() == Identity(user=call.user)
    assert [received.path for received in fake.received] == [call.path]


@pytest.mark.parametrize("status", [400, 401, 403])
@pytest.mark.parametrize("name", CALLS)
async def test_a_refusal_status_rejects_the_token(fake, name, status):
    """400, 401 and 403 are the provider's "no": 401 to the desktop, not 503."""
    fake.behaviour, fake.status = Behaviour.STATUS, status
    with pytest.raises(TokenRejected):
        await CALLS[name].run()


@pytest.mark.parametrize("name", ["Salesforce", "SalesforceLWC", "GenesysCloud", "Twilio"])
async def test_a_token_the_real_service_refuses_is_rejected(fake, name):
    """A token the fake does not know gets the real service's refusal, and the provider rejects it."""
    with pytest.raises(TokenRejected):
        await CALLS[name].run(token="Bearer some-other-token")
    assert len(fake.received) == 1


@pytest.mark.parametrize("status", [500, 502, 503])
@pytest.mark.parametrize("name", CALLS)
async def test_a_server_error_makes_the_provider_unavailable(fake, name, status):
    """5xx says nothing about the token: 503, and the message names the status, never the token."""
    fake.behaviour, fake.status = Behaviour.STATUS, status
    error = await assert_unavailable(CALLS[name])
    assert str(status) in str(error)


@pytest.mark.parametrize("name", CALLS)
async def test_a_rate_limit_makes_the_provider_unavailable(fake, name):
    """429 is the provider being busy, not a verdict on the token."""
    fake.behaviour, fake.status = Behaviour.STATUS, 429
    await assert_unavailable(CALLS[name])


@pytest.mark.parametrize("name", ["Salesforce", "SalesforceLWC", "GenesysCloud", "Twilio"])
async def test_a_missing_endpoint_makes_the_provider_unavailable(fake, name):
    """404 from a token endpoint means a wrong URL setting, which no desktop can fix."""
    fake.behaviour, fake.status = Behaviour.STATUS, 404
    await assert_unavailable(CALLS[name])


@pytest.mark.parametrize("name", CALLS)
async def test_a_redirect_is_not_followed(fake, name):
    """Following a redirect would resend the credentials elsewhere; it is reported as unavailable."""
    fake.behaviour = Behaviour.REDIRECT
    await assert_unavailable(CALLS[name])
    assert [received.path for received in fake.received] == [CALLS[name].path]


@pytest.mark.parametrize("name", CALLS)
async def test_a_slow_provider_is_unavailable_after_the_read_timeout(fake, settings, name):
    """A provider slower than IDENTITY_PROVIDER_READ_TIMEOUT answers 503 instead of holding the request."""
    settings.IDENTITY_PROVIDER_READ_TIMEOUT = 0.3
    fake.behaviour, fake.slow_seconds = Behaviour.SLOW, 10.0
    error = await assert_unavailable(CALLS[name])
    assert "in time" in str(error)


@pytest.mark.parametrize("name", JSON_CALLS)
async def test_a_provider_that_trickles_its_answer_is_unavailable_after_the_overall_deadline(fake, settings, name):
    """Bytes arriving just often enough to beat the read timeout do not extend the wait past connect + read."""
    settings.IDENTITY_PROVIDER_CONNECT_TIMEOUT = settings.IDENTITY_PROVIDER_READ_TIMEOUT = 0.5
    fake.behaviour, fake.slow_seconds = Behaviour.TRICKLE, 5.0
    error = await assert_unavailable(CALLS[name])
    assert "in time" in str(error)


@pytest.mark.parametrize("name", CALLS)
async def test_a_provider_that_refuses_connections_is_unavailable(fake, settings, name):
    """Nothing listening at the provider URL: 503, naming the provider."""
    url = fake_providers.refused_url()
    settings.SALESFORCE_URL = settings.GENESYS_CLOUD_API_URL = url
    settings.TWILIO_FLEX_URL = settings.TWILIO_API_URL = url
    error = await assert_unavailable(CALLS[name])
    assert "ConnectError" in str(error)


@pytest.mark.parametrize("name", JSON_CALLS)
async def test_a_200_that_is_not_json_makes_the_provider_unavailable(fake, name):
    """An HTML page with 200 (a captive portal, a maintenance page) cannot vouch for anyone."""
    fake.behaviour = Behaviour.NOT_JSON
    await assert_unavailable(CALLS[name])


@pytest.mark.parametrize("name", JSON_CALLS)
async def test_a_200_with_json_that_is_not_an_object_makes_the_provider_unavailable(fake, name):
    """A JSON array where the API returns an object is not an answer about the token."""
    fake.behaviour = Behaviour.NOT_AN_OBJECT
    await assert_unavailable(CALLS[name])


@pytest.mark.parametrize("name", JSON_CALLS)
async def test_a_200_with_json_nested_too_deep_to_decode_makes_the_provider_unavailable(fake, name):
    """JSON nested past the decoder's recursion limit is garbage, not a crash (a 500 from /register)."""
    fake.behaviour = Behaviour.DEEPLY_NESTED
    await assert_unavailable(CALLS[name])


async def test_twilio_flex_verify_answer_nested_too_deep_still_vouches_without_a_user(fake):
    """Twilio's verify function may answer anything with 200; a body too deep to decode names no user."""
    fake.behaviour = Behaviour.DEEPLY_NESTED
    identity = await CALLS["Twilio"].run()
    assert identity.user == ""


@pytest.mark.parametrize("name", ["Salesforce", "SalesforceLWC", "GenesysCloud", "Twilio"])
@pytest.mark.parametrize("token", ["", "   ", "Bearer", "Bearer   "])
async def test_a_missing_token_is_rejected_without_calling_the_provider(fake, name, token):
    """No token in Authorization: 401 at once, and the provider never hears of it."""
    with pytest.raises(TokenRejected):
        await CALLS[name].run(token=token)
    assert fake.received == []


# --- Salesforce -------------------------------------------------------------------------


async def test_salesforce_sends_the_token_as_a_bearer_header(fake):
    """GET userinfo with ``Authorization: Bearer <token>`` and nothing in the query."""
    await CALLS["Salesforce"].run()
    (received,) = fake.received
    assert (received.method, received.path, received.query) == ("GET", USERINFO_PATH, {})
    assert received.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"


async def test_salesforce_does_not_double_a_bearer_prefix(fake):
    """A desktop that already sends ``Bearer <token>`` is forwarded exactly that, once."""
    await CALLS["Salesforce"].run(token=f"Bearer {ACCESS_TOKEN}")
    assert fake.received[0].headers["authorization"] == f"Bearer {ACCESS_TOKEN}"


async def test_salesforce_rejects_a_user_of_another_organisation(fake):
    """A valid token of another org is refused: any Salesforce user could otherwise register."""
    fake.organization_id = OTHER_ORGANIZATION_ID
    with pytest.raises(TokenRejected):
        await CALLS["Salesforce"].run()


async def test_salesforce_names_the_user_by_id_when_the_answer_has_no_username(fake):
    """Userinfo without ``preferred_username``/``email`` still names the user, by ``user_id``."""
    fake.user_email = None
    assert await CALLS["Salesforce"].run() == Identity(user=SALESFORCE_USER_ID)


async def test_salesforce_compares_the_organisation_exactly(fake, settings):
    """As in Google's sample: Salesforce's ``organization_id`` must equal the setting (no prefix matching)."""
    settings.SALESFORCE_ORGANIZATION_ID = ORGANIZATION_ID[:15] + "XYZ"
    with pytest.raises(TokenRejected):
        await CALLS["Salesforce"].run()


@pytest.mark.parametrize("name", ["Salesforce", "SalesforceLWC"])
async def test_salesforce_userinfo_without_an_organisation_makes_the_provider_unavailable(fake, name):
    """A 200 without ``organization_id`` is not a userinfo answer: no verdict either way."""
    fake.behaviour = Behaviour.EMPTY_OBJECT
    await assert_unavailable(CALLS[name])


@pytest.mark.parametrize("name", ["Salesforce", "SalesforceLWC"])
async def test_salesforce_without_an_organisation_setting_is_unavailable_without_calling_out(fake, settings, name):
    """No SALESFORCE_ORGANIZATION_ID: nothing can be compared, so no token is judged (the checks say why)."""
    settings.SALESFORCE_ORGANIZATION_ID = ""
    await assert_unavailable(CALLS[name])
    assert fake.received == []


# --- SalesforceLWC ----------------------------------------------------------------------


async def test_salesforce_lwc_sends_the_bare_token_as_the_access_token_parameter(fake):
    """GET userinfo?access_token=<token> (Bearer stripped, query-escaped) and no Authorization header."""
    await CALLS["SalesforceLWC"].run()
    (received,) = fake.received
    assert (received.method, received.path) == ("GET", USERINFO_PATH)
    assert received.query == {"access_token": ACCESS_TOKEN}
    assert "authorization" not in received.headers


@pytest.mark.parametrize(
    ("returned", "configured"),
    [(ORGANIZATION_ID, ORGANIZATION_ID[:15]), (ORGANIZATION_ID[:15], ORGANIZATION_ID)],
    ids=["18-returned-15-configured", "15-returned-18-configured"],
)
async def test_salesforce_lwc_accepts_the_15_and_18_character_forms_of_one_org(fake, settings, returned, configured):
    """The two forms of one org id name one organisation."""
    fake.organization_id, settings.SALESFORCE_ORGANIZATION_ID = returned, configured
    assert await CALLS["SalesforceLWC"].run() == Identity(user=USER_EMAIL)


@pytest.mark.parametrize(
    "returned",
    [OTHER_ORGANIZATION_ID, ORGANIZATION_ID[:15].swapcase(), ORGANIZATION_ID[:3], ORGANIZATION_ID[:14]],
    ids=["other-org", "other-case", "three-characters", "fourteen-characters"],
)
async def test_salesforce_lwc_rejects_another_or_too_short_organisation(fake, returned):
    """Another org, another case of the case-sensitive id, or a stub that would match any prefix: refused."""
    fake.organization_id = returned
    with pytest.raises(TokenRejected):
        await CALLS["SalesforceLWC"].run()


async def test_salesforce_lwc_compares_all_15_characters_of_the_short_form(fake, settings):
    """A 15-character id differing from the returned 18-character id in its 15th character is another org."""
    settings.SALESFORCE_ORGANIZATION_ID = ORGANIZATION_ID[:14] + ("X" if ORGANIZATION_ID[14] != "X" else "Y")
    with pytest.raises(TokenRejected):
        await CALLS["SalesforceLWC"].run()


def test_same_organization_requires_15_characters_on_both_sides():
    """A prefix comparison with a short id on either side would be a wildcard."""
    assert same_organization(ORGANIZATION_ID, ORGANIZATION_ID)
    assert same_organization(ORGANIZATION_ID[:15], ORGANIZATION_ID)
    assert not same_organization(ORGANIZATION_ID, ORGANIZATION_ID[:14])
    assert not same_organization(ORGANIZATION_ID[:14], ORGANIZATION_ID[:14])
    assert not same_organization("", "")


# --- GenesysCloud -----------------------------------------------------------------------


async def test_genesys_cloud_sends_the_token_as_a_bearer_header(fake):
    """GET /api/v2/users/me with ``Authorization: Bearer <token>`` (prefix not doubled)."""
    await CALLS["GenesysCloud"].run()
    (received,) = fake.received
    assert (received.method, received.path, received.query) == ("GET", USERS_ME_PATH, {})
    assert received.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"


async def test_genesys_cloud_names_the_user_by_id_when_the_answer_has_no_email(fake):
    """Users without an email address are still named, by their Genesys id."""
    fake.user_email = None
    assert await CALLS["GenesysCloud"].run() == Identity(user=GENESYS_USER_ID)


# --- Twilio (Flex) ----------------------------------------------------------------------


async def test_twilio_posts_the_bare_token_as_json_to_verify(fake):
    """POST /verify with the JSON body ``{"Token": <token>}``; a ``Bearer`` prefix is not part of the token."""
    await CALLS["Twilio"].run(token=f"Bearer {ACCESS_TOKEN}")
    (received,) = fake.received
    assert (received.method, received.path) == ("POST", VERIFY_PATH)
    assert received.headers["content-type"] == "application/json"
    assert received.json() == {"Token": ACCESS_TOKEN}
    assert "authorization" not in received.headers


async def test_twilio_accepts_a_200_whatever_its_body(fake):
    """Only the status of the customer's verify function is prescribed: a plain "OK" accepts."""
    fake.behaviour = Behaviour.PLAIN_OK
    assert await CALLS["Twilio"].run() == Identity(user="")


async def test_twilio_without_a_flex_url_is_unavailable_without_calling_out(fake, settings):
    """Neither TWILIO_FLEX_ENVIRONMENT nor TWILIO_FLEX_URL: no verify function to ask."""
    settings.TWILIO_FLEX_URL = ""
    await assert_unavailable(CALLS["Twilio"])
    assert fake.received == []


# --- Twilio application credentials -----------------------------------------------------


async def test_twilio_app_fetches_the_configured_account_with_basic_auth(fake):
    """GET the configured account's JSON with the body's accountSid/authToken as HTTP basic credentials."""
    await CALLS["TwilioApp"].run()
    (received,) = fake.received
    assert (received.method, received.path, received.query) == ("GET", ACCOUNT_PATH, {})
    assert received.basic_auth() == (ACCOUNT_SID, AUTH_TOKEN)
    expected = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert received.headers["authorization"] == f"Basic {expected}"


async def test_twilio_app_rejects_a_wrong_auth_token(fake):
    """Twilio's 401 for wrong credentials is a refusal."""
    with pytest.raises(TokenRejected):
        await CALLS["TwilioApp"].run(body={"accountSid": ACCOUNT_SID, "authToken": "wrong"})
    assert fake.received[0].basic_auth() == (ACCOUNT_SID, "wrong")


async def test_twilio_app_rejects_credentials_that_cannot_see_the_configured_account(fake, settings):
    """Twilio answers 404 when valid credentials ask for an account they cannot read: a refusal."""
    settings.TWILIO_ACCOUNT_SID = OTHER_ACCOUNT_SID
    with pytest.raises(TokenRejected):
        await CALLS["TwilioApp"].run()
    assert fake.received[0].path == f"/2010-04-01/Accounts/{OTHER_ACCOUNT_SID}.json"


async def test_twilio_app_rejects_an_answer_for_another_account(fake):
    """A 200 whose ``sid`` is not the configured account does not vouch for this deployment."""
    fake.returned_sid = OTHER_ACCOUNT_SID
    with pytest.raises(TokenRejected):
        await CALLS["TwilioApp"].run()


async def test_twilio_app_answer_without_a_sid_makes_the_provider_unavailable(fake):
    """A 200 without ``sid`` is not an Accounts answer."""
    fake.behaviour = Behaviour.EMPTY_OBJECT
    await assert_unavailable(CALLS["TwilioApp"])


@pytest.mark.parametrize(
    "body",
    [{}, {"accountSid": ACCOUNT_SID}, {"authToken": AUTH_TOKEN}, {"accountSid": ACCOUNT_SID, "authToken": ""},
     {"accountSid": 42, "authToken": AUTH_TOKEN}, {"accountSid": ACCOUNT_SID, "authToken": ["x"]}],
    ids=["empty", "no-token", "no-sid", "empty-token", "numeric-sid", "list-token"],
)
async def test_twilio_app_rejects_incomplete_credentials_without_calling_out(fake, body):
    """Both accountSid and authToken must be non-empty strings; otherwise 401 at once."""
    with pytest.raises(TokenRejected):
        await CALLS["TwilioApp"].run(body=body)
    assert fake.received == []


async def test_twilio_app_without_an_account_setting_is_unavailable_without_calling_out(fake, settings):
    """No TWILIO_ACCOUNT_SID: there is no account to check credentials against."""
    settings.TWILIO_ACCOUNT_SID = ""
    await assert_unavailable(CALLS["TwilioApp"])
    assert fake.received == []


# --- Five9 ------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [f"Bearer {FIVE9_SECRET}", f"bearer {FIVE9_SECRET}", f"  Bearer  {FIVE9_SECRET} "])
async def test_five9_accepts_the_trust_token_as_a_bearer_token(fake, header):
    """``Bearer <FIVE9_TRUST_TOKEN>`` is accepted (scheme case and spacing as HTTP allows); nothing is called."""
    assert await Five9Provider().authenticate(token=header, body={}) == Identity(user="")
    assert fake.received == []


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer ", FIVE9_SECRET, f"Basic {FIVE9_SECRET}", f"Bearer {FIVE9_SECRET}x",
     f"Bearer {FIVE9_SECRET[:-1]}", "Bearer wrong", "Bearer \u00e9t\u00e9"],
    ids=["empty", "scheme-only", "scheme-space", "no-scheme", "basic", "longer", "shorter", "wrong", "non-ascii"],
)
async def test_five9_rejects_anything_but_the_bearer_trust_token(fake, header):
    """Missing, unprefixed, other-scheme, near-miss and non-ASCII values are all refused."""
    with pytest.raises(TokenRejected):
        await Five9Provider().authenticate(token=header, body={})


async def test_five9_without_a_trust_token_setting_never_accepts(settings):
    """An empty FIVE9_TRUST_TOKEN must not turn ``Bearer `` into a password: 503 instead."""
    settings.FIVE9_TRUST_TOKEN = ""
    with pytest.raises(ProviderUnavailable):
        await Five9Provider().authenticate(token="Bearer x", body={})


# --- The shared HTTP client -------------------------------------------------------------


async def test_requests_in_one_event_loop_share_a_pooled_connection(fake):
    """Two checks in a row reuse one keep-alive connection instead of connecting again."""
    await CALLS["Salesforce"].run()
    await CALLS["GenesysCloud"].run()
    first, second = fake.received
    assert first.peer_port == second.peer_port
    assert http.get_client() is http.get_client()


def test_each_event_loop_gets_its_own_client_closed_with_the_loop(fake_server, settings):
    """A client belongs to one loop: another loop gets another client, and closing a loop closes its client."""
    fake_server.reset()
    settings.SALESFORCE_URL = fake_server.url
    settings.SALESFORCE_ORGANIZATION_ID = ORGANIZATION_ID

    async def check_and_get_client():
        await CALLS["Salesforce"].run()
        return http.get_client()

    loops = [asyncio.new_event_loop(), asyncio.new_event_loop()]
    try:
        clients = [loop.run_until_complete(check_and_get_client()) for loop in loops]
        assert clients[0] is not clients[1]
        assert not clients[0].is_closed
    finally:
        for loop in loops:
            loop.close()
    assert all(client.is_closed for client in clients)
    assert len(fake_server.received) == 2
