"""Per-socket offset vectors: a Socket.IO client's one offset says where it is in each conversation it joined.

Each conversation numbers its own events (``events.history``), so the offset
socket.io-client hands back is a vector of positions
(``connector.desktops.offsets``). Checked here: the encoding and its bounds;
a desktop in three conversations recovering exactly what it missed after
interleaved pushes, with python-socketio and with the npm socket.io-client,
through a proxy whose connections are cut; a vector at the join limit; and
offsets that cannot be resumed from (malformed, too long, of the sequence
all conversations once shared, of another epoch), refused as a new session.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator

import pytest
from socketio import packet as sio

from connector import tokens
from connector.desktops import offsets
from connector.desktops.membership import MAX_CONVERSATIONS_PER_CONNECTION
from events.history import Offset, get_history
from testing import clients, processes
from testing.push_bodies import push
from testing.raw_socketio import SocketIOTestClient, client_factory
from testing.sample_events import publish
from testing.tcp_proxy import tcp_proxy

PROJECT = processes.TEST_PROJECT
EPOCH = "0123456789ab"


def names(count: int, label: str = "vector") -> list[str]:
    run = uuid.uuid4().hex[:8]
    return [f"projects/{PROJECT}/conversations/{label}-{run}-{n}" for n in range(count)]


# --- the encoding -------------------------------------------------------------------------------


def test_a_vector_round_trips_and_names_each_conversation_by_its_digest() -> None:
    a, b = names(2)
    vector = offsets.Vector({a: Offset(EPOCH, 3), b: Offset("ba9876543210", 0)})
    text = vector.encoded()
    assert text == f"v1.{offsets.digest(a)}{EPOCH}3.{offsets.digest(b)}ba98765432100"
    given = offsets.parse(text)
    assert given is not None and not given.old
    assert offsets.resolve(given, [b, a]) == {a: Offset(EPOCH, 3), b: Offset("ba9876543210", 0)}
    assert offsets.position(text, a) == Offset(EPOCH, 3)


def test_a_position_moves_forward_only_but_to_another_epoch_and_a_left_conversation_goes() -> None:
    from events.history import Event

    a, b = names(2)
    vector = offsets.Vector({a: Offset(EPOCH, 5), b: Offset(EPOCH, 1)})
    vector.sent(Event(4, EPOCH, a, "k", "{}"))  # an older event (a join's replay): the position stays
    assert vector.positions[a] == Offset(EPOCH, 5)
    vector.sent(Event(1, "ffffffffffff", a, "k", "{}"))  # Redis lost the conversation: its new epoch
    assert vector.positions[a] == Offset("ffffffffffff", 1)
    vector.forget(b)
    vector.sent(Event(9, EPOCH, b, "k", "{}"))  # queued before the leave: not counted again
    assert set(vector.positions) == {a} and offsets.digest(b) not in vector.encoded()


def test_a_vector_at_the_join_limit_parses_and_one_past_it_does_not() -> None:
    conversations = names(MAX_CONVERSATIONS_PER_CONNECTION)
    full = offsets.Vector({c: Offset(EPOCH, 10**15 - 1) for c in conversations}).encoded()
    assert len(full) == offsets.MAX_LENGTH
    assert offsets.resolve(offsets.parse(full), conversations) == {c: Offset(EPOCH, 10**15 - 1)
                                                                    for c in conversations}
    short = offsets.Vector({c: Offset(EPOCH, 1) for c in [*conversations, *names(1)]}).encoded()
    assert len(short) <= offsets.MAX_LENGTH and offsets.parse(short) is None  # 65 entries
    assert offsets.parse(full + ".0") is None  # over the length bound


@pytest.mark.parametrize("text", [
    "", "v1x", "v1.", "v1..", "v2", "v1.0123abcd" + EPOCH, "v1.0123ABCD" + EPOCH + "1",
    "v1.0123abcd" + EPOCH + "1" + ".0123abcd" + EPOCH + "2", "v1.0123abcd" + EPOCH + "1" * 16,
    "v1.0123abcd" + EPOCH + "-1", "yesterday", "v1" + "." * 3000, None, 5, ["v1"],
])
def test_anything_else_is_refused(text) -> None:
    assert offsets.parse(text) is None


def test_an_offset_of_the_sequence_all_conversations_once_shared_is_recognised_as_old() -> None:
    given = offsets.parse("1a2b3c4d-57")
    assert given is not None and given.old and not given.positions
    assert not offsets.is_vector("1a2b3c4d-57")


# Two names whose 32-bit digests are equal (found by search): a session that joined both cannot tell them apart.
COLLIDING = ("projects/p/conversations/c72427", "projects/p/conversations/c113299")


def test_two_conversations_of_one_session_alike_in_digest_make_the_offset_unusable() -> None:
    a, b = COLLIDING
    assert offsets.digest(a) == offsets.digest(b)
    text = offsets.Vector({a: Offset(EPOCH, 1)}).encoded()
    assert offsets.resolve(offsets.parse(text), [a]) is not None  # alone, the digest names a
    assert offsets.resolve(offsets.parse(text), [a, b]) is None


# --- recovery through the real application (the suite's Redis) -------------------------------


async def connect(client: SocketIOTestClient, auth: dict) -> sio.Packet:
    await client.open()
    await client.send("40" + json.dumps({"token": tokens.issue_token(user="alice"), **auth}))
    return await client.receive_packet()


async def events_of(client: SocketIOTestClient, count: int) -> list[str]:
    """The next ``count`` conversation events' message ids."""
    return [(await client.receive_event())[1]["message_id"] for _ in range(count)]


