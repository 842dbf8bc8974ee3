"""Socket.IO 5 edge cases on a real server process, over both transports, raw and through stock clients.

What a client may send at the edges of the protocol: a CONNECT to another namespace, binary events and
acknowledgements, acknowledgement ids at and past 2^31 - 1, event names that are not strings, an empty
event array, an ACK for an id the server never sent. Each goes raw over a WebSocket (aiohttp) and in a
long-polling POST (httpx), the two paths into the Socket.IO layer; what a stock client can send also goes
through the npm socket.io-client and python-socketio on both transports. The reference for each answer is
the JavaScript server (socket.io's client.ts and socket.ts, socket.io-parser's decoder); docs/desktops.md,
"Packets at the edges of the protocol", says where this server differs and why. The server's log must hold no traceback and
no line repeating what a client sent.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator

import aiohttp
import httpx
import pytest
import socketio

from connector.desktops.close_codes import PROTOCOL_ERROR
from testing import clients, processes
from testing.clients import CLIENT_TIMEOUT, SocketIODesktop
from testing.engineio_polling import connected_session, session_url

# The default heartbeat: no ping comes during a test, and a poll with nothing to answer would wait 25 s.
PING_MS = (25000, 20000)
# The acknowledgement id of the join each exchange ends with: every answer to what came before it precedes it.
MARKER_ID = 999
TRANSPORTS = ["websocket", "polling"]
# Longer than anything the server logs of its own; the inputs below are longer still.
MAX_LOG_LINE = 400
LONG_NAME = "x" * 64 + "y" * 10_000


@pytest.fixture(scope="module")
def server(redis_server: processes.RedisAddress) -> Iterator[processes.Server]:
    with processes.service_server(role="connector", redis=redis_server) as running:
        yield running


@pytest.fixture
def token(settings) -> str:
    return clients.server_token(settings, user="edge")


@pytest.fixture(autouse=True)
def clean_log(server):
    """No traceback, and no log line long enough to repeat what a client sent, whatever the test sent."""
    yield
    log = server.log()
    assert "Traceback" not in log and " ERROR " not in log, log[-4000:]
    assert max(len(line) for line in log.splitlines()) < MAX_LOG_LINE


def conversation() -> str:
    return f"projects/{processes.TEST_PROJECT}/conversations/edge-{uuid.uuid4().hex[:8]}"


class RawSession:
    """One Engine.IO session connected to ``/``, spoken to in raw frames over ``transport``."""

    def __init__(self, server: processes.Server, token: str, transport: str) -> None:
        self.server, self.token, self.transport = server, token, transport
        self.name = conversation()

    async def __aenter__(self) -> RawSession:
        self.http = httpx.AsyncClient(timeout=CLIENT_TIMEOUT)
        self.aiohttp = aiohttp.ClientSession()
        if self.transport == "polling":
            self.sid = await connected_session(self.http, self.server.http_url, self.token, ping_ms=PING_MS)
        else:
            url = f"ws://127.0.0.1:{self.server.port}/socket.io/?EIO=4&transport=websocket"
            self.socket = await self.aiohttp.ws_connect(url)
            assert (await self.socket.receive_str(timeout=CLIENT_TIMEOUT)).startswith("0{")
            await self.socket.send_str("40" + json.dumps({"token": self.token}))
            assert (await self.socket.receive_str(timeout=CLIENT_TIMEOUT)).startswith("40{")
        return self

    async def __aexit__(self, *exc_info) -> None:
        if self.transport == "websocket":
            await self.socket.close()
        await self.aiohttp.close()
        await self.http.aclose()

    async def answers(self, frame: str) -> list[str]:
        """Send ``frame`` then a join; the frames the server answered ``frame`` with (the join's ack follows)."""
        marker = f'42{MARKER_ID}["join-conversation","{self.name}"]'
        expected_ack = f'43{MARKER_ID}[true,"{self.name}"]'
        received: list[str] = []
        if self.transport == "polling":
            url = session_url(self.server.http_url, self.sid)
            assert (await self.http.post(url, content=f"{frame}\x1e{marker}".encode())).text == "ok"
            while expected_ack not in received:
                answer = await self.http.get(url)
                assert answer.status_code == 200, answer.text
                received += answer.text.split("\x1e")
        else:
            await self.socket.send_str(frame)
            await self.socket.send_str(marker)
            while expected_ack not in received:
                received.append(await self.socket.receive_str(timeout=CLIENT_TIMEOUT))
        assert received[-1] == expected_ack, received
        return received[:-1]

    async def refused(self, frame: str) -> str | None:
        """Send ``frame``, which must end the session; the WebSocket's close reason (None over long-polling)."""
        if self.transport == "polling":
            url = session_url(self.server.http_url, self.sid)
            # The POST is fine at the Engine.IO level, as the JavaScript server answers it; the session is not.
            assert (await self.http.post(url, content=frame.encode())).text == "ok"
            later = await self.http.get(url)
            # Over: its next poll answers the CLOSE packet, or (its keys gone) that the session is unknown.
            assert later.text == "1" or (later.status_code, later.json()["code"]) == (400, 1), later.text
            return None
        await self.socket.send_str(frame)
        while True:
            message = await self.socket.receive(timeout=CLIENT_TIMEOUT)
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                assert self.socket.close_code == PROTOCOL_ERROR
                return message.extra


# --- what is answered ------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("frame", "answers"),
    [
        # The JavaScript server's answer to a namespace it does not serve (client.ts, connect).
        pytest.param('40/admin,{"token":"t"}', ['44/admin,{"message":"Invalid namespace"}'], id="CONNECT to /admin"),
        pytest.param("40/" + "n" * 63 + ",{}", ["44/" + "n" * 63 + ',{"message":"Invalid namespace"}'],
                     id="CONNECT to a namespace of 64 characters"),
        pytest.param("42" + str(2**31 - 1) + '["x"]', ["43" + str(2**31 - 1) + "[false,\"unknown event 'x'\"]"],
                     id="the largest ack id"),
        pytest.param("427" + json.dumps([LONG_NAME]), ["437[false,\"unknown event '" + "x" * 64 + "'\"]"],
                     id="a long unknown event name"),
        pytest.param("427[42]", ['437[false,"unknown event 42"]'], id="an event named by a number"),
        pytest.param('431["x"]', [], id="an ACK for an id never sent"),
        pytest.param("42", [], id="an EVENT without a payload"),
    ],
)
async def test_edge_packets_are_answered_as_documented(server, token, transport, frame, answers) -> None:
    async with RawSession(server, token, transport) as session:
        assert await session.answers(frame) == answers


