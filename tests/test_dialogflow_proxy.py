"""The Dialogflow proxy through the real ASGI application, against a fake Dialogflow on 127.0.0.1.

Google credentials are real Application Default Credentials: a service-account
key file made for each test (``GOOGLE_APPLICATION_CREDENTIALS``) whose
``token_uri`` is the fake's token endpoint, so google-auth's own refresh runs.
Each test has its own event loop, hence its own credential source and pool.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from channels.testing import HttpCommunicator

from aa_site.asgi import application
from connector import tokens
from testing import fake_dialogflow
from testing.clients import wait_until
from testing.dialogflow_fixtures import DESKTOP_ORIGIN
from testing.fake_dialogflow import JSON_CONTENT_TYPE, Canned, FakeDialogflow
from testing.fake_providers import refused_url

RESPONSE_TIMEOUT = 30.0
PREFIX = "/v2/projects/test-project/locations/global"
ANALYZE_CONTENT = f"{PREFIX}/conversations/c-1/participants/p-1:analyzeContent"
DIALOGFLOW_SCOPE = "https://www.googleapis.com/auth/dialogflow"

# (method, path, body): every route family the proxy exposes, in both API versions.
FORWARDED_CALLS = [
    ("GET", "/conversations/c-1", b""),
    ("GET", "/conversations/c-1/messages", b""),
    ("GET", "/conversations/c-1/participants/p-1", b""),
    ("GET", "/conversationProfiles/profile-1", b""),
    ("GET", "/conversationModels/model-1", b""),
    ("GET", "/generators/generator-1", b""),
    ("POST", "/conversations", b'{"conversationProfile": "projects/test-project/conversationProfiles/x"}'),
    ("POST", "/conversations/c-1/participants", b'{"role": "HUMAN_AGENT"}'),
    ("POST", "/conversations/c-1/participants/p-1:analyzeContent", b'{"textInput": {"text": "hello"}}'),
    ("POST", "/conversations/c-1/messages:batchCreate", b'{"requests": []}'),
    ("POST", "/conversations/c-1/participants/p-1/suggestions:suggestArticles", b"{}"),
    ("POST", "/conversations/c-1/suggestions:suggestConversationSummary", b"{}"),
    ("POST", "/suggestions:searchKnowledge", b'{"query": {"text": "refund"}}'),
    ("POST", "/statelessSuggestion:generate", b'{"generator": {}}'),
    ("PATCH", "/conversations/c-1/participants/p-1", b'{"role": "END_USER"}'),
    ("PATCH", "/answerRecords/record-1", b'{"answerFeedback": {"clicked": true}}'),
]


def desktop_token() -> str:
    """A valid desktop JWT for this service's project."""
    return tokens.issue_token(user="agent@example.com")


async def call(
    method: str, path: str, *, body: bytes = b"", headers: dict[str, str] | None = None, token: str | None = "valid"
) -> dict[str, Any]:
    """One request to the real ``application``, with a desktop JWT unless ``token`` is None."""
    all_headers = dict(headers or {})
    if token is not None:
        all_headers.setdefault("Authorization", desktop_token() if token == "valid" else token)
    raw_headers = [(key.lower().encode(), value.encode()) for key, value in all_headers.items()]
    if body:
        raw_headers.append((b"content-length", str(len(body)).encode()))
    communicator = HttpCommunicator(application, method, path, body=body, headers=raw_headers)
    return await communicator.get_response(timeout=RESPONSE_TIMEOUT)


def header(response: dict[str, Any], name: str) -> str | None:
    """The value of response header ``name`` (case-insensitive), or ``None``."""
    values = [value.decode("latin-1") for key, value in response["headers"] if key.decode().lower() == name.lower()]
    return ", ".join(values) if values else None


def message(response: dict[str, Any]) -> str:
    """The ``message`` of one of our own JSON error answers."""
    assert (header(response, "Content-Type") or "").startswith("application/json")
    body = json.loads(response["body"])
    assert set(body) == {"message"} and body["message"], body
    return body["message"]


