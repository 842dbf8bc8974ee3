"""SERVICE_ROLE, start-up checks and failure answers, seen from outside real server processes.

Each role serves only its own routes; a bad setting stops start-up with exit
code 2 naming the setting (no traceback); an interceptor whose Redis is gone
answers 503 so Pub/Sub retries, and acknowledges poison messages with 200.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import aiohttp
import httpx
import pytest

from connector import jwt_secret
from events.kinds import EventKind
from testing import clients, processes
from testing.clients import SocketIODesktop
from testing.processes import Server


@pytest.fixture(scope="module")
def interceptor(redis_server: processes.RedisAddress) -> Iterator[Server]:
    with processes.service_server(role="interceptor", redis=redis_server) as running:
        yield running


@pytest.fixture(scope="module")
def connector(redis_server: processes.RedisAddress) -> Iterator[Server]:
    with processes.service_server(role="connector", redis=redis_server) as running:
        yield running


@pytest.fixture(scope="module")
def interceptor_without_redis() -> Iterator[Server]:
    """An interceptor whose Redis address has nothing listening."""
    nothing_listening = processes.RedisAddress("127.0.0.1", processes.free_port())
    with processes.service_server(role="interceptor", redis=nothing_listening) as running:
        yield running


@pytest.fixture
def pushes() -> list[clients.Push]:
    return clients.valid_pushes(conversation_suffix=uuid.uuid4().hex[:8])


async def websocket_handshake_status(server: Server, path: str) -> int:
    """The HTTP status a WebSocket handshake to ``path`` gets (101 when accepted)."""
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(f"ws://127.0.0.1:{server.port}{path}"):
                return 101
        except aiohttp.WSServerHandshakeError as error:
            return error.status


def assert_clean_log(server: Server) -> None:
    """No traceback and no 500 in the process's log."""
    log = server.log()
    assert "Traceback" not in log, log
    assert '" 500 ' not in log, log


# --- interceptor role ---------------------------------------------------------------


async def test_interceptor_delivers_every_valid_push_with_204(interceptor, pushes):
    """The interceptor role serves the four push endpoints."""
    await clients.push_all(interceptor, pushes)


async def test_interceptor_has_no_connector_http_routes(interceptor):
    """/register, /register-app and /status belong to the connector: 404 on an interceptor."""
    async with httpx.AsyncClient(base_url=interceptor.http_url) as client:
        assert (await client.post("/register", headers={"Authorization": "x"})).status_code == 404
        assert (await client.post("/register-app", json={})).status_code == 404
        assert (await client.get("/status")).status_code == 404


async def test_interceptor_refuses_websocket_handshakes_without_a_traceback(interceptor):
    """/socket.io/ and /ws/ handshakes are refused (403), and the refusal is not logged as an error."""
    assert await websocket_handshake_status(interceptor, "/socket.io/?EIO=4&transport=websocket") == 403
    assert await websocket_handshake_status(interceptor, "/ws/") == 403
    assert_clean_log(interceptor)


async def test_interceptor_answers_503_with_retry_after_when_redis_is_gone(interceptor_without_redis, pushes):
    """With nothing listening at REDISHOST:REDISPORT every valid push is 503 + Retry-After, so Pub/Sub retries."""
    async with httpx.AsyncClient(timeout=clients.CLIENT_TIMEOUT) as client:
        for fixture in pushes:
            response = await clients.push(client, interceptor_without_redis, fixture)
            assert response.status_code == 503, (fixture.fixture, response.text)
            assert int(response.headers["Retry-After"]) > 0
    assert_clean_log(interceptor_without_redis)


async def test_interceptor_acknowledges_every_bad_fixture_with_200_on_every_endpoint(interceptor_without_redis):
    """Poison pushes are answered 200 ``discarded`` (acknowledged, never redelivered), each logged once, no 500."""
    bad = clients.bad_fixtures()
    assert len(bad) >= 7
    async with httpx.AsyncClient(base_url=interceptor_without_redis.http_url) as client:
        for event in EventKind:
            for path in bad:
                response = await client.post(f"/{event}", content=path.read_bytes())
                assert response.status_code == 200, (event, path.name, response.text)
                assert response.json()["status"] == "discarded", (event, path.name)
    await clients.wait_until(
        lambda: interceptor_without_redis.log().count("Discarding push") >= len(EventKind) * len(bad),
        what="one discard line per bad push",
    )
    assert interceptor_without_redis.log().count("Discarding push") == len(EventKind) * len(bad)
    assert_clean_log(interceptor_without_redis)


# --- connector role -----------------------------------------------------------------


