"""No query string in any log line: a real server, every route family, answers 2xx, 4xx and 5xx, both log formats.

Query strings carry what must never be logged: ``conversationIntegrationKey`` (often a customer's phone
number) and tokens a client put in a URL (``?token=``, ``?access_token=``: refused, but still valid). Every
record of every logger goes through ``aa_site.log_format.QueryStringFilter`` on its way to a handler; before
it, Django's ``django.request`` WARNING for each 4xx carried the request (``<ASGIRequest: DELETE
'/conversation-name?conversationIntegrationKey=%2B15551234567'>``) as a JSON field.

One process of role ``all`` per server command and log format (``LOG_LEVEL=INFO``, ``ACCESS_LOG=all``), its
Dialogflow a fake on loopback; each route gets the secrets in its query, once under names that are refused
(401) and once under names the route ignores, so that the request also reaches the answers behind the token
check: 2xx, 4xx (404, 405, 429), and 5xx (Dialogflow answering 500 or gone, Redis stopped). Then the whole
output is searched for each secret, raw and percent-encoded.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import aiohttp
import httpx
import pytest
from django.core.handlers.asgi import ASGIRequest
from pythonjsonlogger.json import JsonFormatter

from aa_site import log_format
from interceptor import push_samples
from testing import clients, fake_dialogflow, processes

PHONE = "+15551234567"
JWT_SHAPED = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJsZWFrLXRlc3QifQ." + uuid.uuid4().hex
GOOGLE_SHAPED = "ya29.a0AfB_" + uuid.uuid4().hex
SECRETS = (PHONE, JWT_SHAPED, GOOGLE_SHAPED)
FIVE9_SECRET = "five9-trust-token-for-log-privacy-tests"
METRICS_TOKEN = "metrics-token-for-log-privacy-tests-0123456789"
PROXY_PREFIXES = ("/v2/projects/test-project/locations/global", "/v2beta1/projects/test-project/locations/global")
# Names a route refuses in a query (connector.http.api.authentication), and names it ignores.
REFUSED_QUERY = f"?token={JWT_SHAPED}&access_token={GOOGLE_SHAPED}&conversationIntegrationKey={quote(PHONE, safe='')}"
IGNORED_QUERY = f"?conversationIntegrationKey={quote(PHONE, safe='')}&state={JWT_SHAPED}&pageToken={GOOGLE_SHAPED}"
QUERIES = (REFUSED_QUERY, IGNORED_QUERY)


def secret_forms() -> set[str]:
    """Every way a secret can stand in a line: as sent, percent-encoded, form-encoded, and the phone's digits."""
    forms = {PHONE.lstrip("+")}
    for secret in SECRETS:
        forms |= {secret, quote(secret, safe=""), quote_plus(secret), secret.rsplit(".", 1)[-1]}
    return forms


def assert_no_secret(log: str) -> None:
    for form in secret_forms():
        assert form not in log, f"{form!r} in the log:\n{log}"


@pytest.fixture(scope="module")
def dialogflow_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[fake_dialogflow.FakeDialogflow, Path]]:
    with fake_dialogflow.serve() as fake:
        yield fake, fake.write_key_file(Path(tmp_path_factory.mktemp("adc")) / "key.json")


