"""The Socket.IO consumer's session: heartbeat, timeouts, malformed input, and the end of a connection.

Same setting as ``test_socketio_consumer.py``: raw frames through
``WebsocketCommunicator`` (``testing/raw_socketio.py``) to the real ASGI
application on the real Redis pub/sub layer.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from socketio import packet as sio

from connector.desktops.close_codes import MESSAGE_TOO_BIG, PROTOCOL_ERROR, UNAUTHENTICATED, UNSUPPORTED_DATA
from connector.desktops.engineio import session
from testing import clients, processes
from testing.raw_socketio import PATH, SHORT_NAME, WAIT, SocketIOTestClient, open_connected

# --- heartbeat and timeouts ------------------------------------------------------------------


async def test_server_pings_and_a_pong_keeps_the_session(connected, settings) -> None:
    """The server sends "2" every pingInterval; answering "3" keeps the connection for the next ping."""
    settings.SOCKETIO_PING_INTERVAL, settings.SOCKETIO_PING_TIMEOUT = 1, 1
    client = await connected()
    assert await client.receive() == "2"
    await client.send("3")
    # A session that ignored the pong would close here instead of pinging again.
    assert await client.receive() == "2"


async def test_missing_pong_closes_the_session(connected, settings) -> None:
    """No "3" within pingTimeout after a ping: the server closes the connection."""
    settings.SOCKETIO_PING_INTERVAL, settings.SOCKETIO_PING_TIMEOUT = 1, 1
    client = await connected()
    assert await client.receive() == "2"
    await client.close_code()


async def test_client_ping_is_answered(connected) -> None:
    """A client "2" (Engine.IO 3 habit, some proxies' keep-alive) gets "3" back."""
    client = await connected()
    await client.send("2")
    assert await client.receive() == "3"


async def test_client_close_packet_closes_the_connection(connected) -> None:
    """Engine.IO CLOSE ("1") from the client ends the WebSocket."""
    client = await connected()
    await client.send("1")
    assert await client.close_code() == 1000


async def test_unauthenticated_socket_is_closed_after_auth_timeout(new_client, settings) -> None:
    """A socket that never CONNECTs is closed after WEBSOCKET_AUTH_TIMEOUT with 4401."""
    settings.WEBSOCKET_AUTH_TIMEOUT = 1
    client = new_client()
    await client.open()
    assert await client.close_code() == UNAUTHENTICATED


async def test_refused_socket_is_closed_after_auth_timeout(new_client, settings) -> None:
    """A socket whose CONNECT was refused is closed like one that never tried."""
    settings.WEBSOCKET_AUTH_TIMEOUT = 1
    client = new_client()
    await client.open()
    await client.connect_namespace(None)
    await client.receive_packet()
    assert await client.close_code() == UNAUTHENTICATED


async def test_connected_socket_outlives_auth_timeout(connected, settings) -> None:
    """The auth timeout does not close a connected socket: the next frame is the ping, not a close."""
    settings.WEBSOCKET_AUTH_TIMEOUT, settings.SOCKETIO_PING_INTERVAL = 1, 2
    client = await connected()
    assert await client.receive() == "2"


# --- malformed input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        pytest.param("x", "invalid Engine.IO packet", id="non-numeric type"),
        pytest.param("9", "unknown Engine.IO packet type 9", id="unknown Engine.IO type"),
        pytest.param("4", "empty Socket.IO packet", id="empty Socket.IO packet"),
        pytest.param("47", "unknown Socket.IO packet type 7", id="unknown Socket.IO type"),
        pytest.param('42["join-conversation"', "invalid Socket.IO packet", id="truncated JSON"),
        pytest.param('451-["join-conversation",{"_placeholder":true,"num":0}]', "binary attachments are not supported",
                     id="binary attachment"),
        pytest.param('450-["join-conversation"]', "binary attachments are not supported",
                     id="binary event without attachments"),
        pytest.param('461-1[{"_placeholder":true,"num":0}]', "binary attachments are not supported", id="binary ack"),
        pytest.param("42" + "[" * 100_000, "invalid Socket.IO packet", id="deeply nested JSON"),
        pytest.param("42" + str(2**31) + '["x"]', "acknowledgement id above 2147483647", id="ack id past 2^31 - 1"),
        pytest.param("43" + str(2**31) + "[]", "acknowledgement id above 2147483647", id="ACK id past 2^31 - 1"),
        pytest.param("40/" + "n" * 65 + ",{}", "namespace longer than 64 characters",
                     id="CONNECT to a namespace longer than 64 characters"),
        pytest.param("42[]", "EVENT payload has no event name", id="empty event array"),
        pytest.param("421[]", "EVENT payload has no event name", id="empty event array with an ack id"),
        pytest.param('42{"name":"join-conversation"}', "EVENT payload is not an array", id="event object"),
        pytest.param('42"join-conversation"', "EVENT payload is not an array", id="event string"),
        pytest.param("421[null]", "event name is neither a string nor a number", id="event name null"),
        pytest.param("42[true]", "event name is neither a string nor a number", id="event name true"),
        pytest.param('42[{"a":1},"x"]', "event name is neither a string nor a number", id="event name object"),
        pytest.param('42[["join-conversation"]]', "event name is neither a string nor a number", id="event name array"),
        pytest.param('431{"a":1}', "ACK payload is not an array", id="ack object"),
    ],
)
async def test_invalid_packet_closes_with_protocol_error_and_the_reason(connected, frame: str, reason: str) -> None:
    """A frame that is not a valid text packet closes the connection with 4400, its close frame saying why
    (bounded: it repeats nothing of what the client sent), without a server error. The Socket.IO payload rules
    are socket.io-parser's (``isPayloadValid``), whose decoder error makes the JavaScript server close too."""
    client = await connected()
    await client.send(frame)
    code, why = await client.closed()
    assert code == PROTOCOL_ERROR
    assert why.startswith(reason) and len(why.encode()) <= 123, why


