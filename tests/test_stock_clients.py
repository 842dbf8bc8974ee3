"""Stock clients against one real server process (SERVICE_ROLE=all) on a real Redis.

python-socketio's ``AsyncClient``, the npm ``socket.io-client`` (run by node,
``tests/node/desktop.mjs``) and aiohttp's WebSocket client connect the way
agent desktops do; the Pub/Sub fixtures are POSTed to the same process, and
each client must receive exactly the payload Google's sample sends.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import aiohttp
import pytest
import socketio

from connector import tokens
from events.history import Offset
from testing import clients, processes
from testing.clients import Push, SocketIODesktop
from testing.processes import Server

# After the last expected event, how long to keep listening for one that should not come.
QUIET_PERIOD = 1.0


@pytest.fixture(scope="module")
def server(redis_server: processes.RedisAddress) -> Iterator[Server]:
    """One production-like process serving both roles."""
    with processes.service_server(role="all", redis=redis_server) as running:
        yield running


@pytest.fixture
def pushes() -> list[Push]:
    """The valid fixtures, in conversations of this test's own."""
    return clients.valid_pushes(conversation_suffix=uuid.uuid4().hex[:8])


@pytest.fixture
def token(settings) -> str:
    return clients.server_token(settings, user="agent-007")


@pytest.fixture
def forged_token(settings) -> str:
    """Well formed and for the right project, but signed with another secret."""
    settings.JWT_SECRET_KEY = "not-the-server-secret-" + "x" * 40
    return tokens.issue_token(user="mallory")


def now() -> datetime:
    return datetime.now(timezone.utc)


# --- python-socketio --------------------------------------------------------------


async def test_python_socketio_join_acknowledges_the_normalised_name_for_either_form(server, token, pushes):
    """``call('join-conversation', name)`` returns (True, projects/P/conversations/C) for both accepted forms."""
    desktop = SocketIODesktop()
    await desktop.connect(server, token)
    try:
        fixture = pushes[0]
        assert list(await desktop.join(fixture.published_as)) == [True, fixture.conversation]
        assert list(await desktop.join(fixture.conversation)) == [True, fixture.conversation]
    finally:
        await desktop.disconnect()


async def test_python_socketio_receives_every_fixture_event_with_the_contract_payload(server, token, pushes):
    """Each valid fixture POSTed to the push endpoint reaches the joined client once, payload as in the contract."""
    desktop = SocketIODesktop()
    await desktop.connect(server, token)
    try:
        for fixture in clients.one_per_conversation(pushes):
            await desktop.join(fixture.published_as)
        started = now()
        await clients.push_all(server, pushes)
        await clients.wait_until(lambda: len(desktop.events) >= len(pushes), what="every fixture event")
        await asyncio.sleep(QUIET_PERIOD)
        clients.assert_received_exactly(desktop.events, pushes, received_between=(started, now()))
        assert {fixture.event for fixture in pushes} == {
            "human-agent-assistant-event",
            "new-message-event",
            "conversation-lifecycle-event",
            "new-recognition-result-notification-event",
        }
    finally:
        await desktop.disconnect()


async def test_python_socketio_forged_token_fires_unauthenticated_and_refuses_the_connection(server, forged_token):
    """A token signed with another secret: the ``unauthenticated`` handler runs, then ``connect`` raises."""
    desktop = SocketIODesktop()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await desktop.connect(server, forged_token)
    assert desktop.unauthenticated_seen
    assert desktop.connect_errors and desktop.connect_errors[0]["message"]
    assert not desktop.client.connected


async def test_python_socketio_missing_token_is_refused(server):
    """No token at all is refused the same way, with the contract's message."""
    desktop = SocketIODesktop()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await desktop.connect(server, "")
    assert desktop.unauthenticated_seen
    assert desktop.connect_errors == [{"message": "Token is missing."}]


async def test_python_socketio_leave_conversation_stops_delivery(server, token, pushes):
    """After ``leave-conversation`` the client gets no more events of that conversation, but still those of others."""
    recognition = [p for p in pushes if p.event == clients.RECOGNITION_EVENT]
    others = [p for p in pushes if p.conversation != recognition[0].conversation]
    desktop = SocketIODesktop()
    await desktop.connect(server, token)
    try:
        for fixture in clients.one_per_conversation(pushes):
            await desktop.join(fixture.conversation)
        assert list(await desktop.leave(others[0].published_as)) == [True, others[0].conversation]
        started = now()
        # The conversation still joined goes last: once its event is in, the others would have been too.
        await clients.push_all(server, others + recognition)
        await clients.wait_until(lambda: len(desktop.events) >= len(recognition), what="the recognition event")
        await asyncio.sleep(QUIET_PERIOD)
        clients.assert_received_exactly(desktop.events, recognition, received_between=(started, now()))
    finally:
        await desktop.disconnect()


