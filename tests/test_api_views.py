"""The DRF base of the connector's endpoints (connector/http/api/): the contract's answers whatever the request.

Through the real ASGI application: every refusal of ours is JSON
``{"message"}`` (never an HTML page), a 401 carries ``WWW-Authenticate:
Bearer``, a 405 its ``Allow``, DRF's content negotiation refuses nothing, and
no policy check starts a thread.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from channels.testing import HttpCommunicator

from aa_site.asgi import application
from connector import tokens

RESPONSE_TIMEOUT = 10.0
NAME = "projects/test-project/conversations/CONV-api"


async def call(
    method: str, path: str, *, body: bytes = b"", headers: dict[str, str] | None = None, length: bool = True
) -> dict[str, Any]:
    """One request; ``length`` False sends the body without Content-Length (as a chunked upload arrives)."""
    raw = [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    if body and length:
        raw.append((b"content-length", str(len(body)).encode()))
    return await HttpCommunicator(application, method, path, body=body, headers=raw).get_response(
        timeout=RESPONSE_TIMEOUT
    )


def headers_of(response: dict[str, Any]) -> dict[str, str]:
    return {name.decode().lower(): value.decode() for name, value in response["headers"]}


def message_of(response: dict[str, Any]) -> str:
    """The ``{"message"}`` body, checked to be exactly that, as JSON."""
    assert headers_of(response)["content-type"].startswith("application/json"), response
    content = json.loads(response["body"])
    assert set(content) == {"message"} and isinstance(content["message"], str) and content["message"]
    return content["message"]


@pytest.mark.parametrize(
    "path", ["/conversation-name?conversationIntegrationKey=k", "/v2/projects/test-project/locations/global/"
                                                              "conversations/C1"]
)
@pytest.mark.parametrize("authorization", [None, "", "Bearer ", "Bearer not-a-jwt", "not-a-jwt"])
async def test_every_401_is_json_with_a_bearer_challenge(path: str, authorization: str | None) -> None:
    """No token, an empty one or a bad one: 401 {"message"} with WWW-Authenticate: Bearer."""
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await call("GET", path, headers=headers)
    assert response["status"] == 401
    assert headers_of(response)["www-authenticate"] == "Bearer"
    expected = tokens.MISSING_TOKEN_MESSAGE if not (authorization or "").removeprefix("Bearer ").strip() else None
    assert message_of(response) == (expected or message_of(response))


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [("GET", "/register", "POST"), ("PUT", "/register-app", "POST"), ("POST", "/status", "GET"),
     ("HEAD", "/status", "GET"), ("PATCH", "/conversation-name", "GET, POST, DELETE")],
)
async def test_other_methods_are_405_json_with_allow(method: str, path: str, allow: str) -> None:
    """405 {"message"} naming the method, with Allow, before any token is asked for."""
    response = await call(method, path)
    assert response["status"] == 405
    assert headers_of(response)["allow"] == allow
    if method != "HEAD":
        assert method in message_of(response)


async def test_unknown_path_is_json_404() -> None:
    """A path no role serves: 404 {"message"}, not Django's HTML page."""
    response = await call("GET", "/no/such/path")
    assert response["status"] == 404
    assert message_of(response)


@pytest.mark.parametrize("accept", ["text/html", "application/xml", "image/png;q=1, */*;q=0"])
async def test_accept_header_is_not_negotiated(accept: str) -> None:
    """Whatever Accept says, /register answers its JSON (DRF's default negotiation would answer 406)."""
    response = await call("POST", "/register", headers={"Authorization": "x", "Accept": accept})
    assert response["status"] == 200
    assert set(json.loads(response["body"])) == {"token"}


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded", "image/png"])
async def test_json_body_is_read_whatever_its_content_type(content_type: str | None) -> None:
    """The UI modules' bodies are JSON with any Content-Type or none (DRF's default would answer 415 or ignore it)."""
    body = json.dumps({"conversationIntegrationKey": f"ct-{content_type}", "conversationName": NAME}).encode()
    headers = {"Authorization": tokens.issue_token(user="agent")}
    if content_type:
        headers["Content-Type"] = content_type
    response = await call("POST", "/conversation-name", body=body, headers=headers)
    assert response["status"] == 200
    assert json.loads(response["body"]) == {f"ct-{content_type}": NAME}


async def test_body_without_content_length_is_read() -> None:
    """A body that arrives without Content-Length (chunked) is read, not taken for an empty one."""
    body = json.dumps({"gcp_agent_assist_user": "chunked-agent"}).encode()
    response = await call("POST", "/register", body=body, headers={"Authorization": "x"}, length=False)
    assert response["status"] == 200
    assert tokens.validate_token(json.loads(response["body"])["token"]).user == "chunked-agent"


async def test_success_answers_carry_no_drf_headers() -> None:
    """DRF adds Allow and Vary: Accept to every answer by default; the contract's answers carry neither."""
    response = await call("POST", "/register", headers={"Authorization": "x"})
    assert response["status"] == 200
    assert "allow" not in headers_of(response)
    assert "accept" not in headers_of(response).get("vary", "").lower()  # corsheaders' "Vary: origin" stays


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("POST", "/register", b"{}"),
     ("POST", "/conversation-name", json.dumps({"conversationIntegrationKey": "thread", "conversationName": NAME})
      .encode()),
     ("GET", "/conversation-name?conversationIntegrationKey=thread", b"")],
)
async def test_policies_start_no_thread(
    method: str, path: str, body: bytes, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Authentication, permissions and the Redis throttles run on the event loop (adrf alone would start a
    sync_to_async thread per request and block it on Redis)."""
    settings.REGISTER_RATE_LIMIT = (1000, 60)
    headers = {"Authorization": tokens.issue_token(user="agent") if "conversation" in path else "x"}
    assert (await call(method, path, body=body, headers=headers))["status"] == 200  # warm-up
    started: list[threading.Thread] = []
    original_start = threading.Thread.start

    def counting_start(thread: threading.Thread) -> None:
        started.append(thread)
        original_start(thread)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    for _ in range(3):
        assert (await call(method, path, body=body, headers=headers))["status"] == 200
    assert started == []
