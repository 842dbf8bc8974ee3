"""Service-to-service callers: a service account's Google ID token on /register, /conversation-name and the proxy.

Tokens are signed with a locally generated RSA key whose certificate the fake
of Google's certificates endpoint (``testing/fake_google_certs.py``) publishes.
Requests go through the real ASGI application (Redis, the fake Dialogflow of
``testing.dialogflow_fixtures``); the last test runs a real connector process.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from channels.testing import HttpCommunicator
from django.core import checks

from aa_site.asgi import application
from connector import tokens
from connector.http import service_callers
from testing import fake_google_certs, processes
from testing.fake_dialogflow import FakeDialogflow
from testing.fake_google_certs import FakeGoogleCerts, pubsub_claims, signing_key, unsigned_token

RESPONSE_TIMEOUT = 20.0
AUDIENCE = "https://ui-connector-abc123-uc.a.run.app"
CALLER = "audiohook@test-project.iam.gserviceaccount.com"
INTRUDER = "intruder@test-project.iam.gserviceaccount.com"
GOOGLE_KEY = signing_key("google-key-1")
ATTACKER_KEY = signing_key("attacker-key")
CONVERSATION = "projects/test-project/locations/global/conversations/SVC-1"
PROXIED = "/v2/projects/test-project/locations/global/conversations/c-1"


@pytest.fixture
def google() -> Iterator[FakeGoogleCerts]:
    """The fake certificates endpoint, publishing ``GOOGLE_KEY``."""
    with fake_google_certs.serve(GOOGLE_KEY) as fake:
        yield fake


@pytest.fixture
def callers_on(settings: Any, google: FakeGoogleCerts) -> FakeGoogleCerts:
    """Service callers on: ``CALLER`` exactly and every account of other-project, audience ``AUDIENCE``."""
    settings.SERVICE_AUTH_ALLOWED_CALLERS = [CALLER, "*@other-project.iam.gserviceaccount.com"]
    settings.SERVICE_AUTH_AUDIENCE = [AUDIENCE]
    settings.SERVICE_AUTH_CERTS_URL = google.url
    return google


def id_token(**changes: Any) -> str:
    """An ID token as Google signs it for ``CALLER`` and ``AUDIENCE``, with ``changes`` to its claims."""
    return GOOGLE_KEY.sign(pubsub_claims(**{"audience": AUDIENCE, "email": CALLER, **changes}))


async def call(
    method: str, path: str, *, authorization: str | None, body: Any = None, query: str = ""
) -> dict[str, Any]:
    """One request to the real application; ``body`` JSON-encoded."""
    headers: list[tuple[bytes, bytes]] = []
    if authorization is not None:
        headers.append((b"authorization", authorization.encode()))
    raw = b"" if body is None else json.dumps(body).encode()
    if raw:
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    target = f"{path}?{query}" if query else path
    return await HttpCommunicator(application, method, target, body=raw, headers=headers).get_response(
        timeout=RESPONSE_TIMEOUT
    )


def header(response: dict[str, Any], name: str) -> str | None:
    """Response header ``name`` (case-insensitive), or ``None``."""
    for key, value in response["headers"]:
        if key.decode("latin-1").lower() == name.lower():
            return value.decode("latin-1")
    return None


def message(response: dict[str, Any]) -> str:
    """The ``message`` of one of our JSON refusals."""
    body = json.loads(response["body"])
    assert set(body) == {"message"}, body
    return body["message"]


def refusal_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The WARNING lines of the service-caller authentication."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "connector.http.api.authentication" and record.levelno == logging.WARNING
    ]


def assert_token_not_logged(token: str, caplog: pytest.LogCaptureFixture) -> None:
    """No recognisable part of ``token`` in any captured record."""
    text = "\n".join(record.getMessage() for record in caplog.records)
    for part in [token, *token.split(".")]:
        if len(part) >= 8:
            assert part not in text


# --- the allow-list -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "allowed"),
    [
        (CALLER, True),
        (CALLER.upper(), True),
        ("anyone@other-project.iam.gserviceaccount.com", True),
        ("other@test-project.iam.gserviceaccount.com", False),  # exact entry only for test-project
        ("x@evil-other-project.iam.gserviceaccount.com", False),  # a suffix of the domain is not the domain
        ("x@sub.other-project.iam.gserviceaccount.com", False),
        ("audiohook@test-project.iam.gserviceaccount.com.evil.com", False),
        ("not-an-email", False),
        ("a@b@other-project.iam.gserviceaccount.com", False),
    ],
)
def test_allow_list_matches_exact_emails_and_one_project_wildcards(email: str, allowed: bool) -> None:
    assert service_callers.is_allowed(email, [CALLER, "*@Other-Project.iam.gserviceaccount.com"]) is allowed


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (CALLER, None),
        ("*@my-project.iam.gserviceaccount.com", None),
        ("person@example.com", None),
        ("*@gmail.com", "wildcard"),
        ("*@developer.gserviceaccount.com", "wildcard"),  # every project's default compute account
        ("*@appspot.gserviceaccount.com", "wildcard"),
        ("*@.iam.gserviceaccount.com", "wildcard"),
        ("audio*@my-project.iam.gserviceaccount.com", "whole part"),
        ("*@*.iam.gserviceaccount.com", "whole part"),
        ("*", "not an email"),
        ("no-at-sign", "not an email"),
    ],
)
def test_allow_list_entries_are_checked(entry: str, problem: str | None) -> None:
    found = service_callers.entry_problem(entry)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_start_up_checks_refuse_an_allow_list_without_audience_and_bad_entries(settings: Any) -> None:
    settings.SERVICE_AUTH_ALLOWED_CALLERS = ["*@gmail.com", CALLER]
    settings.SERVICE_AUTH_AUDIENCE = []
    ids = {problem.id for problem in checks.run_checks()}
    assert {"aa_site.E050", "aa_site.E052"} <= ids
    settings.SERVICE_AUTH_ALLOWED_CALLERS = [CALLER]
    settings.SERVICE_AUTH_AUDIENCE = [AUDIENCE]
    assert not {problem.id for problem in checks.run_checks()} & {"aa_site.E050", "aa_site.E051", "aa_site.E052"}


# --- accepted callers ------------------------------------------------------------------------


async def test_register_gives_a_service_caller_a_token_for_its_email(callers_on: FakeGoogleCerts, settings: Any):
    """The body's user is ignored: the token's user is the verified email; the provider is not asked."""
    settings.AUTH_OPTION = ""  # registration through a provider is off: a service caller needs none
    token = id_token()
    response = await call("POST", "/register", authorization=f"Bearer {token}", body={"gcp_agent_assist_user": "x"})
    assert response["status"] == 200, response["body"]
    identity = tokens.validate_token(json.loads(response["body"])["token"])
    assert (identity.project, identity.user) == ("test-project", CALLER)
    # A wildcard entry, with the audience written with a trailing slash by the caller.
    other = GOOGLE_KEY.sign(
        pubsub_claims(audience=AUDIENCE + "/", email="media@other-project.iam.gserviceaccount.com")
    )
    response = await call("POST", "/register", authorization=other)
    assert response["status"] == 200, response["body"]
    user = tokens.validate_token(json.loads(response["body"])["token"]).user
    assert user == "media@other-project.iam.gserviceaccount.com"
    assert callers_on.fetches == 1


async def test_register_still_judges_other_tokens_with_the_provider(callers_on: FakeGoogleCerts):
    """A provider token (Skip in tests) is not an ID token: it goes on to the provider as before."""
    response = await call("POST", "/register", authorization="skip-anything", body={"gcp_agent_assist_user": "agent"})
    assert response["status"] == 200, response["body"]
    assert tokens.validate_token(json.loads(response["body"])["token"]).user == "agent"


async def test_conversation_name_accepts_a_service_caller_and_still_desktops(callers_on: FakeGoogleCerts):
    key = f"+1-555-0100-{uuid.uuid4().hex}"
    body = {"conversationIntegrationKey": key, "conversationName": CONVERSATION}
    response = await call("POST", "/conversation-name", authorization=f"Bearer {id_token()}", body=body)
    assert response["status"] == 200, response["body"]
    response = await call(
        "GET", "/conversation-name", authorization=tokens.issue_token(user="agent"),
        query=f"conversationIntegrationKey={key.replace('+', '%2B')}",
    )
    assert (response["status"], json.loads(response["body"])) == (200, {"conversationName": CONVERSATION})


async def test_proxy_accepts_a_service_caller_and_never_forwards_its_token(
    callers_on: FakeGoogleCerts, dialogflow: FakeDialogflow  # noqa: F811
):
    token = id_token()
    response = await call("GET", PROXIED, authorization=f"Bearer {token}")
    assert response["status"] == 200, response["body"]
    [received] = dialogflow.received
    assert received.path == PROXIED
    assert token not in received.headers.get("authorization", "")


# --- refused callers -------------------------------------------------------------------------


def _refused_tokens() -> list[tuple[str, int, str, str]]:
    claims = pubsub_claims(audience=AUDIENCE, email=CALLER)
    return [
        ("wrong audience", 401, GOOGLE_KEY.sign({**claims, "aud": "https://other-service.a.run.app"}), "audience"),
        ("expired", 401, GOOGLE_KEY.sign({**claims, "iat": 1_000_000, "exp": 1_003_600}), "expired"),
        ("forged", 401, ATTACKER_KEY.sign(claims, kid=GOOGLE_KEY.kid), "signature"),
        ("unknown key", 401, ATTACKER_KEY.sign(claims), "key Google does not publish"),
        ("alg none", 401, unsigned_token({"alg": "none", "typ": "JWT"}, claims), "algorithm"),
        (
            "HS256 keyed with the certificate",
            401,
            unsigned_token(
                {"alg": "HS256", "kid": GOOGLE_KEY.kid}, claims, hmac_key=GOOGLE_KEY.certificate_pem.encode()
            ),
            "algorithm",
        ),
        ("not on the allow-list", 403, GOOGLE_KEY.sign({**claims, "email": INTRUDER}), "allow-list"),
        ("unverified email", 403, GOOGLE_KEY.sign({**claims, "email_verified": False}), "email_verified"),
        ("no email", 403, GOOGLE_KEY.sign({key: value for key, value in claims.items() if key != "email"}), "no email"),
    ]


REFUSED = _refused_tokens()


@pytest.mark.parametrize(("case", "status", "token", "reason"), REFUSED, ids=[case[0] for case in REFUSED])
@pytest.mark.parametrize("path", ["/register", "/conversation-name", PROXIED])
async def test_bad_id_tokens_are_refused_with_the_reason_and_one_warning(
    callers_on: FakeGoogleCerts, caplog: pytest.LogCaptureFixture, path: str, case: str, status: int, token: str,
    reason: str,
):
    caplog.set_level(logging.DEBUG)
    method = "POST" if path == "/register" else "GET"
    response = await call(method, path, authorization=f"Bearer {token}", query="" if path != "/conversation-name"
                          else "conversationIntegrationKey=k")
    assert response["status"] == status, response["body"]
    why = message(response)
    assert reason in why
    if status == 401:
        assert header(response, "WWW-Authenticate") == "Bearer"
    lines = refusal_lines(caplog)
    assert len(lines) == 1 and why in lines[0] and str(status) in lines[0], lines
    assert_token_not_logged(token, caplog)
    for part in token.split("."):
        if len(part) >= 8:
            assert part not in why


async def test_id_tokens_are_refused_when_the_feature_is_off(google: FakeGoogleCerts, settings: Any):
    """Off by default: a genuine ID token is just a foreign token to the desktop JWT check."""
    assert settings.SERVICE_AUTH_ALLOWED_CALLERS == []
    settings.SERVICE_AUTH_AUDIENCE = [AUDIENCE]
    settings.SERVICE_AUTH_CERTS_URL = google.url
    response = await call("GET", PROXIED, authorization=f"Bearer {id_token()}")
    assert (response["status"], message(response)) == (401, tokens.INVALID_TOKEN_MESSAGE)
    assert google.fetches == 0


async def test_unreachable_certificates_give_503_with_retry_after(
    callers_on: FakeGoogleCerts, caplog: pytest.LogCaptureFixture
):
    callers_on.status = 500
    token = id_token()
    response = await call("POST", "/register", authorization=f"Bearer {token}")
    assert response["status"] == 503 and header(response, "Retry-After") == "5"
    assert "certificates" in message(response)
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1, [record.getMessage() for record in errors]
    assert_token_not_logged(token, caplog)
    callers_on.status = 200  # not cached: the next call fetches again and succeeds
    assert (await call("POST", "/register", authorization=f"Bearer {token}"))["status"] == 200


async def test_an_id_token_in_the_url_is_refused(callers_on: FakeGoogleCerts):
    response = await call("POST", "/register", authorization=id_token(), query="id_token=x")
    assert response["status"] == 401 and "URL" in message(response)


# --- a real connector process ----------------------------------------------------------------


async def test_a_connector_process_accepts_service_callers(redis_server: processes.RedisAddress):
    """Over TCP against the image's server: register, then /conversation-name with the ID token; refusals logged
    without the token, no traceback."""
    with fake_google_certs.serve(GOOGLE_KEY) as google, processes.service_server(
        role="connector",
        redis=redis_server,
        AUTH_OPTION="Five9",
        FIVE9_TRUST_TOKEN="x" * 40,
        SERVICE_AUTH_ALLOWED_CALLERS=f"{CALLER}, *@other-project.iam.gserviceaccount.com",
        SERVICE_AUTH_AUDIENCE=AUDIENCE,
        SERVICE_AUTH_CERTS_URL=google.url,
    ) as server:
        good, foreign = id_token(), id_token(email=INTRUDER)
        async with httpx.AsyncClient(base_url=server.http_url, timeout=RESPONSE_TIMEOUT) as client:
            registered = await client.post("/register", headers={"Authorization": f"Bearer {good}"})
            assert registered.status_code == 200, registered.text
            assert tokens.validate_token(registered.json()["token"]).user == CALLER
            key = f"+1-555-0100-{uuid.uuid4().hex}"
            stored = await client.post(
                "/conversation-name",
                json={"conversationIntegrationKey": key, "conversationName": CONVERSATION},
                headers={"Authorization": f"Bearer {good}"},
            )
            assert stored.status_code == 200, stored.text
            refused = await client.post("/register", headers={"Authorization": f"Bearer {foreign}"})
            assert refused.status_code == 403 and "allow-list" in refused.json()["message"]
        assert google.fetches == 1
        log = server.log()
    assert "Traceback" not in log and "Refusing a service caller" in log
    for token in (good, foreign):
        assert all(part not in log for part in token.split(".") if len(part) >= 8)
