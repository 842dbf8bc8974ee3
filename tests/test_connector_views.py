"""The connector's HTTP endpoints (/status, /register, /register-app) through the real ASGI application.

The providers below are real plug-ins loaded by dotted path, exactly as an
operator's custom ``AUTH_OPTION`` would be; nothing of ours is replaced.
"""

from __future__ import annotations

import json
import logging
from typing import Any, ClassVar

import pytest
from channels.testing import HttpCommunicator

from aa_site.asgi import application
from auth_providers.base import BaseIdentityProvider, Identity, ProviderUnavailable, TokenRejected
from connector import tokens

RESPONSE_TIMEOUT = 10.0
PROVIDER_TOKEN = "idp-token-SENSITIVE-5f1c"
THIS_MODULE = __name__


class RejectingProvider(BaseIdentityProvider):
    """Judges every token and refuses it."""

    name = "Rejecting"

    async def authenticate(self, *, token: str, body: dict[str, Any]) -> Identity:
        raise TokenRejected("not one of ours")


class UnavailableProvider(BaseIdentityProvider):
    """Cannot reach its identity service."""

    name = "Unavailable"

    async def authenticate(self, *, token: str, body: dict[str, Any]) -> Identity:
        raise ProviderUnavailable("identity service timed out")


class RecordingProvider(BaseIdentityProvider):
    """Accepts everyone as ``provider-user`` and records what it was asked."""

    name = "Recording"
    calls: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    async def authenticate(self, *, token: str, body: dict[str, Any]) -> Identity:
        self.calls.append((token, body))
        return Identity(user="provider-user")


@pytest.fixture
def recording_provider(settings: Any) -> type[RecordingProvider]:
    """``AUTH_OPTION`` and ``APP_AUTH_OPTION`` set to ``RecordingProvider``, with its call list emptied."""
    RecordingProvider.calls = []
    settings.AUTH_OPTION = settings.APP_AUTH_OPTION = f"{THIS_MODULE}.RecordingProvider"
    return RecordingProvider


async def request(
    method: str, path: str, *, body: bytes = b"", headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """One request to the real ``application``; returns the ASGI response (status, headers, body)."""
    raw_headers = [(key.lower().encode(), value.encode()) for key, value in (headers or {}).items()]
    if body:
        raw_headers.append((b"content-length", str(len(body)).encode()))
    communicator = HttpCommunicator(application, method, path, body=body, headers=raw_headers)
    return await communicator.get_response(timeout=RESPONSE_TIMEOUT)


def header(response: dict[str, Any], name: str) -> str | None:
    """The value of response header ``name`` (case-insensitive), or ``None``."""
    for key, value in response["headers"]:
        if key.decode("latin-1").lower() == name.lower():
            return value.decode("latin-1")
    return None


def json_body(response: dict[str, Any]) -> Any:
    """The decoded JSON body."""
    assert (header(response, "Content-Type") or "").startswith("application/json")
    return json.loads(response["body"])


async def test_status_answers_the_contract_text() -> None:
    """GET /status is 200 with the exact plain-text body desktops probe for."""
    response = await request("GET", "/status")
    assert response["status"] == 200
    assert response["body"] == b"Hello, cross-origin-world!"
    assert (header(response, "Content-Type") or "").startswith("text/plain")


async def test_status_refuses_post() -> None:
    """/status is read-only."""
    assert (await request("POST", "/status"))["status"] == 405


async def test_register_with_skip_issues_a_valid_token_for_the_named_user() -> None:
    """With AUTH_OPTION=Skip, /register returns a JWT for the body's gcp_agent_assist_user in this project."""
    body = json.dumps({"gcp_agent_assist_user": "alice@example.com"}).encode()
    response = await request(
        "POST", "/register", body=body, headers={"Authorization": "anything", "Content-Type": "application/json"}
    )
    assert response["status"] == 200
    content = json_body(response)
    assert set(content) == {"token"}
    identity = tokens.validate_token(content["token"])
    assert identity == tokens.DesktopIdentity(project="test-project", user="alice@example.com")


async def test_register_without_body_issues_a_token() -> None:
    """The body is optional; without it the token's user is the provider's (empty for Skip)."""
    response = await request("POST", "/register", headers={"Authorization": "anything"})
    assert response["status"] == 200
    assert tokens.validate_token(json_body(response)["token"]).user == ""


async def test_register_refuses_get() -> None:
    """/register takes POST only."""
    assert (await request("GET", "/register"))["status"] == 405


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"\xff\xfe\x00", b"[]", b'"alice"', b"42", b"null", b"[" * 100_000,
     # Valid JSON that json.loads refuses with a bare ValueError: more digits than int_max_str_digits.
     b'{"gcp_agent_assist_user": "alice", "n": ' + b"1" * 5000 + b"}"],
    ids=["malformed", "not-utf8", "array", "string", "number", "null", "deeply-nested", "integer-beyond-digit-limit"],
)
async def test_register_body_must_be_a_json_object(body: bytes) -> None:
    """A body that is not JSON, or JSON but not an object, is 400 with a message."""
    response = await request("POST", "/register", body=body, headers={"Authorization": "x"})
    assert response["status"] == 400
    assert json_body(response)["message"]