@pytest.mark.usefixtures("redis_kind")  # on a cluster: the conversations on every shard
async def test_a_desktop_at_the_join_limit_recovers_exactly_what_it_missed() -> None:
    """64 conversations joined, an event received in each: the last offset names all 64 (within the length
    bound), and recovering with it replays only the event pushed while away."""
    conversations = names(MAX_CONVERSATIONS_PER_CONNECTION, "limit")
    async with client_factory() as make:
        first = make()
        pid = (await connect(first, {})).data["pid"]
        for conversation in conversations:
            assert await first.call("join-conversation", conversation) == [True, conversation]
        sent = [(await publish(conversation))["message_id"] for conversation in conversations]
        assert await events_of(first, len(conversations)) == sent
        offset = first.last_offset
        assert len(offset) <= offsets.MAX_LENGTH
        assert offsets.resolve(offsets.parse(offset), conversations).keys() == set(conversations)
        await first.communicator.disconnect()  # dropped: the session waits to be recovered
        missed = (await publish(conversations[10]))["message_id"]
        again = make()
        answer = await connect(again, {"pid": pid, "offset": offset})
        assert answer.data["pid"] == pid
        assert await events_of(again, 1) == [missed]
        assert await again.communicator.receive_nothing(0.3)
        assert offsets.position(again.last_offset, conversations[10]).seq == 2


def forged_epoch(offset: str, conversation: str) -> str:
    position = offsets.position(offset, conversation)
    return offset.replace(f"{offsets.digest(conversation)}{position.epoch}", f"{offsets.digest(conversation)}{EPOCH}")


@pytest.mark.parametrize("kind", ["malformed", "oversized", "old", "other epoch"])
async def test_an_offset_that_cannot_be_resumed_from_gives_a_new_session(kind) -> None:
    """Refused as unrecoverable, as an offset past the kept history is: a new pid, nothing replayed. With the
    old form or another epoch of the conversation, every event of its current epoch came after the client's
    last one: a join again replays them (as after Redis lost its data); otherwise a join starts at the end."""
    (conversation,) = names(1, "refused")
    async with client_factory() as make:
        first = make()
        pid = (await connect(first, {})).data["pid"]
        assert await first.call("join-conversation", conversation) == [True, conversation]
        seen = (await publish(conversation))["message_id"]
        assert await events_of(first, 1) == [seen]
        offset = {
            "malformed": first.last_offset + "x",
            "oversized": first.last_offset + f".0123abcd{EPOCH}1" * MAX_CONVERSATIONS_PER_CONNECTION,
            "old": "1a2b3c4d-1",
            "other epoch": forged_epoch(first.last_offset, conversation),
        }[kind]
        await first.communicator.disconnect()
        missed = (await publish(conversation))["message_id"]
        again = make()
        answer = await connect(again, {"pid": pid, "offset": offset})
        assert answer.packet_type == sio.CONNECT and answer.data["pid"] != pid
        assert await again.communicator.receive_nothing(0.3)
        assert await again.call("join-conversation", conversation) == [True, conversation]
        if kind in ("old", "other epoch"):
            assert await events_of(again, 2) == [seen, missed]
        assert await again.communicator.receive_nothing(0.3)
        live = (await publish(conversation))["message_id"]
        assert await events_of(again, 1) == [live]


@pytest.mark.usefixtures("redis_kind")  # on a cluster: the conversations on every shard
async def test_positions_of_conversations_joined_in_a_session_are_where_each_join_started() -> None:
    """The session record holds each conversation's join start (its epoch and seq): a client whose offset does
    not name a conversation (no event since its join) resumes it from there."""
    a, b = names(2, "record")
    await publish(b)
    async with client_factory() as make:
        first = make()
        pid = (await connect(first, {})).data["pid"]
        assert await first.call("join-conversation", a) == [True, a]
        seen = (await publish(a))["message_id"]
        assert await events_of(first, 1) == [seen]
        assert await first.call("join-conversation", b) == [True, b]
        offset = first.last_offset  # from before the join of b: it does not name b
        assert offsets.position(offset, b) is None
        await first.communicator.disconnect()
        missed = [(await publish(c))["message_id"] for c in (b, a, b)]
        again = make()
        assert (await connect(again, {"pid": pid, "offset": offset})).data["pid"] == pid
        assert sorted(await events_of(again, 3)) == sorted(missed)
        assert await again.communicator.receive_nothing(0.3)
        assert (await get_history().position(b)).seq == offsets.position(again.last_offset, b).seq == 3