async def test_binary_frame_closes_with_unsupported_data(connected) -> None:
    """Binary WebSocket frames are not supported: close with 4415."""
    client = await connected()
    await client.communicator.send_to(bytes_data=b"\x04binary")
    assert await client.close_code() == UNSUPPORTED_DATA


async def test_frame_over_max_payload_closes_with_message_too_big(connected, settings) -> None:
    """A frame of maxPayload characters is handled; one character more closes with 4413."""
    settings.SOCKETIO_MAX_PAYLOAD = 1024
    client = await connected()
    prefix, suffix = '421["padding","', '"]'
    at_limit = prefix + "x" * (1024 - len(prefix) - len(suffix)) + suffix
    await client.send(at_limit)
    ack = await client.receive_packet()
    assert (ack.packet_type, ack.id, ack.data[0]) == (sio.ACK, 1, False)
    await client.send(at_limit[:-2] + 'x"]')
    assert await client.close_code() == MESSAGE_TOO_BIG


# --- the end of a connection ----------------------------------------------------------------


def heartbeats() -> int:
    """How many Engine.IO sessions have a heartbeat scheduled on this event loop."""
    return session.heartbeats().scheduled


async def test_heartbeat_stops_when_a_socket_closes_while_redis_is_gone(settings, caplog) -> None:
    """A socket closing while Redis is down cannot leave its conversations (logged), yet its heartbeat stops:
    left running, it would ping a closed connection for ever, one loop per desktop that closed in the outage."""
    with processes.redis_server(private=True) as redis:
        settings.REDISHOST, settings.REDISPORT = redis.host, redis.port
        client = await open_connected(lambda: SocketIOTestClient(PATH))
        assert await client.call("join-conversation", SHORT_NAME) == [True, SHORT_NAME]
        assert heartbeats() == 1
    # Once the hub has seen its subscription drop, leaving the conversation on disconnect fails.
    await clients.wait_until(
        lambda: any(r.name == "connector.desktops.fanout" for r in caplog.records), what="the hub to lose Redis"
    )
    await client.communicator.disconnect(timeout=WAIT)
    await asyncio.sleep(0)  # let the consumer's ending run
    assert heartbeats() == 0
    failures = [r for r in caplog.records if r.name == "connector.desktops.consumer" and r.levelno == logging.ERROR]
    assert len(failures) == 1, [r.getMessage() for r in caplog.records]