async def request_everything(server: processes.Server, desktop_token: str, fake: fake_dialogflow.FakeDialogflow,
                             stop_dialogflow: contextlib.ExitStack, redis: processes.RedisProcess) -> list[int]:
    """Every route family with the secrets in its query; Dialogflow, then Redis, taken away half-way."""
    statuses: list[int] = []
    url = server.http_url
    desktop = {"Authorization": desktop_token}
    push_body = push_samples.encode(push_samples.sample_push(
        push_samples.NEW_MESSAGE_EVENT, f"projects/{processes.TEST_PROJECT}/conversations/privacy"))
    name_body = json.dumps({"conversationIntegrationKey": PHONE,
                            "conversationName": f"projects/{processes.TEST_PROJECT}/conversations/privacy"})

    async with httpx.AsyncClient(timeout=clients.CLIENT_TIMEOUT) as client:
        async def send(method: str, path: str, **kwargs: Any) -> None:
            for query in QUERIES:
                response = await client.request(method, f"{url}{path}{query}", **kwargs)
                statuses.append(response.status_code)

        async def http_routes() -> None:
            for kind in push_samples.EVENT_KINDS:
                await send("POST", f"/{kind}", content=push_body, headers={"Content-Type": "application/json"})
            await send("POST", "/new-message-event", content=b"not json")  # poison: 200 discarded
            await send("GET", "/new-message-event")  # 405
            for _ in range(3):  # REGISTER_RATE_LIMIT=2/minute: 200s, 401s, then 429s
                await send("POST", "/register", headers={"Authorization": f"Bearer {FIVE9_SECRET}"})
            await send("POST", "/register-app", content=b"{}", headers={"Content-Type": "application/json"})
            await send("POST", "/conversation-name", content=name_body,
                       headers={**desktop, "Content-Type": "application/json"})
            for method in ("GET", "DELETE", "GET", "PUT"):
                await send(method, "/conversation-name", headers=desktop)
            await send("OPTIONS", "/conversation-name", headers={"Origin": "https://elsewhere.example",
                                                                 "Access-Control-Request-Method": "DELETE"})
            for path in ("/status", "/healthz", "/readyz", "/", "/admin/", "/admin/login/", "/nope",
                         "/v3/projects/x", "/static/nothing.js"):
                await send("GET", path)
            await send("GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
            await send("GET", "/metrics", headers={"Authorization": "Bearer wrong"})
            for path in ("/socket.io/", "/socket.io/?EIO=4&transport=polling"):
                response = await client.get(f"{url}{path}{IGNORED_QUERY.replace('?', '&' if '?' in path else '?')}")
                statuses.append(response.status_code)
            await send("POST", "/socket.io/", content=b"40")
            await send("GET", "/socket.io/", headers={"Origin": "https://elsewhere.example"})

        async def proxy(suffix: str) -> None:
            for prefix in PROXY_PREFIXES:
                await send("GET", f"{prefix}/conversations/privacy{suffix}", headers=desktop)
                await send("POST", f"{prefix}/conversations/privacy/participants/p:analyzeContent{suffix}",
                           content=b"{}", headers={**desktop, "Content-Type": "application/json"})

        async def websockets() -> None:
            ws_url = url.replace("http://", "ws://")
            async with aiohttp.ClientSession() as session:
                for path in ("/ws/", "/socket.io/?EIO=4&transport=websocket&x=1"):
                    for query in QUERIES:
                        full = f"{ws_url}{path}{query if '?' not in path else query.replace('?', '&')}"
                        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                            async with session.ws_connect(full) as socket:
                                await socket.receive(timeout=2)
                                await socket.close()
                        with contextlib.suppress(aiohttp.ClientError):  # refused: WSREJECT
                            async with session.ws_connect(full, headers={"Origin": "https://elsewhere.example"}):
                                pass

        await http_routes()
        await websockets()
        await proxy("")  # Dialogflow echoes: 200
        fake.canned = fake_dialogflow.google_error(500)
        await proxy("")  # relayed 500
        fake.canned = None
        stop_dialogflow.close()
        await proxy("")  # Dialogflow gone: 502
        redis.stop()
        await http_routes()  # Redis gone: 503s
        await websockets()
    return statuses


@pytest.mark.parametrize("server", processes.SERVERS)
@pytest.mark.parametrize("log_format_name", ["json", "text"])
async def test_no_secret_from_a_query_string_reaches_the_log(server: str, log_format_name: str, settings: Any,
                                                            tmp_path: Path) -> None:
    token = clients.server_token(settings, user="privacy@example.com")
    with contextlib.ExitStack() as dialogflow, processes.restartable_redis() as redis:
        fake = dialogflow.enter_context(fake_dialogflow.serve())
        key = fake.write_key_file(tmp_path / "key.json")
        with processes.service_server(
            role="all", redis=redis.address, server=server, LOG_FORMAT=log_format_name, LOG_LEVEL="INFO",
            ACCESS_LOG="all", AUTH_OPTION="Five9", FIVE9_TRUST_TOKEN=FIVE9_SECRET, REGISTER_RATE_LIMIT="2/minute",
            METRICS_TOKEN=METRICS_TOKEN, GOOGLE_APPLICATION_CREDENTIALS=str(key), DIALOGFLOW_API_ROOT=fake.url,
            DIALOGFLOW_CONNECT_TIMEOUT="1", DIALOGFLOW_TIMEOUT="5",
        ) as running:
            statuses = await request_everything(running, token, fake, dialogflow, redis)
            time.sleep(1.0)  # the access lines of the last requests, written after their answers
            log = running.log()
    classes = {status // 100 for status in statuses}
    assert {2, 4, 5} <= classes, sorted(set(statuses))
    assert {200, 204, 401, 404, 405, 429, 500, 502, 503} <= set(statuses), sorted(set(statuses))
    unescaped = log.replace('\\"', '"')  # JSON escapes the access lines' quotes
    assert '"DELETE /conversation-name" 401' in unescaped and '"POST /new-message-event" 503' in unescaped, log
    if log_format_name == "json":
        for line in log.splitlines():
            record = json.loads(line)
            assert {"severity", "message", "logger", "timestamp"} <= set(record), line
    assert_no_secret(log)


# --- the filter itself, on records no request makes -------------------------------------------------------


def filtered(record: logging.LogRecord, formatter: logging.Formatter) -> str:
    log_format.QueryStringFilter().filter(record)
    return formatter.format(record)


def record(name: str, msg: Any, *args: Any, exc_info: Any = None, **extra: Any) -> logging.LogRecord:
    made = logging.getLogger(name).makeRecord(name, logging.WARNING, __file__, 1, msg, args, exc_info, extra=extra)
    return made


@pytest.fixture(params=["json", "text"])
def formatter(request: pytest.FixtureRequest) -> logging.Formatter:
    """The formatter ``logging_config`` configures for each LOG_FORMAT."""
    config = log_format.logging_config(log_format=request.param, level="INFO", file="")
    options = dict(config["formatters"][request.param])
    if request.param == "text":
        return logging.Formatter(options["format"])
    options.pop("()")
    return JsonFormatter(**options)


def test_django_s_request_is_written_as_its_method_and_path(formatter: logging.Formatter) -> None:
    scope = {"type": "http", "method": "DELETE", "path": "/conversation-name", "headers": [],
             "query_string": f"conversationIntegrationKey={quote(PHONE, safe='')}".encode()}
    line = filtered(record("django.request", "%s: %s", "Unauthorized", "/conversation-name", status_code=401,
                           request=ASGIRequest(scope, io.BytesIO())), formatter)
    assert "Unauthorized: /conversation-name" in line and "15551234567" not in line
    if isinstance(formatter, JsonFormatter):
        written = json.loads(line)
        assert written["request"] == "DELETE /conversation-name" and written["status_code"] == 401


def test_messages_args_scopes_and_tracebacks_lose_their_queries(formatter: logging.Formatter) -> None:
    try:
        raise RuntimeError(f"Client error for url 'https://dialogflow.example/v2/x?access_token={GOOGLE_SHAPED}'")
    except RuntimeError:
        failure = sys.exc_info()
    scope = {"type": "websocket", "path": "/ws/", "query_string": f"token={JWT_SHAPED}".encode()}
    lines = [
        filtered(record("uvicorn.error", '%s - "WebSocket %s" [accepted]', "127.0.0.1:1", f"/ws/?token={JWT_SHAPED}"),
                 formatter),
        filtered(record("daphne.server", f"GET /socket.io/?EIO=4&token={JWT_SHAPED} failed"), formatter),
        filtered(record("asyncio", "Task failed", exc_info=failure), formatter),
        filtered(record("channels", "Scope %r", scope, scope=scope), formatter),
        filtered(record("connector", {"url": f"/v2/y?key={quote(PHONE)}", "count": 2}), formatter),
    ]
    for line in lines:
        assert_no_secret(line)
    lines = [json.loads(line)["message"] + json.loads(line).get("exc_info", "") if line.startswith("{") else line
             for line in lines]
    assert '"WebSocket /ws/" [accepted]' in lines[0] and "GET /socket.io/ failed" in lines[1]
    assert "RuntimeError: Client error for url 'https://dialogflow.example/v2/x'" in lines[2]


def test_text_without_a_path_and_query_is_left_as_it_is() -> None:
    for text in ("Is Redis up? It answered.", "retry?", "a ? b", "JWT signing secret from JWT_SECRET_KEY"):
        assert log_format.without_query(text) == text
    assert log_format.without_query('"GET /a?b=1" 200, then "GET /c?d" 404') == '"GET /a" 200, then "GET /c" 404'


# Run in a fresh interpreter with the service's own settings: the test process's loggers carry whatever other
# tests and libraries added to them, which says nothing of what a server configures.
_HANDLER_CHECK = """
import logging, django
django.setup()
from aa_site import log_format
import daphne.server, uvicorn.config, django.core.servers.basehttp, django.core.handlers.exception  # noqa: F401
loggers = [logging.getLogger(), *(l for l in logging.Logger.manager.loggerDict.values() if isinstance(l, logging.Logger))]
handlers = [h for l in loggers for h in l.handlers if not isinstance(h, logging.NullHandler)]
assert handlers, "no handler"
bare = [repr(h) for h in handlers if not any(isinstance(f, log_format.QueryStringFilter) for f in h.filters)]
assert not bare, bare
assert logging.getLogger("django.server").propagate
print("ok", len(handlers))
"""


def test_every_handler_of_every_logger_carries_the_filter() -> None:
    """Whatever logger writes (Django's runserver log included), its records reach only filtered handlers."""
    for log_file in ("", str(Path(tempfile.mkdtemp(prefix="aa-log-")) / "service.log")):
        environment = processes.server_environment(role="all", redis=None, LOGGING_FILE=log_file)
        run = subprocess.run([sys.executable, "-c", _HANDLER_CHECK], cwd=processes.REPOSITORY, env=environment,
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0 and run.stdout.startswith("ok"), run.stdout + run.stderr