# --- npm socket.io-client through node --------------------------------------------


async def test_node_client_joins_and_receives_every_fixture_event_with_the_contract_payload(server, token, pushes):
    """The stock npm client: join acks are [true, normalised] and each fixture arrives once, as in the contract."""
    joins = tuple(fixture.published_as for fixture in clients.one_per_conversation(pushes))
    async with clients.node_desktop(server, token=token, join=joins, events=len(pushes), linger=QUIET_PERIOD) as node:
        await node.wait_for(lambda n: len(n.of_kind("ack")) == len(joins), what="the join acks")
        assert [ack["args"] for ack in node.of_kind("ack")] == [
            [True, fixture.conversation] for fixture in clients.one_per_conversation(pushes)
        ]
        started = now()
        await clients.push_all(server, pushes)
        await node.exited()
        assert node.of_kind("exit") == [{"kind": "exit", "reason": "events"}], node.lines
        clients.assert_received_exactly(node.events, pushes, received_between=(started, now()))
        assert not node.of_kind("connect_error") and not node.of_kind("disconnect")


async def test_node_client_forged_token_gets_connect_error_after_unauthenticated(server, forged_token):
    """The npm client is refused: ``connect_error`` with the reason, after the server's ``unauthenticated`` event."""
    async with clients.node_desktop(server, token=forged_token) as node:
        await node.exited()
    kinds = [line["kind"] for line in node.lines]
    assert kinds == ["unauthenticated", "connect_error", "exit"], node.lines
    assert node.of_kind("connect_error")[0]["message"]


async def test_node_client_leave_conversation_stops_delivery(server, token, pushes):
    """After the npm client leaves a conversation it gets no more of its events, but still those of others."""
    recognition = [p for p in pushes if p.event == clients.RECOGNITION_EVENT]
    others = [p for p in pushes if p.conversation != recognition[0].conversation]
    joins = tuple(fixture.conversation for fixture in clients.one_per_conversation(pushes))
    async with clients.node_desktop(server, token=token, join=joins) as node:
        await node.wait_for(lambda n: len(n.of_kind("ack")) == len(joins), what="the join acks")
        await node.command(f"leave {others[0].published_as}")
        await node.wait_for(lambda n: len(n.of_kind("ack")) == len(joins) + 1, what="the leave ack")
        assert node.of_kind("ack")[-1]["args"] == [True, others[0].conversation]
        started = now()
        await clients.push_all(server, others + recognition)
        await node.wait_for(lambda n: len(n.events) >= len(recognition), what="the recognition event")
        await asyncio.sleep(QUIET_PERIOD)
        clients.assert_received_exactly(node.events, recognition, received_between=(started, now()))


# --- plain JSON WebSocket through aiohttp ---------------------------------------------


async def receive_json(socket: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = await socket.receive(timeout=clients.CLIENT_TIMEOUT)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    return json.loads(message.data)


async def test_plain_websocket_authenticates_joins_and_receives_every_fixture_event(server, token, pushes):
    """authenticate -> join (either form) -> one ``event`` frame per fixture, carrying the contract payload."""
    async with aiohttp.ClientSession() as session, session.ws_connect(f"ws://127.0.0.1:{server.port}/ws/") as socket:
        await socket.send_json({"type": "authenticate", "token": token, "id": 1})
        assert await receive_json(socket) == {"type": "authenticated", "user": "agent-007", "id": 1}
        for number, fixture in enumerate(clients.one_per_conversation(pushes), start=2):
            await socket.send_json({"type": "join", "conversation": fixture.published_as, "id": number})
            assert await receive_json(socket) == {"type": "joined", "conversation": fixture.conversation, "id": number}
        started = now()
        await clients.push_all(server, pushes)
        frames = [await receive_json(socket) for _ in pushes]
        assert all(frame["type"] == "event" and set(frame) == {"type", "event", "payload", "offset"} for frame in frames)
        assert all(Offset.parse(frame["offset"]) is not None for frame in frames)
        events = [(frame["event"], frame["payload"]) for frame in frames]
        clients.assert_received_exactly(events, pushes, received_between=(started, now()))
        with pytest.raises(asyncio.TimeoutError):
            await socket.receive(timeout=QUIET_PERIOD)


async def test_plain_websocket_forged_token_gets_an_error_frame_and_close_4401(server, forged_token):
    """A bad token is answered with an ``unauthenticated`` error frame, then the server closes with 4401."""
    async with aiohttp.ClientSession() as session, session.ws_connect(f"ws://127.0.0.1:{server.port}/ws/") as socket:
        await socket.send_json({"type": "authenticate", "token": forged_token, "id": "a"})
        error = await receive_json(socket)
        assert (error["type"], error["code"], error["id"]) == ("error", "unauthenticated", "a")
        closing = await socket.receive(timeout=clients.CLIENT_TIMEOUT)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert socket.close_code == 4401
