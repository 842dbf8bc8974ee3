"""The Socket.IO consumer at ``/socket.io/`` on the real ASGI application and the real Redis pub/sub layer.

Each client speaks raw Engine.IO 4 / Socket.IO 5 text frames through
``WebsocketCommunicator``; server frames are decoded with python-socketio's own
packet classes. "Not delivered" is shown by ordering, not by waiting: the
socket also joins a second conversation, that one is published to last, and
its event must be the next frame.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import jwt
import pytest
from redis.asyncio import Redis
from rest_framework_simplejwt.utils import aware_utcnow
from socketio import packet as sio

from connector import tokens
from connector.desktops import membership
from events import redis_client
from events.history import channel_name
from events.kinds import EventKind
from events.publish import publish as publish_event
from testing.raw_socketio import (
    LONG_NAME,
    OTHER,
    SHORT_NAME,
    WAIT,
    desktop_payload,
    publish,
)


def expired_token() -> str:
    """Signed with our secret, expired two hours ago."""
    token = tokens.AgentAssistToken()
    token[tokens.PROJECT_CLAIM] = "test-project"
    token[tokens.USER_CLAIM] = "alice"
    token.set_exp(from_time=aware_utcnow() - timedelta(hours=2))
    return str(token)


def other_project_token() -> str:
    """Signed with our secret, but for a project this service does not serve."""
    token = tokens.AgentAssistToken()
    token[tokens.PROJECT_CLAIM] = "other-project"
    token[tokens.USER_CLAIM] = "alice"
    return str(token)


def forged_token() -> str:
    """Well-formed claims signed with a key that is not ours."""
    claims = {"exp": aware_utcnow() + timedelta(hours=1), "token_type": "agent_assist", "jti": "x"}
    claims |= {tokens.PROJECT_CLAIM: "test-project", tokens.USER_CLAIM: "mallory"}
    return jwt.encode(claims, "not-the-service-secret-0123456789-abcdefgh", algorithm="HS256")


# --- Engine.IO handshake ------------------------------------------------------------------


async def test_open_packet_advertises_settings(new_client, settings) -> None:
    """OPEN carries a fresh sid, no upgrades, the heartbeat in milliseconds and maxPayload."""
    settings.SOCKETIO_PING_INTERVAL, settings.SOCKETIO_PING_TIMEOUT, settings.SOCKETIO_MAX_PAYLOAD = 7, 3, 4096
    first, second = await new_client().open(), await new_client().open()
    assert {key: value for key, value in first.items() if key != "sid"} == {
        "upgrades": [],
        "pingInterval": 7000,
        "pingTimeout": 3000,
        "maxPayload": 4096,
    }
    assert isinstance(first["sid"], str) and first["sid"]
    assert first["sid"] != second["sid"]


@pytest.mark.parametrize(
    "query",
    ["EIO=3&transport=websocket", "transport=websocket", "EIO=4&transport=polling", "EIO=4&transport=websocket&sid=x"],
)
async def test_handshake_refused_for_other_engineio_versions_and_transports(new_client, query: str) -> None:
    """Only Engine.IO 4 clients opening the websocket transport directly are accepted."""
    accepted, _ = await new_client(f"/socket.io/?{query}").communicator.connect()
    assert not accepted


# --- CONNECT and authentication -----------------------------------------------------------


async def test_connect_with_valid_token(new_client) -> None:
    """CONNECT with ``auth.token`` is answered ``40{"sid":...}`` on the default namespace."""
    client = new_client()
    await client.open()
    packet = await client.connect_namespace(tokens.issue_token(user="alice"))
    assert (packet.packet_type, packet.namespace) == (sio.CONNECT, None)
    assert isinstance(packet.data["sid"], str) and packet.data["sid"]


async def test_connect_with_bearer_prefixed_token(new_client) -> None:
    """Some platforms send ``Bearer <jwt>``; it is accepted like the bare token."""
    client = new_client()
    await client.open()
    packet = await client.connect_namespace("Bearer " + tokens.issue_token(user="alice"))
    assert packet.packet_type == sio.CONNECT


@pytest.mark.parametrize(
    ("token", "why"),
    [
        (None, "Token is missing."),
        ("", "Token is missing."),
        ("not-a-jwt", "Token is invalid"),
        (expired_token, "Token is expired"),
        (forged_token, "Token is invalid"),
        (other_project_token, "Token is for another project"),
    ],
    ids=["missing", "empty", "garbage", "expired", "forged", "other project"],
)
async def test_connect_with_bad_token_is_refused(new_client, token, why: str) -> None:
    """The sample's sequence: ``42["unauthenticated"]``, then ``44{"message": <why>}``."""
    client = new_client()
    await client.open()
    raw = token() if callable(token) else token
    await client.send("40" + json.dumps({} if raw is None else {"token": raw}))
    assert await client.receive() == '42["unauthenticated"]'
    refusal = await client.receive_packet()
    assert (refusal.packet_type, refusal.data) == (sio.CONNECT_ERROR, {"message": why})