@pytest.mark.parametrize("version", ["v2", "v2beta1"])
@pytest.mark.parametrize(("method", "path", "body"), FORWARDED_CALLS, ids=[f"{m} {p}" for m, p, _ in FORWARDED_CALLS])
async def test_every_route_family_is_forwarded_unchanged(
    dialogflow: FakeDialogflow, version: str, method: str, path: str, body: bytes
) -> None:
    """Each call of the table reaches Dialogflow with the same method, path and body; its answer comes back as sent."""
    full_path = f"/{version}/projects/test-project/locations/global{path}"
    response = await call(method, full_path, body=body, headers={"Content-Type": "application/json"})
    assert response["status"] == 200, response["body"]
    [received] = dialogflow.received
    assert (received.method, received.path, received.body) == (method, full_path, body)
    assert response["body"] == dialogflow.sent_bodies[-1]
    assert header(response, "Content-Type") == JSON_CONTENT_TYPE


async def test_query_string_is_forwarded_exactly(dialogflow: FakeDialogflow) -> None:
    """The query string reaches Dialogflow byte for byte, percent-encoding included."""
    query = "filter=create_time%20%3E%20%222026-01-01T00:00:00Z%22&pageSize=5&pageToken=a%2Fb%2B%3D"
    response = await call("GET", f"{PREFIX}/conversations/c-1/messages?{query}")
    assert response["status"] == 200
    assert dialogflow.received[0].raw_query == query


async def test_regional_location_is_kept_in_the_forwarded_path(dialogflow: FakeDialogflow) -> None:
    """A regional location is forwarded in the path as it was (the host choice is tested in the route tests)."""
    path = "/v2beta1/projects/test-project/locations/europe-west2/conversations/c-1"
    assert (await call("GET", path))["status"] == 200
    assert dialogflow.received[0].path == path


async def test_complete_forwards_an_empty_body(dialogflow: FakeDialogflow) -> None:
    """conversations.complete sends no body: Dialogflow gets an empty POST with Content-Length 0 and no content type."""
    response = await call("POST", f"{PREFIX}/conversations/c-1:complete")
    assert response["status"] == 200
    [received] = dialogflow.received
    assert received.body == b""
    assert received.headers.get("content-length") == "0"
    assert "content-type" not in received.headers


async def test_body_without_content_type_is_sent_as_json(dialogflow: FakeDialogflow) -> None:
    """A desktop that posts JSON without saying so still reaches Dialogflow as application/json, body unchanged."""
    body = b'{"textInput": {"text": "hi"}}'
    assert (await call("POST", ANALYZE_CONTENT, body=body))["status"] == 200
    assert dialogflow.received[0].headers["content-type"] == "application/json"
    assert dialogflow.received[0].body == body


