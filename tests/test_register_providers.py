"""POST /register and /register-app end to end with each built-in identity provider.

The Django app is driven through ``django.test.AsyncClient`` with the
provider chosen per test by the ``settings`` fixture, and once more through a
production-like server process; the provider is always the real fake on
127.0.0.1. Besides the status, every test checks that the provider's token
or credentials never reach the logs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from django.test import AsyncClient

from connector import tokens
from testing import clients, fake_providers, processes
from testing.fake_providers import (
    ACCESS_TOKEN,
    ACCOUNT_SID,
    AUTH_TOKEN,
    ORGANIZATION_ID,
    OTHER_ORGANIZATION_ID,
    USER_EMAIL,
    Behaviour,
    FakeProvider,
)

FIVE9_SECRET = "five9-shared-trust-token-0123456789"
SECRETS = (ACCESS_TOKEN, AUTH_TOKEN, FIVE9_SECRET)
# AUTH_OPTION -> (the Authorization header a desktop sends, the user the provider names)
DESKTOPS = {
    "Salesforce": (ACCESS_TOKEN, USER_EMAIL),
    "SalesforceLWC": (f"Bearer {ACCESS_TOKEN}", USER_EMAIL),
    "GenesysCloud": (f"Bearer {ACCESS_TOKEN}", USER_EMAIL),
    "Twilio": (ACCESS_TOKEN, USER_EMAIL),
    "Five9": (f"Bearer {FIVE9_SECRET}", ""),
}
HTTP_CHECKED = [name for name in DESKTOPS if name != "Five9"]
APP_CREDENTIALS = {"accountSid": ACCOUNT_SID, "authToken": AUTH_TOKEN}


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeProvider]:
    """One fake provider for the module (reset before every test)."""
    with fake_providers.serve() as fake:
        yield fake


@pytest.fixture
def fake(fake_server: FakeProvider, settings, caplog) -> FakeProvider:
    """The fake judging like the real services, every provider setting pointing at it, all logs captured."""
    caplog.set_level(logging.DEBUG)
    fake_server.reset()
    settings.SALESFORCE_URL = settings.GENESYS_CLOUD_API_URL = fake_server.url
    settings.TWILIO_FLEX_URL = settings.TWILIO_API_URL = fake_server.url
    settings.SALESFORCE_ORGANIZATION_ID = ORGANIZATION_ID
    settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
    settings.FIVE9_TRUST_TOKEN = FIVE9_SECRET
    settings.APP_AUTH_OPTION = "Twilio"
    return fake_server


def assert_no_secret_in(text: str) -> None:
    """None of the provider tokens or credentials appears in ``text``, in any encoding a log might use."""
    assert [form for form in fake_providers.secret_forms(*SECRETS) if form in text] == []


async def register(authorization: str | None, body: dict | None = None, *, path: str = "/register"):
    """POST to the app as a desktop would."""
    headers = {} if authorization is None else {"Authorization": authorization}
    data = json.dumps(body) if body is not None else ""
    return await AsyncClient().post(path, data=data, content_type="application/json", headers=headers)


# --- /register ---------------------------------------------------------------------------


@pytest.mark.parametrize("option", DESKTOPS)
async def test_register_with_an_accepted_token_returns_a_desktop_jwt(fake, settings, caplog, option):
    """200 and a JWT this service accepts, naming the user the provider vouched for."""
    settings.AUTH_OPTION = option
    authorization, user = DESKTOPS[option]
    response = await register(authorization)
    assert response.status_code == 200, response.content
    identity = tokens.validate_token(response.json()["token"])
    assert (identity.project, identity.user) == (settings.GCP_PROJECT_ID, user)
    assert len(fake.received) == (0 if option == "Five9" else 1)
    assert_no_secret_in(caplog.text)


@pytest.mark.parametrize("option", DESKTOPS)
async def test_register_keeps_the_user_the_provider_verified(fake, settings, option):
    """A ``gcp_agent_assist_user`` in the body cannot replace the user the provider vouched for; it names the
    user only when the provider names none (Five9)."""
    settings.AUTH_OPTION = option
    authorization, verified = DESKTOPS[option]
    response = await register(authorization, {"gcp_agent_assist_user": "admin@example.com"})
    assert response.status_code == 200
    assert tokens.validate_token(response.json()["token"]).user == (verified or "admin@example.com")


async def test_register_refuses_a_100_kb_body_user_without_asking_the_provider(fake, settings):
    """Over the limit is 400 before the provider is called."""
    settings.AUTH_OPTION = "Salesforce"
    response = await register(ACCESS_TOKEN, {"gcp_agent_assist_user": "u" * 100_000})
    assert response.status_code == 400
    assert "gcp_agent_assist_user" in response.json()["message"]
    assert fake.received == []


async def test_register_with_a_provider_user_over_the_limit_is_503(fake, settings, caplog):
    """A provider naming a user no token may carry: 503 as for any unusable provider answer, one WARNING."""
    settings.AUTH_OPTION = "Salesforce"
    fake.user_email = "u" * (tokens.MAX_USER_LENGTH + 1) + "@example.com"
    response = await register(ACCESS_TOKEN)
    assert response.status_code == 503
    assert set(response.json()) == {"message"}
    assert any(record.levelname == "WARNING" and "Salesforce" in record.getMessage() for record in caplog.records)
    assert_no_secret_in(caplog.text)


@pytest.mark.parametrize("option", DESKTOPS)
async def test_register_with_a_refused_token_is_401(fake, settings, caplog, option):
    """A token the provider does not know: 401 with a message, and no JWT."""
    settings.AUTH_OPTION = option
    response = await register("Bearer not-a-valid-token")
    assert response.status_code == 401
    assert set(response.json()) == {"message"}
    assert_no_secret_in(caplog.text)


@pytest.mark.parametrize("option", ["Salesforce", "SalesforceLWC"])
async def test_register_for_a_user_of_another_salesforce_org_is_401(fake, settings, option):
    """A valid Salesforce token of another organisation is refused."""
    settings.AUTH_OPTION = option
    fake.organization_id = OTHER_ORGANIZATION_ID
    response = await register(DESKTOPS[option][0])
    assert response.status_code == 401


@pytest.mark.parametrize("option", DESKTOPS)
async def test_register_without_a_token_is_401_and_the_provider_is_not_called(fake, settings, option):
    """No Authorization header: 401 at once."""
    settings.AUTH_OPTION = option
    response = await register(None)
    assert response.status_code == 401
    assert fake.received == []


@pytest.mark.parametrize("option", HTTP_CHECKED)
async def test_register_with_a_token_outside_ascii_is_401_and_the_provider_is_not_called(fake, settings, option):
    """A bearer token is ASCII (RFC 6750): one with other characters is refused at once, never sent on."""
    settings.AUTH_OPTION = option
    response = await register("Bearer caf\u00e9-token")
    assert response.status_code == 401
    assert fake.received == []


@pytest.mark.parametrize(
    ("option", "failure"),
    [
        (option, failure)
        for option in HTTP_CHECKED
        for failure in ("server-error", "not-json", "slow", "refused")
        # Twilio's verify function may answer 200 with any body (see auth_providers/twilio.py).
        if (option, failure) != ("Twilio", "not-json")
    ],
)
async def test_register_while_the_provider_cannot_answer_is_503(fake, settings, caplog, option, failure):
    """Provider down, slow or answering garbage: 503 JSON naming the provider, one WARNING, no token in any log."""
    settings.AUTH_OPTION = option
    if failure == "server-error":
        fake.behaviour, fake.status = Behaviour.STATUS, 500
    elif failure == "not-json":
        fake.behaviour = Behaviour.NOT_JSON
    elif failure == "slow":
        settings.IDENTITY_PROVIDER_READ_TIMEOUT = 0.3
        fake.behaviour, fake.slow_seconds = Behaviour.SLOW, 10.0
    else:
        settings.SALESFORCE_URL = settings.GENESYS_CLOUD_API_URL = settings.TWILIO_FLEX_URL = (
            fake_providers.refused_url()
        )
    response = await register(DESKTOPS[option][0])
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert option in response.json()["message"]
    warnings = [r for r in caplog.records if r.name == "connector.http.views" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and option in warnings[0].getMessage()
    assert_no_secret_in(caplog.text)


# --- /register-app -------------------------------------------------------------------------


async def test_register_app_with_twilio_account_credentials_returns_a_desktop_jwt(fake, caplog):
    """APP_AUTH_OPTION=Twilio: credentials that can read the configured account get a JWT."""
    response = await register(None, APP_CREDENTIALS, path="/register-app")
    assert response.status_code == 200, response.content
    assert tokens.validate_token(response.json()["token"]).user == ACCOUNT_SID
    assert fake.received[0].basic_auth() == (ACCOUNT_SID, AUTH_TOKEN)
    assert_no_secret_in(caplog.text)


async def test_register_app_with_a_wrong_auth_token_is_401(fake, caplog):
    """Twilio refuses the credentials: 401."""
    response = await register(None, {"accountSid": ACCOUNT_SID, "authToken": "wrong"}, path="/register-app")
    assert response.status_code == 401
    assert_no_secret_in(caplog.text)


async def test_register_app_without_credentials_is_401_and_twilio_is_not_called(fake):
    """An empty body carries no credentials."""
    response = await register(None, path="/register-app")
    assert response.status_code == 401
    assert fake.received == []


@pytest.mark.parametrize(
    "credentials",
    [{"accountSid": "\ud800", "authToken": AUTH_TOKEN}, {"accountSid": ACCOUNT_SID, "authToken": "t\u00e9"}],
    ids=["lone-surrogate-sid", "non-ascii-token"],
)
async def test_register_app_with_credentials_outside_ascii_is_401_and_twilio_is_not_called(fake, credentials):
    """Twilio credentials are ASCII: a lone surrogate (a JSON escape) or any other character is refused at once."""
    response = await register(None, credentials, path="/register-app")
    assert response.status_code == 401
    assert fake.received == []


async def test_register_app_while_twilio_fails_is_503(fake, caplog):
    """Twilio answering 503: the credentials were not judged."""
    fake.behaviour, fake.status = Behaviour.STATUS, 503
    response = await register(None, APP_CREDENTIALS, path="/register-app")
    assert response.status_code == 503
    assert "TwilioApp" in response.json()["message"]
    assert_no_secret_in(caplog.text)


async def test_register_app_with_twilio_does_not_accept_a_flex_token(fake):
    """/register-app judges account credentials only: a valid Flex token in Authorization is not enough."""
    response = await register(ACCESS_TOKEN, path="/register-app")
    assert response.status_code == 401
    assert fake.received == []


# --- A production-like process --------------------------------------------------------------


@pytest.fixture(scope="module")
def connector_process(fake_server, redis_server) -> Iterator[processes.Server]:
    """A real connector process (production mode, DEBUG logs) with SalesforceLWC and Twilio app auth."""
    with processes.service_server(
        role="connector",
        redis=redis_server,
        AUTH_OPTION="SalesforceLWC",
        APP_AUTH_OPTION="Twilio",
        SALESFORCE_URL=fake_server.url,
        SALESFORCE_ORGANIZATION_ID=ORGANIZATION_ID[:15],
        TWILIO_API_URL=fake_server.url,
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        IDENTITY_PROVIDER_READ_TIMEOUT="1",
        LOG_LEVEL="DEBUG",
    ) as server:
        yield server


@pytest.fixture
def live(connector_process, fake_server) -> Iterator[processes.Server]:
    """The server process with the fake reset; its log must never contain a token afterwards."""
    fake_server.reset()
    yield connector_process
    assert_no_secret_in(connector_process.log())


async def post(server: processes.Server, path: str, **kwargs) -> httpx.Response:
    """POST to the server process."""
    async with httpx.AsyncClient(base_url=server.http_url, timeout=clients.CLIENT_TIMEOUT) as client:
        return await client.post(path, **kwargs)


async def test_the_connector_registers_a_desktop_whose_token_the_provider_accepts(live, fake_server):
    """The real process asks the provider (token in the query, as SalesforceLWC does) and issues a JWT."""
    response = await post(live, "/register", headers={"Authorization": f"Bearer {ACCESS_TOKEN}"})
    assert response.status_code == 200, live.log()
    assert tokens.validate_token(response.json()["token"]).user == USER_EMAIL
    assert fake_server.received[0].query == {"access_token": ACCESS_TOKEN}


async def test_the_connector_refuses_a_token_the_provider_refuses(live):
    """401 from the real process for a token the provider does not know."""
    response = await post(live, "/register", headers={"Authorization": "Bearer unknown-token"})
    assert response.status_code == 401


async def test_the_connector_answers_503_while_the_provider_fails(live, fake_server):
    """503 from the real process when the provider answers 500; its log names the provider, not the token."""
    fake_server.behaviour, fake_server.status = Behaviour.STATUS, 500
    response = await post(live, "/register", headers={"Authorization": ACCESS_TOKEN})
    assert response.status_code == 503
    assert "SalesforceLWC" in response.json()["message"]
    assert "Identity provider SalesforceLWC could not judge a token" in live.log()


async def test_the_connector_registers_an_app_with_twilio_credentials(live):
    """/register-app in the real process checks the body's Twilio credentials."""
    response = await post(live, "/register-app", json=APP_CREDENTIALS)
    assert response.status_code == 200, live.log()
    assert tokens.validate_token(response.json()["token"]).user == ACCOUNT_SID