async def test_refused_socket_gets_no_events_and_cannot_join(new_client, connected) -> None:
    """After a refused CONNECT, joins are ignored and conversation events never reach the socket."""
    refused = new_client()
    await refused.open()
    await refused.connect_namespace("not-a-jwt")
    await refused.receive_packet()  # the CONNECT_ERROR after "unauthenticated"
    await refused.send(f'421["join-conversation","{SHORT_NAME}"]')
    witness = await connected()
    assert await witness.call("join-conversation", SHORT_NAME) == [True, SHORT_NAME]
    payload = await publish(SHORT_NAME)
    assert await witness.receive_event() == [EventKind.NEW_MESSAGE, payload]
    # The witness shares this event loop and Redis connection, so a delivery to
    # the refused socket would already be queued; a short look is enough.
    assert await refused.communicator.receive_nothing(timeout=0.3)


async def test_connect_to_another_namespace_is_refused_for_that_namespace(new_client) -> None:
    """Only ``/`` exists: CONNECT to ``/admin`` gets CONNECT_ERROR for ``/admin``; ``/`` still works."""
    client = new_client()
    await client.open()
    await client.send("40/admin," + json.dumps({"token": tokens.issue_token(user="alice")}))
    refusal = await client.receive_packet()
    assert (refusal.packet_type, refusal.namespace) == (sio.CONNECT_ERROR, "/admin")
    assert refusal.data == {"message": "Invalid namespace"}  # the JavaScript server's words (client.ts)
    assert (await client.connect_namespace(tokens.issue_token(user="alice"))).packet_type == sio.CONNECT


async def test_answers_repeat_no_more_than_64_characters_of_what_the_client_sent(connected) -> None:
    """An unknown event's acknowledgement names the first 64 characters of it; the largest ack id is answered as
    any other; a namespace of 64 characters is named back in its CONNECT_ERROR, as the reference server does."""
    client = await connected()
    name = "x" * 64 + "y" * 100_000
    await client.send("42" + str(2**31 - 1) + json.dumps([name]))
    ack = await client.receive_packet()
    assert (ack.packet_type, ack.id) == (sio.ACK, 2**31 - 1)
    assert ack.data == [False, f"unknown event {'x' * 64!r}"]
    await client.send("40/" + "n" * 63 + ",{}")
    refusal = await client.receive_packet()
    assert (refusal.packet_type, refusal.namespace) == (sio.CONNECT_ERROR, "/" + "n" * 63)


async def test_events_before_connect_are_ignored(new_client) -> None:
    """A join sent before CONNECT gets no ack and joins nothing."""
    client = new_client()
    await client.open()
    await client.send(f'421["join-conversation","{SHORT_NAME}"]')
    # Frames are handled in order: an ack for the early join would come first.
    assert (await client.connect_namespace(tokens.issue_token(user="alice"))).packet_type == sio.CONNECT
    await client.call("join-conversation", OTHER)
    await publish(SHORT_NAME)
    marker = await publish(OTHER)
    assert await client.receive_event() == [EventKind.NEW_MESSAGE, marker]


# --- join and leave ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", [LONG_NAME, SHORT_NAME], ids=["with location", "without location"])
async def test_join_and_leave_acknowledge_the_normalised_name(connected, name: str) -> None:
    """Both name forms are acknowledged ``[true, "projects/P/conversations/C"]``, exactly as on the wire."""
    client = await connected()
    await client.send(f'4217["join-conversation","{name}"]')
    assert await client.receive() == f'4317[true,"{SHORT_NAME}"]'
    await client.send(f'4218["leave-conversation","{name}"]')
    assert await client.receive() == f'4318[true,"{SHORT_NAME}"]'


async def test_leaving_a_conversation_not_joined_is_acknowledged(connected) -> None:
    """Leave is idempotent: the UI modules may leave on every conversation switch."""
    client = await connected()
    assert await client.call("leave-conversation", LONG_NAME) == [True, SHORT_NAME]