async def test_large_request_body_is_forwarded_byte_for_byte(dialogflow: FakeDialogflow) -> None:
    """A 5 MB analyzeContent (above Django's 2.5 MB form limit) reaches Dialogflow intact."""
    audio = hashlib.sha256(b"seed").hexdigest() * (5 * 1024 * 1024 // 64)
    body = json.dumps({"audioInput": {"audio": audio}}).encode()
    response = await call(
        "POST", f"{PREFIX}/conversations/c-1/participants/p-1:analyzeContent", body=body,
        headers={"Content-Type": "application/json"},
    )
    assert response["status"] == 200
    assert hashlib.sha256(dialogflow.received[0].body).hexdigest() == hashlib.sha256(body).hexdigest()


async def test_large_response_body_is_returned_byte_for_byte(dialogflow: FakeDialogflow) -> None:
    """A 3 MB answer comes back to the desktop intact."""
    answer = json.dumps({"messages": [{"content": "x" * 1000, "index": i} for i in range(3000)]}).encode()
    dialogflow.canned = Canned(status=200, body=answer)
    response = await call("GET", f"{PREFIX}/conversations/c-1/messages")
    assert response["status"] == 200
    assert response["body"] == answer


async def test_body_over_the_limit_is_refused_with_413(dialogflow: FakeDialogflow, settings: Any) -> None:
    """A body above DIALOGFLOW_MAX_REQUEST_BYTES is 413 and never reaches Dialogflow."""
    settings.DIALOGFLOW_MAX_REQUEST_BYTES = 2048
    response = await call("POST", f"{PREFIX}/conversations/c-1/participants/p-1:analyzeContent", body=b"{" * 2049)
    assert response["status"] == 413
    assert "2048" in message(response)
    assert dialogflow.received == []


async def test_body_at_the_limit_is_forwarded(dialogflow: FakeDialogflow, settings: Any) -> None:
    """A body of exactly DIALOGFLOW_MAX_REQUEST_BYTES is still forwarded."""
    settings.DIALOGFLOW_MAX_REQUEST_BYTES = 2048
    body = b"x" * 2048
    assert (await call("POST", ANALYZE_CONTENT, body=body))["status"] == 200
    assert dialogflow.received[0].body == body


async def test_gzip_answer_is_returned_raw_with_its_content_encoding(dialogflow: FakeDialogflow) -> None:
    """A gzip answer reaches the desktop as the very bytes Dialogflow sent, labelled Content-Encoding: gzip."""
    dialogflow.gzip_answers = True
    response = await call("GET", f"{PREFIX}/conversations/c-1", headers={"Accept-Encoding": "gzip, deflate, br"})
    assert response["status"] == 200
    assert dialogflow.received[0].headers["accept-encoding"] == "gzip, deflate, br"
    assert header(response, "Content-Encoding") == "gzip"
    assert response["body"] == dialogflow.sent_bodies[-1]
    assert json.loads(gzip.decompress(response["body"]))["path"] == f"{PREFIX}/conversations/c-1"
    assert header(response, "Content-Length") in (None, str(len(response["body"])))


async def test_desktop_that_accepts_no_encoding_gets_identity(dialogflow: FakeDialogflow) -> None:
    """Without Accept-Encoding from the desktop, Dialogflow is asked for identity, and the answer is plain JSON."""
    dialogflow.gzip_answers = True
    response = await call("GET", f"{PREFIX}/conversations/c-1")
    assert response["status"] == 200
    assert dialogflow.received[0].headers["accept-encoding"] == "identity"
    assert header(response, "Content-Encoding") is None
    assert json.loads(response["body"])["method"] == "GET"


@pytest.mark.parametrize("status", [400, 403, 404, 429, 500, 503])
async def test_dialogflow_errors_are_passed_through_unchanged(dialogflow: FakeDialogflow, status: int) -> None:
    """Dialogflow's own error answers keep their status, body bytes, content type and Retry-After."""
    error = fake_dialogflow.google_error(status, "Dialogflow says no")
    dialogflow.canned = Canned(status=status, body=error.body, headers={"Retry-After": "7"})
    response = await call("POST", f"{PREFIX}/conversations/c-1/participants/p-1:analyzeContent", body=b"{}")
    assert response["status"] == status
    assert response["body"] == error.body
    assert header(response, "Content-Type") == JSON_CONTENT_TYPE
    assert header(response, "Retry-After") == "7"


async def test_non_json_error_from_google_front_end_is_passed_through(dialogflow: FakeDialogflow) -> None:
    """An HTML error page (as Google's front end sends for some failures) keeps its status, bytes and type."""
    page = b"<!DOCTYPE html><html><body><p>Error 413 (Request Entity Too Large)</p></body></html>"
    dialogflow.canned = Canned(status=413, body=page, content_type="text/html; charset=UTF-8")
    response = await call("GET", f"{PREFIX}/conversations/c-1")
    assert (response["status"], response["body"]) == (413, page)
    assert header(response, "Content-Type") == "text/html; charset=UTF-8"


async def test_upstream_timeout_is_504(dialogflow: FakeDialogflow, settings: Any) -> None:
    """Dialogflow slower than DIALOGFLOW_TIMEOUT: 504 with a JSON message."""
    settings.DIALOGFLOW_TIMEOUT = 0.5
    dialogflow.delay_seconds = 10.0
    response = await call("GET", f"{PREFIX}/conversations/c-1")
    assert response["status"] == 504
    assert "in time" in message(response)


async def test_answer_trickling_past_the_deadline_is_504(dialogflow: FakeDialogflow, settings: Any) -> None:
    """An answer that starts at once but trickles in for longer than DIALOGFLOW_TIMEOUT is 504 too."""
    settings.DIALOGFLOW_TIMEOUT = 1.0
    dialogflow.trickle_seconds = 10.0
    response = await call("GET", f"{PREFIX}/conversations/c-1")
    assert response["status"] == 504
    assert "in time" in message(response)


async def test_unreachable_dialogflow_is_502(dialogflow: FakeDialogflow, settings: Any) -> None:
    """Nothing listening at the endpoint: 502 with a JSON message."""
    settings.DIALOGFLOW_API_ROOT = refused_url()
    response = await call("GET", f"{PREFIX}/conversations/c-1")
    assert response["status"] == 502
    assert "could not be reached" in message(response)


async def test_missing_credentials_are_503(dialogflow: FakeDialogflow, monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    """GOOGLE_APPLICATION_CREDENTIALS naming no file: 503, and Dialogflow is never called."""
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    response = await call("GET", f"{PREFIX}/conversations/c-1")
    assert response["status"] == 503
    assert "credentials" in message(response)
    assert dialogflow.received == []


async def test_refused_token_refresh_is_503(dialogflow: FakeDialogflow) -> None:
    """The token endpoint refusing the service account: 503, and Dialogflow is never called."""
    dialogflow.token_status = 400
    response = await call("GET", f"{PREFIX}/conversations/c-1")
    assert response["status"] == 503
    assert "credentials" in message(response)
    assert dialogflow.received == []


async def test_dialogflow_gets_the_service_token_not_the_desktop_token(dialogflow: FakeDialogflow) -> None:
    """Dialogflow sees only the service's Google token; the desktop JWT, cookies and origin never leave the backend."""
    jwt = desktop_token()
    response = await call(
        "POST", f"{PREFIX}/conversations/c-1/participants/p-1:analyzeContent", body=b"{}",
        headers={"Authorization": f"Bearer {jwt}", "Cookie": "session=secret", "Origin": DESKTOP_ORIGIN,
                 "Content-Type": "application/json", "Accept-Language": "de-DE"},
    )
    assert response["status"] == 200
    headers = dialogflow.received[0].headers
    assert headers["authorization"] == f"Bearer {dialogflow.issued_tokens[0]}"
    assert not any(jwt in value for value in headers.values())
    assert "cookie" not in headers and "origin" not in headers
    assert headers["content-type"] == "application/json" and headers["accept-language"] == "de-DE"


async def test_hop_by_hop_and_client_only_headers_are_not_forwarded(dialogflow: FakeDialogflow) -> None:
    """Connection-level and proxy headers from the desktop stop at the backend."""
    sent = {"Connection": "keep-alive, X-Private", "Keep-Alive": "timeout=99", "TE": "trailers", "Trailer": "X-T",
            "Upgrade": "h2c", "Proxy-Authorization": "Basic cHJveHk6c2VjcmV0", "X-Private": "1",
            "X-Forwarded-For": "203.0.113.9", "X-Goog-User-Project": "someone-elses-project"}
    assert (await call("GET", f"{PREFIX}/conversations/c-1", headers=sent))["status"] == 200
    received = dialogflow.received[0].headers
    for name in ("keep-alive", "te", "trailer", "upgrade", "proxy-authorization", "x-private", "x-forwarded-for",
                 "x-goog-user-project"):
        assert name not in received, name
    assert "x-private" not in received.get("connection", "").lower()


@pytest.mark.parametrize("name", ["Content-Type", "Accept", "Accept-Language", "Accept-Encoding"])
async def test_forwarded_header_outside_ascii_is_400_and_not_sent(dialogflow: FakeDialogflow, name: str) -> None:
    """A header the proxy would forward but that is not ASCII cannot go on: 400 naming it, Dialogflow not called."""
    response = await call("POST", ANALYZE_CONTENT, body=b"{}", headers={name: "text/plain; q=caf\u00e9"})
    assert response["status"] == 400
    assert name.lower() in message(response).lower()
    assert dialogflow.received == []


async def test_only_body_describing_headers_come_back(dialogflow: FakeDialogflow) -> None:
    """Set-Cookie, Alt-Svc, Google's CORS and hop-by-hop headers stay behind; Cache-Control and Vary come through."""
    dialogflow.canned = Canned(status=200, body=b"{}", headers={
        "Set-Cookie": "NID=1", "Alt-Svc": 'h3=":443"', "Access-Control-Allow-Origin": "*", "X-Google-Thing": "1",
        "Cache-Control": "private", "Vary": "Origin, X-Origin, Referer", "Keep-Alive": "timeout=5",
    })
    response = await call("GET", f"{PREFIX}/conversations/c-1")
    assert response["status"] == 200
    for name in ("Set-Cookie", "Alt-Svc", "Access-Control-Allow-Origin", "X-Google-Thing", "Keep-Alive"):
        assert header(response, name) is None, name
    assert header(response, "Cache-Control") == "private"
    assert "X-Origin" in (header(response, "Vary") or "")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/projects/test-project/locations/global/answerRecords"),
        ("GET", "/v2/projects/test-project/locations/global/agents/agent-1"),
        ("GET", "/v2beta1/projects/test-project/locations/global/knowledgeBases/kb-1"),
        ("GET", "/v2/projects/test-project/conversations/c-1"),
        ("GET", "/v2/projects/test-project/locations/global/conversations/c-1/../../../../other-project/x"),
        ("GET", "/v2/projects/test-project/locations/global/conversations/c-1/%2e%2e/%2e%2e/agents/a"),
        ("GET", "/v2/projects/test-project/locations/global/conversations/"),
        ("GET", "/v2/projects/test-project/locations/evil.example.com%23/conversations/c-1"),
        ("POST", "/v2/projects/test-project/locations/global/suggestions:searchKnowledge/extra"),
        ("GET", "/v2/"),
    ],
)
async def test_calls_outside_the_route_table_are_404(dialogflow: FakeDialogflow, method: str, path: str) -> None:
    """Anything not in the contract's table is 404 and never reaches Dialogflow."""
    response = await call(method, path)
    assert response["status"] == 404
    message(response)
    assert dialogflow.received == []


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/conversations/c-1", "GET, POST, PATCH"),
        ("PUT", "/answerRecords/record-1", "PATCH"),
        ("GET", "/suggestions:searchKnowledge", "POST"),
        ("POST", "/generators/generator-1", "GET"),
        ("HEAD", "/conversationProfiles/profile-1", "GET"),
    ],
)
async def test_known_path_with_another_method_is_405(
    dialogflow: FakeDialogflow, method: str, path: str, allow: str
) -> None:
    """A path of the table asked with a method it does not take is 405 with Allow, and never reaches Dialogflow."""
    response = await call(method, f"{PREFIX}{path}")
    assert response["status"] == 405
    assert header(response, "Allow") == allow
    assert dialogflow.received == []


