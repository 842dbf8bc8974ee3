"""The WebSocket Origin check (connector/desktops/origin.py) against a real connector process.

Clients: python-socketio's ``AsyncClient`` (the Socket.IO desktop) and
aiohttp's WebSocket client for the plain ``/ws/`` protocol and for reading
the raw handshake status. Neither sends ``Origin`` unless told to, which is
how a non-browser client looks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import socketio
from channels.testing import WebsocketCommunicator

from aa_site.asgi import application
from testing import clients, processes

DESK_ORIGIN = "https://desk.example"
LOCAL_ORIGIN = "http://localhost:3000"
ALLOWED = f"{DESK_ORIGIN} {LOCAL_ORIGIN}"
SOCKETIO_HANDSHAKE = "/socket.io/?EIO=4&transport=websocket"
PATHS = [SOCKETIO_HANDSHAKE, "/ws/"]
CONVERSATION = "projects/test-project/conversations/origin-check"
HANDSHAKE_TIMEOUT = aiohttp.ClientTimeout(total=clients.CLIENT_TIMEOUT)


@pytest.fixture(scope="module")
def redis_address() -> Iterator[processes.RedisAddress]:
    """A Redis for the connectors of this module."""
    with processes.redis_server() as address:
        yield address


@pytest.fixture(scope="module")
def connector(redis_address: processes.RedisAddress) -> Iterator[processes.Server]:
    """A production-like connector whose desktops are served from DESK_ORIGIN and LOCAL_ORIGIN."""
    with processes.service_server(role="connector", redis=redis_address, CORS_ALLOWED_ORIGINS=ALLOWED) as server:
        yield server


@pytest.fixture
def token(settings: Any) -> str:
    """A desktop JWT the connector accepts."""
    return clients.server_token(settings, user="origin-tester")


async def handshake_status(server: processes.Server, path: str, headers: list[tuple[str, str]]) -> int:
    """101 when the WebSocket opens, else the HTTP status the server refused the handshake with."""
    async with aiohttp.ClientSession(timeout=HANDSHAKE_TIMEOUT) as session:
        try:
            async with session.ws_connect(f"ws://127.0.0.1:{server.port}{path}", headers=headers):
                return 101
        except aiohttp.WSServerHandshakeError as error:
            return error.status


@contextlib.asynccontextmanager
async def socketio_desktop(
    server: processes.Server, token: str, origin: str | None
) -> AsyncIterator[socketio.AsyncClient]:
    """A Socket.IO desktop connected over the websocket transport, sending ``Origin`` when given.

    The HTTP session is ours, so it is closed even when the connection is refused.
    """
    async with aiohttp.ClientSession() as session:
        client = socketio.AsyncClient(reconnection=False, http_session=session)
        await client.connect(
            server.http_url,
            transports=["websocket"],
            auth={"token": token},
            headers={"Origin": origin} if origin is not None else {},
            wait_timeout=clients.CLIENT_TIMEOUT,
        )
        try:
            yield client
        finally:
            await client.disconnect()


async def plain_ws_authenticates(server: processes.Server, token: str, origin: str | None) -> dict[str, Any]:
    """Open /ws/ (with ``Origin`` when given), authenticate, and return the server's answer."""
    async with aiohttp.ClientSession(timeout=HANDSHAKE_TIMEOUT) as session:
        async with session.ws_connect(f"ws://127.0.0.1:{server.port}/ws/", origin=origin) as socket:
            await socket.send_str(json.dumps({"type": "authenticate", "token": token, "id": 1}))
            message = await socket.receive(timeout=clients.CLIENT_TIMEOUT)
            return json.loads(message.data)


def refusal_lines(server: processes.Server, origin: str) -> list[str]:
    """The connector's log lines about refusing ``origin``."""
    return [line for line in server.log().splitlines() if "Refused a WebSocket handshake" in line and origin in line]


async def wait_for_refusal_lines(server: processes.Server, origin: str, count: int) -> list[str]:
    """The refusal lines once ``count`` of them are in the log (it is written by another process)."""
    await clients.wait_until(lambda: len(refusal_lines(server, origin)) >= count, what=f"log lines about {origin}")
    return refusal_lines(server, origin)


# --- allowed ----------------------------------------------------------------------------


async def test_socketio_desktop_from_an_allowed_origin_connects_and_joins(connector: processes.Server, token: str):
    """A Socket.IO handshake from a listed origin proceeds; the desktop joins as usual."""
    async with socketio_desktop(connector, token, DESK_ORIGIN) as client:
        acknowledgement = await client.call("join-conversation", CONVERSATION, timeout=clients.CLIENT_TIMEOUT)
    assert tuple(acknowledgement) == (True, CONVERSATION)


async def test_plain_websocket_from_an_allowed_origin_authenticates(connector: processes.Server, token: str):
    """A /ws/ handshake from a listed origin proceeds to the token check."""
    answer = await plain_ws_authenticates(connector, token, LOCAL_ORIGIN)
    assert answer == {"type": "authenticated", "user": "origin-tester", "id": 1}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("origin", [DESK_ORIGIN, "https://DESK.example", "https://desk.example:443", LOCAL_ORIGIN])