@pytest.mark.parametrize(
    "args",
    [["projects/p/conversations"], ["conversations/c"], ["projects/p/conversations/c/x"], [42], [None], []],
    ids=["truncated", "no project", "extra segment", "number", "null", "no argument"],
)
async def test_join_with_invalid_name_is_refused_in_the_ack(connected, args: list[Any]) -> None:
    """An invalid conversation name is acknowledged ``[false, <reason>]`` and the socket stays usable."""
    client = await connected()
    ok, reason = await client.call("join-conversation", *args)
    assert ok is False and isinstance(reason, str) and reason
    assert await client.call("join-conversation", SHORT_NAME) == [True, SHORT_NAME]


async def test_unknown_event_with_ack_is_refused(connected) -> None:
    """An event the server does not handle is acknowledged ``[false, <reason>]`` rather than left hanging."""
    client = await connected()
    ok, reason = await client.call("subscribe", SHORT_NAME)
    assert ok is False and "subscribe" in reason


@pytest.mark.parametrize(
    ("name", "echoed"),
    [
        pytest.param("42", "42", id="integer"),
        pytest.param("-1.5", "-1.5", id="float"),
        # The most digits python-engineio's JSON decoder reads in an integer.
        pytest.param("9" * 100, "9" * 64, id="integer of 100 digits"),
        pytest.param('"disconnect"', "'disconnect'", id="a name the JavaScript server reserves"),
    ],
)
async def test_an_event_named_by_a_number_or_a_reserved_name_is_an_unknown_event(connected, name, echoed) -> None:
    """socket.io-parser takes a number as an event's name, so a stock client may send one: like any unknown
    event, its acknowledgement is ``[false, "unknown event <at most 64 characters of it>"]``. So are the names
    the JavaScript server reserves (it closes the connection over them; they mean nothing here)."""
    client = await connected()
    await client.send(f"427[{name},{json.dumps(SHORT_NAME)}]")
    ack = await client.receive_packet()
    assert (ack.packet_type, ack.id, ack.data) == (sio.ACK, 7, [False, f"unknown event {echoed}"])
    assert await client.call("join-conversation", SHORT_NAME) == [True, SHORT_NAME]


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param('43["x"]', id="an ACK without an id"),
        pytest.param('431["x"]', id="an ACK for an id never sent"),
        pytest.param("43" + str(2**31 - 1) + "[]", id="an ACK for the largest id"),
        pytest.param("435", id="an ACK without a payload"),
        pytest.param("42", id="an EVENT without a payload"),
        pytest.param("429", id="an EVENT without a payload, with an ack id"),
    ],
)
async def test_packets_that_name_nothing_to_do_are_ignored(connected, frame: str) -> None:
    """The server asks for no acknowledgement, so a client's ACK names an id it never sent: ignored, as the
    JavaScript server ignores one (socket.ts, "bad ack"); so is an EVENT without a payload, which it emits as
    nothing. Neither is answered, and the connection goes on: the next frame is the join's acknowledgement."""
    client = await connected()
    await client.send(frame)
    assert await client.call("join-conversation", SHORT_NAME) == [True, SHORT_NAME]


async def test_join_limit_per_connection(connected) -> None:
    """A connection joins at most MAX_CONVERSATIONS_PER_CONNECTION; rejoining or after a leave still works."""
    client = await connected()
    limit = membership.MAX_CONVERSATIONS_PER_CONNECTION
    names = [f"projects/p/conversations/limit{index}" for index in range(limit)]
    for name in names:
        assert await client.call("join-conversation", name) == [True, name]
    ok, reason = await client.call("join-conversation", "projects/p/conversations/one-too-many")
    assert ok is False and str(limit) in reason
    assert await client.call("join-conversation", names[0]) == [True, names[0]]
    await client.call("leave-conversation", names[0])
    assert await client.call("join-conversation", OTHER) == [True, OTHER]


async def test_join_rate_per_connection(connected, settings) -> None:
    """Joins past DESKTOP_JOIN_BURST (refilled at DESKTOP_JOINS_PER_SECOND) are refused with the reason, and
    take no position in Redis (no key for the refused name); rejoining one already joined is free, and the
    connection goes on."""
    settings.DESKTOP_JOIN_BURST, settings.DESKTOP_JOINS_PER_SECOND = 3, 0.1
    client = await connected()
    names = [f"projects/p/conversations/rate{index}" for index in range(3)]
    for name in names:
        assert await client.call("join-conversation", name) == [True, name]
    await client.call("leave-conversation", names[0])
    refused = "projects/p/conversations/rate-refused"
    ok, reason = await client.call("join-conversation", refused)
    assert ok is False and reason.startswith("joining conversations too fast") and "3" in reason
    assert await client.call("join-conversation", names[1]) == [True, names[1]]
    assert [key async for key in redis_client.get_redis().scan_iter(match="*rate-refused*")] == []