async def test_conversations_list_is_404(dialogflow: FakeDialogflow) -> None:
    """GET .../conversations (conversations.list) is not exposed: 404, and Dialogflow is never called."""
    response = await call("GET", f"{PREFIX}/conversations")
    assert response["status"] == 404
    assert dialogflow.received == []


async def test_project_outside_the_allow_list_is_403(dialogflow: FakeDialogflow) -> None:
    """By default only GCP_PROJECT_ID is served: another project is 403 and never reaches Dialogflow."""
    response = await call("GET", "/v2/projects/other-project/locations/global/conversations/c-1")
    assert response["status"] == 403
    assert "other-project" in message(response)
    assert dialogflow.received == []


async def test_allow_list_setting_replaces_the_default(dialogflow: FakeDialogflow, settings: Any) -> None:
    """DIALOGFLOW_ALLOWED_PROJECTS admits exactly the projects it lists."""
    settings.DIALOGFLOW_ALLOWED_PROJECTS = ["second-project", "third-project"]
    assert (await call("GET", "/v2/projects/third-project/locations/global/conversations/c-1"))["status"] == 200
    assert (await call("GET", f"{PREFIX}/conversations/c-1"))["status"] == 403
    assert [r.path for r in dialogflow.received] == ["/v2/projects/third-project/locations/global/conversations/c-1"]


