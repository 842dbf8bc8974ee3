"""Every way a desktop connection ends, against a real connector process on a private Redis.

For each close path (the client closes, the server refuses a frame, the
authentication deadline, a ping timeout, a Socket.IO DISCONNECT, a dropped
TCP connection) the test asserts the close code the client sees (one the
WebSocket library under the server accepts from an application) and that Redis's
subscriptions (``PUBSUB CHANNELS`` and ``PUBSUB SHARDCHANNELS``) return to what they were before the
connection opened. A connection that has not authenticated holds no Redis
subscription at all, and a process keeps only ``WEBSOCKET_MAX_UNAUTHENTICATED``
of them open. Raw frames go through aiohttp's WebSocket client, so malformed
input reaches the server exactly as written.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
import redis.asyncio as redis

from connector.desktops import close_codes
from testing import clients, processes
from testing.processes import Server

SOCKETIO = "/socket.io/?EIO=4&transport=websocket"
PLAIN = "/ws/"
MAX_PAYLOAD = 1024
JOINS = 64  # MAX_CONVERSATIONS_PER_CONNECTION: the most one connection can subscribe to
WAIT = 10.0


@pytest.fixture(scope="module")
def private_redis() -> Iterator[processes.RedisAddress]:
    """A Redis of this module's own: PUBSUB CHANNELS then counts this module's connector alone."""
    with processes.redis_server(private=True) as address:
        yield address


@pytest.fixture(scope="module")
def connector(private_redis) -> Iterator[Server]:
    with processes.service_server(
        role="connector",
        redis=private_redis,
        WEBSOCKET_AUTH_TIMEOUT="1",
        SOCKETIO_PING_INTERVAL="1",
        SOCKETIO_PING_TIMEOUT="1",
        SOCKETIO_MAX_PAYLOAD=str(MAX_PAYLOAD),
        WEBSOCKET_MAX_UNAUTHENTICATED="3",
    ) as server:
        yield server


@pytest.fixture
async def redis_client(private_redis) -> AsyncIterator[redis.Redis]:
    client = redis.Redis(host=private_redis.host, port=private_redis.port, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def token(settings) -> str:
    return clients.server_token(settings, user="agent")


async def subscriptions(redis_client: redis.Redis) -> set[str]:
    # Conversations' events come on sharded channels (SSUBSCRIBE), the rest on plain ones.
    return set(await redis_client.pubsub_channels()) | set(await redis_client.pubsub_shardchannels())


async def assert_subscriptions_return_to(redis_client: redis.Redis, baseline: set[str]) -> None:
    """Poll until Redis's subscriptions are ``baseline`` again (the server cleans up after the close)."""
    current: set[str] = set()

    async def settled() -> bool:
        nonlocal current
        current = await subscriptions(redis_client)
        return current == baseline

    for _ in range(int(WAIT / 0.05)):
        if await settled():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{len(current - baseline)} subscriptions left behind: {sorted(current - baseline)[:5]}")