# --- delivery ---------------------------------------------------------------------------------


@pytest.mark.parametrize("event", list(EventKind))
async def test_published_events_reach_the_socket_unchanged(connected, event: str) -> None:
    """Each of the four events arrives under its name with the payload exactly as published."""
    client = await connected()
    await client.call("join-conversation", LONG_NAME)
    payload = desktop_payload(event)
    if event == EventKind.NEW_RECOGNITION_RESULT:
        payload |= {"participant_role": "END_USER", "new_recognition_result_message_id": "m-1"}
    await publish_event(conversation_name=SHORT_NAME, event=event, payload=payload)
    assert await client.receive_event() == [event, payload]


async def test_every_socket_in_a_conversation_receives_and_no_other(connected) -> None:
    """Two desktops in one conversation (either name form) both receive; one in another conversation does not."""
    first, second, elsewhere = await connected("a"), await connected("b"), await connected("c")
    await first.call("join-conversation", LONG_NAME)
    await second.call("join-conversation", SHORT_NAME)
    await elsewhere.call("join-conversation", OTHER)
    payload = await publish(SHORT_NAME)
    marker = await publish(OTHER, EventKind.CONVERSATION_LIFECYCLE)
    assert await first.receive_event() == [EventKind.NEW_MESSAGE, payload]
    assert await second.receive_event() == [EventKind.NEW_MESSAGE, payload]
    assert await elsewhere.receive_event() == [EventKind.CONVERSATION_LIFECYCLE, marker]


async def test_no_events_after_leave(connected) -> None:
    """After leave-conversation the socket gets nothing more from that conversation."""
    client = await connected()
    await client.call("join-conversation", SHORT_NAME)
    await client.call("join-conversation", OTHER)
    await client.call("leave-conversation", LONG_NAME)
    await publish(SHORT_NAME)
    marker = await publish(OTHER)
    assert await client.receive_event() == [EventKind.NEW_MESSAGE, marker]


async def test_other_socket_still_receives_after_one_disconnects(connected) -> None:
    """One desktop closing does not unsubscribe the others in the same conversation."""
    leaving, staying = await connected("a"), await connected("b")
    await leaving.call("join-conversation", SHORT_NAME)
    await staying.call("join-conversation", SHORT_NAME)
    await leaving.communicator.disconnect(timeout=WAIT)
    payload = await publish(SHORT_NAME)
    assert await staying.receive_event() == [EventKind.NEW_MESSAGE, payload]


async def test_last_socket_closing_drops_the_redis_subscription(connected, redis_server) -> None:
    """Closing the only socket in a conversation unsubscribes this process from its Redis channel."""
    group_channel = channel_name(SHORT_NAME)
    redis = Redis.from_url(redis_server.url)
    try:
        client = await connected()
        await client.call("join-conversation", SHORT_NAME)
        assert len(await redis.pubsub_shardchannels(group_channel)) == 1
        await client.communicator.disconnect(timeout=WAIT)
        assert await redis.pubsub_shardchannels(group_channel) == []
    finally:
        await redis.aclose()


async def test_socketio_disconnect_packet_leaves_conversations(connected) -> None:
    """``41`` disconnects the namespace: its conversations are left, even after a new CONNECT."""
    client = await connected()
    await client.call("join-conversation", SHORT_NAME)
    await client.send("41")
    assert (await client.connect_namespace(tokens.issue_token(user="alice"))).packet_type == sio.CONNECT
    await client.call("join-conversation", OTHER)
    await publish(SHORT_NAME)
    marker = await publish(OTHER)
    assert await client.receive_event() == [EventKind.NEW_MESSAGE, marker]


async def test_joins_between_disconnect_and_reconnect_are_ignored(connected) -> None:
    """Between ``41`` and a new CONNECT, joins are ignored like before the first CONNECT."""
    client = await connected()
    await client.send("41")
    await client.send(f'429["join-conversation","{SHORT_NAME}"]')
    assert (await client.connect_namespace(tokens.issue_token(user="alice"))).packet_type == sio.CONNECT