@pytest.mark.parametrize(
    ("authorization", "expected"),
    [(None, "Token is missing."), ("not-a-jwt", None), ("Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl", None)],
    ids=["missing", "garbage", "bad-signature"],
)
async def test_missing_or_bad_jwt_is_401(dialogflow: FakeDialogflow, authorization: str | None,
                                         expected: str | None) -> None:
    """Without a valid desktop JWT the proxy answers 401 and calls nobody (not even the token endpoint)."""
    response = await call("GET", f"{PREFIX}/conversations/c-1", token=authorization)
    assert response["status"] == 401
    text = message(response)
    if expected is not None:
        assert text == expected
    assert dialogflow.received == [] and dialogflow.token_requests == 0


@pytest.mark.parametrize("parameter", ["token", "access_token", "jwt"])
async def test_token_in_url_is_refused(dialogflow: FakeDialogflow, parameter: str) -> None:
    """A token in the query string is refused even alongside a valid Authorization header."""
    response = await call("GET", f"{PREFIX}/conversations/c-1?{parameter}={desktop_token()}")
    assert response["status"] == 401
    assert "URL" in message(response)
    assert dialogflow.received == []


async def test_token_is_requested_with_the_dialogflow_scope(dialogflow: FakeDialogflow) -> None:
    """The service account's signed assertion asks for the Dialogflow scope, as the key's client."""
    assert (await call("GET", f"{PREFIX}/conversations/c-1"))["status"] == 200
    [claims] = dialogflow.token_claims
    assert claims["scope"] == DIALOGFLOW_SCOPE
    assert claims["iss"] == fake_dialogflow.CLIENT_EMAIL