# --- three conversations, interleaved pushes, real clients across a cut connection ------------------------


@pytest.fixture(scope="module")
def vector_redis() -> Iterator[processes.RedisAddress]:
    with processes.redis_server(private=True) as address:
        yield address


def by_conversation(received: list[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for conversation, message_id in received:
        grouped.setdefault(conversation, []).append(message_id)
    return grouped


async def test_python_socketio_in_three_conversations_recovers_exactly_after_interleaved_pushes(
        settings, vector_redis) -> None:
    conversations = names(3, "python")
    token = clients.server_token(settings, user="agent")
    before = [(conversations[n], f"before-{i}") for i, n in enumerate((0, 1, 2, 0))]
    missed = [(conversations[n], f"missed-{i}") for i, n in enumerate((1, 2, 0, 1, 2, 1))]
    with processes.service_server(role="interceptor", redis=vector_redis) as interceptor, \
            processes.service_server(role="connector", redis=vector_redis) as connector:
        async with tcp_proxy(connector.port) as proxy:
            desktop = clients.SocketIODesktop()
            await desktop.connect(proxy, token)
            for conversation in conversations:
                assert await desktop.join(conversation) == (True, conversation)
            for conversation, message_id in before:
                await push(interceptor, conversation, message_id)
            await clients.wait_until(lambda: len(desktop.events) == len(before), what="the events before")
            # The last event was of one conversation; the offset still says where the desktop is in the others.
            assert offsets.resolve(offsets.parse(desktop.offsets[-1]), conversations).keys() == set(conversations)
            async def push_missed() -> None:
                for conversation, message_id in missed:
                    await push(interceptor, conversation, message_id)

            back = await desktop.cut_then_recover(proxy, proxy, token, push_missed)
            try:
                assert back.pid == desktop.pid  # recovered
                await clients.wait_until(lambda: len(back.events) >= len(missed), what="the missed events")
                await asyncio.sleep(0.5)  # a duplicate would show by now
                received = [(payload["conversation_name"], payload["message_id"]) for _, payload in back.events]
                assert by_conversation(received) == by_conversation(missed)
                await push(interceptor, conversations[0], "live")
                await clients.wait_until(lambda: back.events[-1][1]["message_id"] == "live", what="a live event")
                assert len(back.events) == len(missed) + 1
            finally:
                await back.disconnect()
                await desktop.disconnect()


@pytest.mark.parametrize("transports", ["websocket", "polling"])
async def test_node_socket_io_client_in_three_conversations_recovers_exactly_after_interleaved_pushes(
        settings, vector_redis, transports) -> None:
    conversations = names(3, "node")
    token = clients.server_token(settings, user="agent")
    before = [(conversations[n], f"before-{i}") for i, n in enumerate((0, 1, 2, 0))]
    missed = [(conversations[n], f"missed-{i}") for i, n in enumerate((1, 2, 0, 1, 2, 1))]
    with processes.service_server(role="interceptor", redis=vector_redis) as interceptor, \
            processes.service_server(role="connector", redis=vector_redis, SOCKETIO_PING_INTERVAL="2",
                                     SOCKETIO_PING_TIMEOUT="2") as connector:
        async with tcp_proxy(connector.port) as proxy, clients.node_desktop(
                proxy, token=token, join=tuple(conversations), reconnect=True, timeout=60,
                transports=transports) as node:
            await node.wait_for(lambda n: len(n.of_kind("ack")) == 3, what="the joins")
            for conversation, message_id in before:
                await push(interceptor, conversation, message_id)
            await node.wait_for(lambda n: len(n.events) == len(before), what="the events before")
            proxy.backend_port = processes.free_port()  # nothing there: the client stays away meanwhile
            proxy.cut()
            for conversation, message_id in missed:
                await push(interceptor, conversation, message_id)
            proxy.backend_port = connector.port
            await node.wait_for(lambda n: len(n.events) >= len(before) + len(missed), what="the missed events")
            await asyncio.sleep(1.0)  # a duplicate would show by now
            assert [line["recovered"] for line in node.of_kind("connected")] == [False, True]
            received = [(payload["conversation_name"], payload["message_id"]) for _, payload in node.events]
            assert by_conversation(received[len(before):]) == by_conversation(missed)
            last = offsets.resolve(offsets.parse(node.offsets[-1]), conversations)
            assert {c: at.seq for c, at in last.items()} == {conversations[0]: 3, conversations[1]: 4,
                                                            conversations[2]: 3}