async def test_listed_origins_match_on_scheme_host_and_port(connector: processes.Server, path: str, origin: str):
    """Host case and an explicit default port do not matter; the origin is the same."""
    assert await handshake_status(connector, path, [("Origin", origin)]) == 101


# --- refused ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
async def test_other_origin_is_refused_with_403_and_one_log_line(connector: processes.Server, path: str):
    """An unlisted origin gets 403 at the handshake, and the log names it once."""
    origin = "https://evil-socketio.example" if path.startswith("/socket.io/") else "https://evil-ws.example"
    assert await handshake_status(connector, path, [("Origin", origin)]) == 403
    lines = await wait_for_refusal_lines(connector, origin, 1)
    await asyncio.sleep(0.2)  # any second line would have been written with the first
    assert len(refusal_lines(connector, origin)) == 1, lines
    assert " WARNING connector.desktops.origin " in lines[0]


async def test_socketio_desktop_from_another_origin_cannot_connect(connector: processes.Server, token: str):
    """The real Socket.IO client, with a valid token, is refused from an unlisted origin."""
    with pytest.raises(socketio.exceptions.ConnectionError):
        async with socketio_desktop(connector, token, "https://attacker.example"):
            pass


async def test_plain_websocket_from_another_origin_cannot_connect(connector: processes.Server, token: str):
    """The /ws/ client, with a valid token, is refused (403) before any frame."""
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await plain_ws_authenticates(connector, token, "https://attacker.example")
    assert refused.value.status == 403


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "origin",
    [
        "http://desk.example",  # another scheme
        "https://desk.example:8443",  # another port
        "https://sub.desk.example",  # a subdomain
        "https://desk.example.attacker.example",  # a suffix
        "https://localhost:3000",  # the local origin's host and port, another scheme
        "null",  # sandboxed frames and file:// pages
    ],
)
async def test_near_misses_are_refused(connector: processes.Server, path: str, origin: str):
    """Only the exact listed scheme, host and port pass."""
    assert await handshake_status(connector, path, [("Origin", origin)]) == 403


@pytest.mark.parametrize(
    "headers",
    [[("Origin", "http://[bad")], [("Origin", "https://desk.example:notaport")], [("Origin", "")],
     [("Origin", DESK_ORIGIN), ("Origin", "https://second.example")]],
)
async def test_malformed_or_repeated_origin_never_opens_a_websocket(
    connector: processes.Server, headers: list[tuple[str, str]]
):
    """The server's WebSocket layer answers these 400 before the application; never a 500."""
    assert await handshake_status(connector, "/ws/", headers) in (400, 403)
    assert "Traceback" not in connector.log()


@pytest.mark.parametrize(
    "origins",
    [[b"http://[bad"], [b"https://desk.example:notaport"], [b""], [DESK_ORIGIN.encode(), b"https://second.example"]],
)
async def test_application_refuses_malformed_or_repeated_origin_itself(
    settings: Any, caplog: pytest.LogCaptureFixture, origins: list[bytes]
):
    """Under an ASGI server that passes them on, the application refuses these with a log line, not an error."""
    settings.CORS_ALLOWED_ORIGINS, settings.CORS_ALLOW_ALL_ORIGINS = [DESK_ORIGIN], False
    communicator = WebsocketCommunicator(application, "/ws/", headers=[(b"origin", value) for value in origins])
    connected, _ = await communicator.connect(timeout=clients.CLIENT_TIMEOUT)
    assert not connected
    refusals = [record for record in caplog.records if record.name == "connector.desktops.origin"]
    assert len(refusals) == 1 and refusals[0].levelno == logging.WARNING


# --- no Origin --------------------------------------------------------------------------


async def test_socketio_client_without_origin_is_judged_by_its_token(connector: processes.Server, token: str):
    """A non-browser Socket.IO client connects with a valid token and is refused with a bad one."""
    async with socketio_desktop(connector, token, None) as client:
        assert client.connected
    with pytest.raises(socketio.exceptions.ConnectionError):
        async with socketio_desktop(connector, "not-a-token", None):
            pass


async def test_plain_websocket_without_origin_is_judged_by_its_token(connector: processes.Server, token: str):
    """A non-browser /ws/ client authenticates with a valid token and gets an error with a bad one."""
    assert (await plain_ws_authenticates(connector, token, None))["type"] == "authenticated"
    refused = await plain_ws_authenticates(connector, "not-a-token", None)
    assert (refused["type"], refused["code"]) == ("error", "unauthenticated")


# --- development mode -------------------------------------------------------------------


async def test_development_wildcard_accepts_any_origin(redis_address: processes.RedisAddress, token: str):
    """CORS_ALLOWED_ORIGINS=* (development mode only) lets every origin through, on both paths."""
    with processes.service_server(
        role="connector", redis=redis_address, DEVELOPMENT_MODE="true", CORS_ALLOWED_ORIGINS="*"
    ) as server:
        async with socketio_desktop(server, token, "https://anything.example") as client:
            assert client.connected
        answer = await plain_ws_authenticates(server, token, "null")
        assert answer["type"] == "authenticated"