async def test_a_fresh_token_is_reused(dialogflow: FakeDialogflow) -> None:
    """An hour-long token serves many calls: one token request for three proxied calls."""
    for _ in range(3):
        assert (await call("GET", f"{PREFIX}/conversations/c-1"))["status"] == 200
    assert dialogflow.token_requests == 1
    assert {r.headers["authorization"] for r in dialogflow.received} == {"Bearer ya29.fake-1"}


async def test_token_is_refreshed_before_it_expires(dialogflow: FakeDialogflow) -> None:
    """A token within minutes of expiry is replaced before the next call, not used until Google refuses it."""
    dialogflow.token_expires_in = 120  # valid for two more minutes: inside the refresh margin
    assert (await call("GET", f"{PREFIX}/conversations/c-1"))["status"] == 200
    assert (await call("GET", f"{PREFIX}/conversations/c-2"))["status"] == 200
    assert dialogflow.token_requests == 2
    assert [r.headers["authorization"] for r in dialogflow.received] == ["Bearer ya29.fake-1", "Bearer ya29.fake-2"]


async def test_concurrent_calls_share_one_token_refresh(dialogflow: FakeDialogflow) -> None:
    """Twenty calls arriving while the token is being fetched wait for that one fetch; none starts its own."""
    dialogflow.token_gate = threading.Event()
    calls = [asyncio.create_task(call("GET", f"{PREFIX}/conversations/c-{i}")) for i in range(20)]
    await wait_until(lambda: dialogflow.token_requests >= 1, what="the first token request")
    # Give calls that would (wrongly) start their own refresh the time to reach the token endpoint.
    await asyncio.sleep(1.0)
    requests_while_held = dialogflow.token_requests
    dialogflow.token_gate.set()
    responses = await asyncio.gather(*calls)
    assert requests_while_held == 1
    assert [r["status"] for r in responses] == [200] * 20
    assert dialogflow.token_requests == 1
    assert {r.headers["authorization"] for r in dialogflow.received} == {"Bearer ya29.fake-1"}