@pytest.mark.parametrize("user", [42, None, ["alice"], {"name": "alice"}, True])
async def test_register_user_must_be_a_string(user: Any) -> None:
    """gcp_agent_assist_user of any other type is 400 naming the field."""
    body = json.dumps({"gcp_agent_assist_user": user}).encode()
    response = await request("POST", "/register", body=body, headers={"Authorization": "x"})
    assert response["status"] == 400
    assert "gcp_agent_assist_user" in json_body(response)["message"]


async def test_register_with_empty_auth_option_is_401(settings: Any) -> None:
    """An empty AUTH_OPTION means nobody may register: 401 with a message."""
    settings.AUTH_OPTION = ""
    response = await request("POST", "/register", headers={"Authorization": "x"})
    assert response["status"] == 401
    assert "AUTH_OPTION" in json_body(response)["message"]


async def test_register_app_with_empty_app_auth_option_is_401(settings: Any) -> None:
    """An empty APP_AUTH_OPTION disables /register-app: 401 with a message."""
    settings.APP_AUTH_OPTION = ""
    body = json.dumps({"accountSid": "AC1", "authToken": "secret"}).encode()
    response = await request("POST", "/register-app", body=body)
    assert response["status"] == 401
    assert "APP_AUTH_OPTION" in json_body(response)["message"]


async def test_register_with_rejecting_provider_is_401(settings: Any) -> None:
    """A provider that refuses the token gives 401, and no token is issued."""
    settings.AUTH_OPTION = f"{THIS_MODULE}.RejectingProvider"
    response = await request("POST", "/register", headers={"Authorization": PROVIDER_TOKEN})
    assert response["status"] == 401
    content = json_body(response)
    assert "token" not in content
    assert content["message"]