# --- what ends the session -----------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        pytest.param("40/" + "n" * 10_000 + ",{}", "namespace longer than 64 characters",
                     id="CONNECT to a namespace of 10,001 characters"),
        pytest.param('451-["join-conversation",{"_placeholder":true,"num":0}]', "binary attachments are not supported",
                     id="binary event"),
        pytest.param('461-1[{"_placeholder":true,"num":0}]', "binary attachments are not supported", id="binary ack"),
        pytest.param("42" + str(2**31) + '["x"]', "acknowledgement id above 2147483647", id="ack id 2^31"),
        pytest.param("421[null]", "event name is neither a string nor a number", id="event name null"),
        pytest.param('42[{"name":"join-conversation"}]', "event name is neither a string nor a number",
                     id="event name an object"),
        pytest.param("42[]", "EVENT payload has no event name", id="empty event array"),
        pytest.param('431{"ok":true}', "ACK payload is not an array", id="ACK payload an object"),
    ],
)
async def test_packets_the_protocol_forbids_end_the_session_with_the_reason(
    server, token, transport, frame, reason
) -> None:
    """socket.io-parser's decoder refuses these too, and the JavaScript server closes the connection; here a
    WebSocket closes with 4400 and the reason, and a long-polling session ends (the log says why)."""
    async with RawSession(server, token, transport) as session:
        closed_with = await session.refused(frame)
    if transport == "websocket":
        assert closed_with == reason
    await clients.wait_until(lambda: reason in server.log(), what="the log line with the reason")


# --- stock clients ------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_node_client_event_named_by_a_number_is_acknowledged_as_unknown(server, token, transport) -> None:
    async with clients.node_desktop(server, token=token, transports=transport) as node:
        await node.wait_for(lambda n: n.of_kind("connected"), what="the connection")
        await node.command('call 42 "x"')
        await node.wait_for(lambda n: n.of_kind("ack"), what="the acknowledgement")
        assert node.of_kind("ack") == [{"kind": "ack", "event": 42, "args": [False, "unknown event 42"]}]
        assert not node.of_kind("disconnect")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_node_client_binary_event_ends_the_connection_with_the_reason(server, token, transport) -> None:
    """socket.io-client emits a Buffer as a BINARY_EVENT: the connection ends; over a WebSocket its close
    event (the disconnect's details) carries 4400 and the reason."""
    async with clients.node_desktop(server, token=token, transports=transport) as node:
        await node.wait_for(lambda n: n.of_kind("connected"), what="the connection")
        await node.command("emit-binary join-conversation")
        await node.wait_for(lambda n: n.of_kind("disconnect"), what="the disconnect")
    disconnect = node.of_kind("disconnect")[0]
    if transport == "websocket":
        assert disconnect == {"kind": "disconnect", "reason": "transport close", "code": PROTOCOL_ERROR,
                              "closeReason": "binary attachments are not supported"}
    else:
        assert disconnect["reason"] in ("transport close", "transport error"), disconnect


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_python_socketio_connecting_to_another_namespace_is_refused_as_invalid(server, token, transport) -> None:
    client = socketio.AsyncClient(reconnection=False)
    refusals = []
    client.on("connect_error", refusals.append, namespace="/admin")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(server.http_url, namespaces=["/admin"], transports=[transport], auth={"token": token},
                             wait_timeout=CLIENT_TIMEOUT)
    assert refusals == [{"message": "Invalid namespace"}]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_python_socketio_event_named_by_a_number_is_acknowledged_as_unknown(server, token, transport) -> None:
    desktop = SocketIODesktop()
    await desktop.connect(server, token, transports=(transport,))
    try:
        assert list(await desktop.client.call(42, "x", timeout=CLIENT_TIMEOUT)) == [False, "unknown event 42"]
        assert list(await desktop.join(conversation()))[0] is True
    finally:
        await desktop.disconnect()


async def test_python_socketio_binary_event_ends_the_connection(server, token) -> None:
    """python-socketio emits bytes as a BINARY_EVENT: the server closes, and the client is disconnected."""
    desktop = SocketIODesktop()
    await desktop.connect(server, token)
    disconnected = asyncio.Event()
    desktop.client.on("disconnect", lambda *reason: disconnected.set())
    try:
        await desktop.client.emit("join-conversation", b"binary")
        await asyncio.wait_for(disconnected.wait(), CLIENT_TIMEOUT)
        assert not desktop.client.connected
        with pytest.raises(socketio.exceptions.BadNamespaceError):
            await desktop.client.emit("join-conversation", conversation())
    finally:
        await desktop.disconnect()