async def test_connector_refuses_websocket_handshakes_on_unknown_paths_without_a_traceback(connector):
    """A WebSocket to a path the connector does not serve is refused (403), not a 500 with a traceback."""
    assert await websocket_handshake_status(connector, "/elsewhere") == 403
    assert_clean_log(connector)


async def test_connector_serves_status_and_socketio(connector, settings):
    """/status answers the contract's text and a Socket.IO client connects at /socket.io/."""
    async with httpx.AsyncClient(base_url=connector.http_url) as client:
        response = await client.get("/status")
    assert (response.status_code, response.text) == (200, "Hello, cross-origin-world!")
    desktop = SocketIODesktop()
    await desktop.connect(connector, clients.server_token(settings, user="agent"))
    try:
        assert desktop.client.connected
    finally:
        await desktop.disconnect()


async def test_connector_has_no_push_endpoints(connector, pushes):
    """The push endpoints belong to the interceptor: 404 on a connector, even for a valid push."""
    async with httpx.AsyncClient(timeout=clients.CLIENT_TIMEOUT) as client:
        for fixture in pushes:
            assert (await clients.push(client, connector, fixture)).status_code == 404, fixture.fixture


# --- start-up -----------------------------------------------------------------------

BAD_SETTINGS = {
    "REDISPORT": ({"REDISPORT": "abc"}, ()),
    "GCP_PROJECT_ID": ({}, ("GCP_PROJECT_ID",)),
    "JWT_SECRET_KEY": ({"JWT_SECRET_KEY_PATH": "/nonexistent/aa-backend/jwt_secret_key"}, ("JWT_SECRET_KEY",)),
    "AUTH_OPTION": ({"AUTH_OPTION": "Skip"}, ()),
}


def assert_refused_start(result, *names: str) -> None:
    """Exit code 2, every name on stderr, and no Python traceback anywhere."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "cannot start" in result.stderr
    for name in names:
        assert name in result.stderr, (name, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


@pytest.mark.parametrize("setting", BAD_SETTINGS)
def test_a_bad_setting_stops_start_up_with_exit_code_2_naming_it(redis_server, setting):
    """REDISPORT=abc, no GCP_PROJECT_ID, no JWT secret, AUTH_OPTION=Skip outside development: each is refused."""
    values, removed = BAD_SETTINGS[setting]
    result = processes.service_exit(role="all", redis=redis_server, without=removed, **values)
    assert_refused_start(result, setting)


def test_every_bad_setting_is_named_at_once(redis_server):
    """All bad settings together: one refused start names each of them."""
    values = {name: value for bad, _ in BAD_SETTINGS.values() for name, value in bad.items()}
    removed = tuple(name for _, names in BAD_SETTINGS.values() for name in names)
    result = processes.service_exit(role="all", redis=redis_server, without=removed, **values)
    assert_refused_start(result, *BAD_SETTINGS)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("JWT_SECRET_KEY", jwt_secret.DEVELOPMENT_SECRET),
        ("JWT_SECRET_KEY", "a" * 32),
        ("JWT_PREVIOUS_SECRET_KEY", "a" * 32),
    ],
    ids=["development_secret", "a_x32", "previous_a_x32"],
)
def test_a_weak_secret_stops_start_up_with_exit_code_2(redis_server, setting, value):
    """Outside development mode the public development secret or a predictable one (also rotated out) is refused,
    naming the setting and how to generate a good one, never showing the value."""
    result = processes.service_exit(role="connector", redis=redis_server, **{setting: value})
    assert_refused_start(result, setting, "secrets.token_urlsafe(48)")
    assert value not in result.stderr + result.stdout


@pytest.fixture(scope="module")
def development_process() -> Iterator[Server]:
    """DEVELOPMENT_MODE=true with no REDISHOST: one process, both roles."""
    with processes.service_server(role="all", redis=None, DEVELOPMENT_MODE="true") as running:
        yield running


def test_development_mode_without_redishost_says_it_keeps_events_in_process(development_process):
    """The start-up log says events reach only desktops on this process."""
    assert "keeping events in process" in development_process.log()


async def test_development_process_without_redis_delivers_to_its_own_desktops(development_process, settings, pushes):
    """The in-process layer still carries pushes to desktops of the same process."""
    desktop = SocketIODesktop()
    await desktop.connect(development_process, clients.server_token(settings, user="developer"))
    try:
        for conversation in {fixture.conversation for fixture in pushes}:
            await desktop.join(conversation)
        await clients.push_all(development_process, pushes)
        await clients.wait_until(lambda: len(desktop.events) >= len(pushes), what="every fixture event")
        assert sorted(payload["message_id"] for _, payload in desktop.events) == sorted(p.message_id for p in pushes)
    finally:
        await desktop.disconnect()