async def test_token_refresh_does_not_block_the_event_loop(dialogflow: FakeDialogflow) -> None:
    """While the token endpoint is still answering, the same event loop serves other requests."""
    dialogflow.token_gate = threading.Event()
    proxied = asyncio.create_task(call("GET", f"{PREFIX}/conversations/c-1"))
    await wait_until(lambda: dialogflow.token_requests >= 1, what="the token request")
    status = await call("GET", "/status", token=None)
    answered_before_status = dialogflow.token_answers
    dialogflow.token_gate.set()
    assert status["status"] == 200
    assert answered_before_status == 0
    assert (await proxied)["status"] == 200


async def test_concurrent_calls_are_in_flight_together(dialogflow: FakeDialogflow) -> None:
    """Ten proxied calls are all waiting on Dialogflow at once: no call waits for another to finish."""
    dialogflow.hold_until_in_flight = 10
    responses = await asyncio.gather(*(call("GET", f"{PREFIX}/conversations/c-{i}") for i in range(10)))
    assert [r["status"] for r in responses] == [200] * 10
    assert dialogflow.max_in_flight == 10


async def test_cors_preflight_from_an_allowed_origin_is_granted(dialogflow: FakeDialogflow) -> None:
    """A desktop origin in CORS_ALLOWED_ORIGINS may send Authorization and Content-Type with PATCH; no JWT needed."""
    response = await call(
        "OPTIONS", f"{PREFIX}/answerRecords/record-1", token=None,
        headers={"Origin": DESKTOP_ORIGIN, "Access-Control-Request-Method": "PATCH",
                 "Access-Control-Request-Headers": "authorization, content-type"},
    )
    assert response["status"] == 200
    assert header(response, "Access-Control-Allow-Origin") == DESKTOP_ORIGIN
    allowed_headers = {h.strip() for h in (header(response, "Access-Control-Allow-Headers") or "").split(",")}
    assert {"authorization", "content-type"} <= allowed_headers
    assert "PATCH" in (header(response, "Access-Control-Allow-Methods") or "")
    assert dialogflow.received == []


async def test_cors_preflight_from_another_origin_gets_no_grant(dialogflow: FakeDialogflow) -> None:
    """An origin not listed gets no Access-Control-Allow-* headers, so the browser blocks the call."""
    response = await call(
        "OPTIONS", f"{PREFIX}/conversations/c-1", token=None,
        headers={"Origin": "https://attacker.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization"},
    )
    assert header(response, "Access-Control-Allow-Origin") is None
    assert header(response, "Access-Control-Allow-Headers") is None
    assert dialogflow.received == []


async def test_proxied_answer_carries_our_cors_grant_not_googles(dialogflow: FakeDialogflow) -> None:
    """The answer to an allowed origin names that origin, never Dialogflow's own CORS header."""
    dialogflow.canned = Canned(status=200, body=b"{}", headers={"Access-Control-Allow-Origin": "*"})
    response = await call("GET", f"{PREFIX}/conversations/c-1", headers={"Origin": DESKTOP_ORIGIN})
    assert response["status"] == 200
    assert header(response, "Access-Control-Allow-Origin") == DESKTOP_ORIGIN