class RawSocketIO:
    """Engine.IO frames as written; answers the server's pings unless told not to."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, *, answer_pings: bool = True) -> None:
        self.ws = ws
        self.answer_pings = answer_pings
        self.close_code: int | None = None

    async def next_frame(self) -> str | None:
        """The next text frame that is not a ping, or None once the server closed (``close_code`` set)."""
        while True:
            message = await asyncio.wait_for(self.ws.receive(), WAIT)
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                self.close_code = self.ws.close_code
                return None
            assert message.type == aiohttp.WSMsgType.TEXT, message
            if message.data == "2":
                if self.answer_pings:
                    await self.ws.send_str("3")
                continue
            return message.data

    async def closed_with(self) -> int | None:
        """Read until the server closes; its close code."""
        while await self.next_frame() is not None:
            pass
        return self.close_code


async def open_socketio(http: aiohttp.ClientSession, server: Server, **options) -> RawSocketIO:
    ws = await http.ws_connect(server.http_url + SOCKETIO, autoping=True)
    client = RawSocketIO(ws, **options)
    opening = await client.next_frame()
    assert opening is not None and opening.startswith("0{")
    return client


async def logged_in_socketio(http, server: Server, token: str, joins: int = JOINS) -> RawSocketIO:
    """A Socket.IO session CONNECTed with ``token`` and joined to ``joins`` conversations of its own."""
    client = await open_socketio(http, server)
    await client.ws.send_str("40" + json.dumps({"token": token}))
    connected = await client.next_frame()
    assert connected is not None and connected.startswith("40{"), connected
    prefix = f"projects/p/conversations/end-{id(client)}-"
    for number in range(joins):
        await client.ws.send_str(f"42{number}" + json.dumps(["join-conversation", prefix + str(number)]))
        assert await client.next_frame() == f"43{number}" + json.dumps([True, prefix + str(number)], separators=(",", ":"))
    return client


async def logged_in_plain(http, server: Server, token: str, joins: int = JOINS) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(server.http_url + PLAIN)
    await ws.send_json({"type": "authenticate", "token": token})
    assert (await ws.receive_json(timeout=WAIT))["type"] == "authenticated"
    for number in range(joins):
        await ws.send_json({"type": "join", "conversation": f"projects/p/conversations/plain-{id(ws)}-{number}"})
        assert (await ws.receive_json(timeout=WAIT))["type"] == "joined"
    return ws


def assert_no_server_error(server: Server) -> None:
    log = server.log()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


# --- Socket.IO -----------------------------------------------------------------------------


async def test_socketio_never_connecting_is_closed_at_the_deadline_and_holds_no_subscription(
    connector, http, redis_client
) -> None:
    """A socket that answers pings but never CONNECTs: no Redis subscription while open, then closed with 4401."""
    baseline = await subscriptions(redis_client)
    client = await open_socketio(http, connector)
    assert await subscriptions(redis_client) == baseline
    assert await client.closed_with() == close_codes.UNAUTHENTICATED
    assert_no_server_error(connector)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        pytest.param("9", close_codes.PROTOCOL_ERROR, id="unknown Engine.IO type"),
        pytest.param("", close_codes.PROTOCOL_ERROR, id="empty frame"),
        pytest.param('42["join-conversation"', close_codes.PROTOCOL_ERROR, id="bad JSON"),
        pytest.param(b"\x04binary", close_codes.UNSUPPORTED_DATA, id="binary frame"),
        pytest.param('42["x","' + "y" * MAX_PAYLOAD + '"]', close_codes.MESSAGE_TOO_BIG, id="over the payload cap"),
    ],
)
async def test_socketio_malformed_frame_closes_with_an_application_code_and_leaves_every_conversation(
    connector, http, redis_client, token, frame, code
) -> None:
    """A logged-in session with 64 joins sends a bad frame: closed with ``code``, no traceback, no subscription left."""
    baseline = await subscriptions(redis_client)
    client = await logged_in_socketio(http, connector, token)
    assert len(await subscriptions(redis_client)) >= len(baseline) + JOINS
    if isinstance(frame, bytes):
        await client.ws.send_bytes(frame)
    else:
        await client.ws.send_str(frame)
    assert await client.closed_with() == code
    await assert_subscriptions_return_to(redis_client, baseline)
    assert_no_server_error(connector)


async def test_socketio_client_close_leaves_every_conversation(connector, http, redis_client, token) -> None:
    baseline = await subscriptions(redis_client)
    client = await logged_in_socketio(http, connector, token)
    await client.ws.close()
    await assert_subscriptions_return_to(redis_client, baseline)


async def test_socketio_ping_timeout_closes_normally_and_leaves_every_conversation(
    connector, http, redis_client, token
) -> None:
    baseline = await subscriptions(redis_client)
    client = await logged_in_socketio(http, connector, token)
    client.answer_pings = False
    assert await client.closed_with() == close_codes.NORMAL
    await assert_subscriptions_return_to(redis_client, baseline)


async def test_socketio_disconnect_packet_then_close_leaves_every_conversation(
    connector, http, redis_client, token
) -> None:
    baseline = await subscriptions(redis_client)
    client = await logged_in_socketio(http, connector, token)
    await client.ws.send_str("41")
    await client.ws.send_str("1")
    assert await client.closed_with() == close_codes.NORMAL
    await assert_subscriptions_return_to(redis_client, baseline)


async def test_socketio_dropped_tcp_connection_leaves_every_conversation(connector, redis_client, token) -> None:
    """The client vanishes without a close frame (a laptop lid shut): the server still cleans up."""
    baseline = await subscriptions(redis_client)
    session = aiohttp.ClientSession()
    try:
        client = await logged_in_socketio(session, connector, token)
        transport = client.ws._response.connection.transport  # the raw TCP connection under the WebSocket
        transport.abort()
    finally:
        await session.close()
    await assert_subscriptions_return_to(redis_client, baseline)
    assert_no_server_error(connector)


# --- plain WebSocket --------------------------------------------------------------------------


async def test_plain_never_authenticating_is_closed_at_the_deadline_and_holds_no_subscription(
    connector, http, redis_client
) -> None:
    baseline = await subscriptions(redis_client)
    ws = await http.ws_connect(connector.http_url + PLAIN)
    assert await subscriptions(redis_client) == baseline
    assert (await ws.receive_json(timeout=WAIT))["code"] == "unauthenticated"
    assert (await ws.receive(timeout=WAIT)).type == aiohttp.WSMsgType.CLOSE
    assert ws.close_code == close_codes.UNAUTHENTICATED


async def test_plain_refused_token_closes_4401_without_subscribing(connector, http, redis_client) -> None:
    baseline = await subscriptions(redis_client)
    ws = await http.ws_connect(connector.http_url + PLAIN)
    await ws.send_json({"type": "authenticate", "token": "not-a-jwt"})
    assert (await ws.receive_json(timeout=WAIT))["code"] == "unauthenticated"
    assert (await ws.receive(timeout=WAIT)).type == aiohttp.WSMsgType.CLOSE
    assert ws.close_code == close_codes.UNAUTHENTICATED
    assert await subscriptions(redis_client) == baseline


async def test_plain_client_close_after_bad_frames_leaves_every_conversation(
    connector, http, redis_client, token
) -> None:
    """Bad frames on /ws/ are answered with errors and the connection stays; its close still cleans up."""
    baseline = await subscriptions(redis_client)
    ws = await logged_in_plain(http, connector, token)
    await ws.send_bytes(b"\x00")
    assert (await ws.receive_json(timeout=WAIT))["code"] == "bad_frame"
    await ws.close()
    await assert_subscriptions_return_to(redis_client, baseline)


async def test_plain_dropped_tcp_connection_leaves_every_conversation(connector, redis_client, token) -> None:
    baseline = await subscriptions(redis_client)
    session = aiohttp.ClientSession()
    try:
        ws = await logged_in_plain(session, connector, token)
        ws._response.connection.transport.abort()
    finally:
        await session.close()
    await assert_subscriptions_return_to(redis_client, baseline)
    assert_no_server_error(connector)


# --- the bound on unauthenticated connections ------------------------------------------------


async def test_unauthenticated_connections_are_bounded_per_process(connector, http, token) -> None:
    """With WEBSOCKET_MAX_UNAUTHENTICATED=3, a fourth unauthenticated handshake gets 403; once one of
    the three authenticates, a new handshake is admitted again."""
    waiting = [await http.ws_connect(connector.http_url + PLAIN) for _ in range(3)]
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(connector.http_url + SOCKETIO)
    assert refused.value.status == 403
    await waiting[0].send_json({"type": "authenticate", "token": token})
    assert (await waiting[0].receive_json(timeout=WAIT))["type"] == "authenticated"
    admitted = await http.ws_connect(connector.http_url + PLAIN)
    for ws in (*waiting, admitted):
        await ws.close()
    assert "WEBSOCKET_MAX_UNAUTHENTICATED" in connector.log()


# --- Redis unreachable ----------------------------------------------------------------------


async def test_redis_unreachable_closes_socketio_with_4503_and_refuses_plain_joins(http, token) -> None:
    """Redis gone: a Socket.IO CONNECT cannot record its session, so the desktop is told (4503) to come back
    later; on /ws/ (which keeps no session) authentication works and a join is refused with a reason."""
    nothing_there = processes.RedisAddress("127.0.0.1", processes.free_port())
    with processes.service_server(role="connector", redis=nothing_there) as server:
        ws = await http.ws_connect(server.http_url + PLAIN)
        await ws.send_json({"type": "authenticate", "token": token})
        assert (await ws.receive_json(timeout=WAIT))["type"] == "authenticated"
        await ws.send_json({"type": "join", "conversation": "projects/p/conversations/c"})
        refusal = await ws.receive_json(timeout=WAIT)
        assert (refusal["code"], refusal["message"]) == (
            "invalid_conversation", "conversation events are unavailable right now; try again"
        )
        client = await open_socketio(http, server)
        await client.ws.send_str("40" + json.dumps({"token": token}))
        assert await client.closed_with() == close_codes.UNAVAILABLE
        # Once the server is done with the connection (an escaping exception is logged right after this line).
        await clients.wait_until(lambda: "WSDISCONNECT /socket.io/" in server.log(), what="the server's end")
        assert "Traceback" not in server.log()