async def test_register_with_unavailable_provider_is_503_and_logs_without_the_token(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A provider that cannot judge gives 503 (not 401) and one WARNING naming it, never the token."""
    settings.AUTH_OPTION = f"{THIS_MODULE}.UnavailableProvider"
    caplog.set_level(logging.DEBUG)
    response = await request("POST", "/register", headers={"Authorization": f"Bearer {PROVIDER_TOKEN}"})
    assert response["status"] == 503
    assert "Unavailable" in json_body(response)["message"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "connector.http.views"]
    assert len(warnings) == 1
    assert "Unavailable" in warnings[0].getMessage()
    assert all(PROVIDER_TOKEN not in record.getMessage() for record in caplog.records)


async def test_custom_provider_sees_the_header_and_body_and_names_the_user(
    recording_provider: type[RecordingProvider],
) -> None:
    """The provider gets the Authorization header as sent and the JSON body; its user goes in the token."""
    body = {"extra": "value"}
    response = await request(
        "POST", "/register", body=json.dumps(body).encode(), headers={"Authorization": f"Bearer {PROVIDER_TOKEN}"}
    )
    assert response["status"] == 200
    assert recording_provider.calls == [(f"Bearer {PROVIDER_TOKEN}", body)]
    assert tokens.validate_token(json_body(response)["token"]).user == "provider-user"


async def test_provider_user_wins_over_the_body_user(recording_provider: type[RecordingProvider]) -> None:
    """The identity the provider verified goes in the token; a gcp_agent_assist_user in the body cannot replace it."""
    body = json.dumps({"gcp_agent_assist_user": "admin"}).encode()
    response = await request("POST", "/register", body=body, headers={"Authorization": "x"})
    assert response["status"] == 200
    assert tokens.validate_token(json_body(response)["token"]).user == "provider-user"


@pytest.mark.parametrize(
    "user",
    ["u" * (tokens.MAX_USER_LENGTH + 1), "u" * 100_000, "\ud800"],
    ids=["one_over_the_limit", "100_KB", "lone_surrogate"],
)
@pytest.mark.parametrize("provider", ["Skip", f"{THIS_MODULE}.RecordingProvider"])
async def test_register_refuses_a_body_user_over_the_limit(settings: Any, provider: str, user: str) -> None:
    """A user no token can carry is 400 ``{"message"}`` naming the field and the limit, with either provider
    (a 100 KB user made a 135 KB token that HTTP then dropped)."""
    settings.AUTH_OPTION = provider
    body = json.dumps({"gcp_agent_assist_user": user}).encode()
    response = await request("POST", "/register", body=body, headers={"Authorization": "x"})
    assert response["status"] == 400
    message = json_body(response)["message"]
    assert set(json_body(response)) == {"message"}
    assert "gcp_agent_assist_user" in message and str(tokens.MAX_USER_LENGTH) in message


async def test_register_with_skip_accepts_a_body_user_at_the_limit() -> None:
    """Skip names no user, so the body's is used, up to the limit."""
    user = "u" * tokens.MAX_USER_LENGTH
    body = json.dumps({"gcp_agent_assist_user": user}).encode()
    response = await request("POST", "/register", body=body, headers={"Authorization": "x"})
    assert response["status"] == 200
    assert tokens.validate_token(json_body(response)["token"]).user == user


async def test_register_app_uses_the_app_provider_with_the_body(recording_provider: type[RecordingProvider]) -> None:
    """/register-app hands the JSON body (application credentials) to APP_AUTH_OPTION's provider."""
    credentials = {"accountSid": "AC123", "authToken": "app-secret"}
    response = await request("POST", "/register-app", body=json.dumps(credentials).encode())
    assert response["status"] == 200
    assert recording_provider.calls == [("", credentials)]
    assert tokens.validate_token(json_body(response)["token"]).project == "test-project"


def preflight_headers(origin: str) -> dict[str, str]:
    """A browser's CORS preflight for POST /register with the headers the UI modules send."""
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }


async def test_cors_preflight_from_an_allowed_origin_is_granted(settings: Any) -> None:
    """A listed desktop origin may POST /register with Authorization and Content-Type."""
    settings.CORS_ALLOWED_ORIGINS = ["https://desk.example"]
    response = await request("OPTIONS", "/register", headers=preflight_headers("https://desk.example"))
    assert response["status"] == 200
    assert header(response, "Access-Control-Allow-Origin") == "https://desk.example"
    allowed_headers = {h.strip().lower() for h in (header(response, "Access-Control-Allow-Headers") or "").split(",")}
    assert {"authorization", "content-type"} <= allowed_headers
    assert "POST" in (header(response, "Access-Control-Allow-Methods") or "")


async def test_cors_preflight_from_another_origin_gets_no_grant(settings: Any) -> None:
    """Any other origin receives no Access-Control-Allow-Origin, so the browser blocks it."""
    settings.CORS_ALLOWED_ORIGINS = ["https://desk.example"]
    response = await request("OPTIONS", "/register", headers=preflight_headers("https://evil.example"))
    assert header(response, "Access-Control-Allow-Origin") is None


async def test_cors_simple_request_from_an_allowed_origin_is_granted(settings: Any) -> None:
    """The status probe from a listed origin carries the grant too."""
    settings.CORS_ALLOWED_ORIGINS = ["https://desk.example"]
    response = await request("GET", "/status", headers={"Origin": "https://desk.example"})
    assert response["status"] == 200
    assert header(response, "Access-Control-Allow-Origin") == "https://desk.example"
