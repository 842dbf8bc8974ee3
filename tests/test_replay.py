"""History on join, resuming after an offset, and de-duplication, through the real consumers and push views.

The plain protocol (``/ws/``) asks with join options (``history``, ``after``);
Socket.IO takes the same as a second ``join-conversation`` argument, and
``SOCKETIO_JOIN_HISTORY`` decides for clients that cannot ask. Pushes go
through the real interceptor view, so a Pub/Sub redelivery is the same
envelope posted again.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from channels.testing import HttpCommunicator
from socketio import packet as sio

from aa_site.asgi import application
from connector.desktops import replay_budget
from events.history import Offset
from events.kinds import EventKind
from events.publish import publish as publish_event
from testing.event_listener import listen
from testing.plain_ws_client import PlainTestClient
from testing.push_bodies import push_body
from testing.raw_socketio import SHORT_NAME, SocketIOTestClient, client_factory, open_connected
from testing.sample_events import publish

# On a standalone Redis and on a cluster (the conversations' keys and channels on several shards).
pytestmark = pytest.mark.usefixtures("redis_kind")

OTHER = "projects/p/conversations/replay-other"
QUIET = 0.3  # how long to listen for something that must not come


async def post_push(conversation: str, message_id: str, event: str = EventKind.NEW_MESSAGE) -> int:
    body = push_body({"conversation": conversation, "text": f"message {message_id}"}, messageId=message_id)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    response = await HttpCommunicator(application, "POST", f"/{event}", body=body, headers=headers).get_response(10)
    return response["status"]


@pytest.fixture
async def plain() -> Any:
    made: list[PlainTestClient] = []

    async def make(user: str = "alice") -> PlainTestClient:
        from connector import tokens

        client = PlainTestClient()
        made.append(client)
        await client.open()
        assert (await client.request({"type": "authenticate", "token": tokens.issue_token(user=user)}))["type"] == (
            "authenticated"
        )
        return client

    yield make
    for client in made:
        await client.communicator.disconnect(timeout=5)


async def nothing_more(client: PlainTestClient) -> None:
    assert await client.communicator.receive_nothing(QUIET)


# --- de-duplication ------------------------------------------------------------------------------


async def test_a_push_redelivered_five_times_reaches_the_desktop_once() -> None:
    listener = await listen(SHORT_NAME)
    assert [await post_push(SHORT_NAME, "dup-1") for _ in range(5)] == [204] * 5
    assert (await listener.receive())["payload"]["message_id"] == "dup-1"
    assert (await post_push(SHORT_NAME, "dup-2")) == 204
    # The next event is the next message, not another copy of the first.
    assert (await listener.receive())["payload"]["message_id"] == "dup-2"


async def test_concurrent_redeliveries_are_accepted_once() -> None:
    listener = await listen(SHORT_NAME)
    statuses = await asyncio.gather(*(post_push(SHORT_NAME, "race-1") for _ in range(10)))
    assert statuses == [204] * 10
    assert (await listener.receive())["payload"]["message_id"] == "race-1"
    with pytest.raises(asyncio.TimeoutError):
        await listener.receive(QUIET)


# --- the plain protocol ----------------------------------------------------------------------------


async def test_plain_join_without_options_gets_no_history(plain) -> None:
    await publish(SHORT_NAME)
    client = await plain()
    joined = await client.request({"type": "join", "conversation": SHORT_NAME})
    assert joined == {"type": "joined", "conversation": SHORT_NAME}
    await nothing_more(client)


async def test_plain_join_with_history_replays_what_came_before_then_live_events(plain) -> None:
    before = [await publish(SHORT_NAME, kind) for kind in (EventKind.NEW_MESSAGE, EventKind.HUMAN_AGENT_ASSISTANT)]
    await publish(OTHER)  # another conversation's event is not replayed
    client = await plain()
    joined = await client.request({"type": "join", "conversation": SHORT_NAME, "history": True, "id": 9})
    assert joined == {"type": "joined", "conversation": SHORT_NAME, "replayed": 2, "complete": True, "id": 9}
    assert [(await client.receive())["payload"] for _ in before] == before
    live = await publish(SHORT_NAME)
    assert (await client.receive())["payload"] == live
    await nothing_more(client)


async def test_plain_resume_after_an_offset_sends_exactly_what_came_after(plain) -> None:
    client = await plain()
    await client.request({"type": "join", "conversation": SHORT_NAME})
    first = await publish(SHORT_NAME)
    assert (await client.receive())["payload"] == first
    seen = client.last_offset
    await client.communicator.disconnect()
    missed = [await publish(SHORT_NAME) for _ in range(3)]
    again = await plain()
    joined = await again.request({"type": "join", "conversation": SHORT_NAME, "after": seen})
    assert (joined["replayed"], joined["complete"]) == (3, True)
    assert [(await again.receive())["payload"] for _ in missed] == missed
    await nothing_more(again)


async def test_plain_resume_past_the_kept_history_says_so(plain, settings) -> None:
    settings.EVENT_HISTORY_MAX_EVENTS = 10
    client = await plain()
    await client.request({"type": "join", "conversation": SHORT_NAME})
    await publish(SHORT_NAME)
    await client.receive()
    seen = client.last_offset
    await client.communicator.disconnect()
    for _ in range(15):
        await publish(SHORT_NAME)
    again = await plain()
    joined = await again.request({"type": "join", "conversation": SHORT_NAME, "after": seen})
    assert (joined["replayed"], joined["complete"]) == (10, False)
    gap = await again.receive()
    assert (gap["type"], gap["conversation"]) == ("history_gap", SHORT_NAME)
    assert [(await again.receive())["type"] for _ in range(10)] == ["event"] * 10


async def test_plain_resume_takes_each_conversation_s_own_offset(plain) -> None:
    """A client in two conversations resumes each after the last offset it got in it: what each missed, once."""
    client = await plain()
    for conversation in (SHORT_NAME, OTHER):
        await client.request({"type": "join", "conversation": conversation})
    last: dict[str, str] = {}
    for conversation in (SHORT_NAME, OTHER, SHORT_NAME):
        await publish(conversation)
        frame = await client.receive()
        last[frame["payload"]["conversation_name"]] = client.last_offset
    await client.communicator.disconnect()
    missed = {conversation: [await publish(conversation) for _ in range(count)]
              for conversation, count in ((OTHER, 2), (SHORT_NAME, 1))}
    again = await plain()
    for conversation in (SHORT_NAME, OTHER):
        joined = await again.request({"type": "join", "conversation": conversation, "after": last[conversation]})
        assert (joined["replayed"], joined["complete"]) == (len(missed[conversation]), True)
        assert [(await again.receive())["payload"] for _ in missed[conversation]] == missed[conversation]
    await nothing_more(again)


async def test_plain_resume_after_an_offset_of_the_old_shared_sequence_says_the_history_has_a_gap(plain) -> None:
    """An offset of the sequence all conversations once shared names no epoch of the conversation: the replay
    is the conversation's current epoch from its start, and the answer says it may not be whole."""
    stored = [await publish(SHORT_NAME) for _ in range(2)]
    client = await plain()
    joined = await client.request({"type": "join", "conversation": SHORT_NAME, "after": "1a2b3c4d-1"})
    assert (joined["replayed"], joined["complete"]) == (2, False)
    assert (await client.receive())["type"] == "history_gap"
    assert [(await client.receive())["payload"] for _ in stored] == stored


async def test_plain_history_in_pages_with_live_events_meanwhile_arrives_once_in_order(plain, settings) -> None:
    """Three events a page: the answer counts the whole replay; live events of the replayed conversation pushed
    while it pages follow it, and another conversation's arrive too, each once."""
    settings.REPLAY_PAGE_EVENTS = 3
    before = [await publish(SHORT_NAME) for _ in range(10)]
    client = await plain()
    await client.request({"type": "join", "conversation": OTHER})
    joined = await client.request({"type": "join", "conversation": SHORT_NAME, "history": True})
    assert (joined["replayed"], joined["complete"]) == (10, True)
    await asyncio.gather(publish(SHORT_NAME), publish(OTHER), publish(SHORT_NAME))
    offsets: dict[str, list[int]] = {SHORT_NAME: [], OTHER: []}
    for _ in range(len(before) + 3):
        frame = await client.receive()
        offsets[frame["payload"]["conversation_name"]].append(int(client.last_offset.rpartition("-")[2]))
    await nothing_more(client)
    assert len(offsets[SHORT_NAME]) == 12 and offsets[SHORT_NAME] == sorted(set(offsets[SHORT_NAME]))
    assert len(offsets[OTHER]) == 1


async def test_a_history_join_waiting_for_the_replay_budget_is_answered_and_loses_nothing_kept(plain, settings) -> None:
    """The process's replay budget is spent (another holder has it all): the join is answered at once and the
    desktop's pings too; another desktop's live events flow; the replay waits. Its conversation, at its history's
    bound, trims three events meanwhile: the desktop asked for the history, so it gets what is kept then, in
    order, then the live events of its other conversation, each once."""
    settings.EVENT_HISTORY_MAX_EVENTS = 10
    settings.REPLAY_PAGE_EVENTS = 3
    for _ in range(10):
        await publish(SHORT_NAME)
    client, watcher = await plain(), await plain("bob")
    await client.request({"type": "join", "conversation": OTHER})
    await watcher.request({"type": "join", "conversation": SHORT_NAME})
    spent = await replay_budget.get_budget().reserve(2**62, 2**62)
    try:
        joined = await client.request({"type": "join", "conversation": SHORT_NAME, "history": True})
        assert (joined["type"], joined["replayed"], joined["complete"]) == ("joined", 10, True)
        assert (await client.request({"type": "ping"}))["type"] == "pong"
        await publish(OTHER)
        for _ in range(3):
            await publish(SHORT_NAME)  # the three oldest go
        assert [(await watcher.receive())["type"] for _ in range(3)] == ["event"] * 3
        await nothing_more(client)  # its replay waits, and what it keeps back waits behind it
    finally:
        spent.release()
    seqs: dict[str, list[int]] = {SHORT_NAME: [], OTHER: []}
    for _ in range(11):
        frame = await client.receive()
        seqs[frame["payload"]["conversation_name"]].append(Offset.parse(client.last_offset).seq)
    await nothing_more(client)
    assert seqs == {SHORT_NAME: list(range(4, 14)), OTHER: [1]}
    assert (replay_budget.get_budget().bytes, replay_budget.get_budget().events) == (0, 0)


async def test_a_resume_whose_history_is_trimmed_past_it_while_waiting_for_the_budget_is_closed_4429(
        plain, settings) -> None:
    """A replay that was whole when asked for, but lost events to the history's bound before its turn came, is
    not passed off as whole: the desktop is closed as too far behind (4429), and its next resume says so."""
    settings.EVENT_HISTORY_MAX_EVENTS = 10
    client = await plain()
    await client.request({"type": "join", "conversation": SHORT_NAME})
    for _ in range(2):
        await publish(SHORT_NAME)
        await client.receive()
    seen = client.last_offset
    await client.communicator.disconnect()
    for _ in range(8):
        await publish(SHORT_NAME)
    spent = await replay_budget.get_budget().reserve(2**62, 2**62)
    again = await plain()
    try:
        joined = await again.request({"type": "join", "conversation": SHORT_NAME, "after": seen})
        assert (joined["replayed"], joined["complete"]) == (8, True)
        for _ in range(3):
            await publish(SHORT_NAME)  # events 1 to 3 go: event 3 was one it had not got
    finally:
        spent.release()
    assert await again.close_code() == 4429
    assert (replay_budget.get_budget().bytes, replay_budget.get_budget().events) == (0, 0)


async def test_a_resume_after_a_waiting_history_join_of_its_conversation_is_closed_4429_when_trimmed_past(
        plain, settings) -> None:
    """A history join's replay waits for the budget; the desktop leaves the conversation and joins it again,
    resuming after an offset (whole when asked for). Trimmed past that offset before the page's turn comes, the
    resume is closed 4429, as any resume is: what the history join would have accepted (reading from the
    oldest event kept) does not carry over to the resume, which would have had a hole."""
    settings.EVENT_HISTORY_MAX_EVENTS = 10
    client = await plain()
    await client.request({"type": "join", "conversation": SHORT_NAME})
    for _ in range(2):
        await publish(SHORT_NAME)
        await client.receive()
    seen = client.last_offset
    await client.communicator.disconnect()
    for _ in range(8):
        await publish(SHORT_NAME)
    spent = await replay_budget.get_budget().reserve(2**62, 2**62)
    again = await plain()
    try:
        joined = await again.request({"type": "join", "conversation": SHORT_NAME, "history": True})
        assert (joined["replayed"], joined["complete"]) == (10, True)
        assert (await again.request({"type": "leave", "conversation": SHORT_NAME}))["type"] == "left"
        joined = await again.request({"type": "join", "conversation": SHORT_NAME, "after": seen})
        assert (joined["replayed"], joined["complete"]) == (8, True)
        for _ in range(3):
            await publish(SHORT_NAME)  # events 1 to 3 go: event 3 was one it had not got
    finally:
        spent.release()
    assert await again.close_code() == 4429
    assert (replay_budget.get_budget().bytes, replay_budget.get_budget().events) == (0, 0)


async def test_a_connection_that_ends_while_its_page_is_being_written_gives_the_page_back() -> None:
    """The desktop's transport stops taking frames while a replay page is written (a desktop that stopped
    reading), then the connection ends: what the page holds of the process's budget goes back, written or not."""
    from channels.testing import WebsocketCommunicator

    from connector import tokens

    for _ in range(3):
        await publish(SHORT_NAME)
    stalled, released = asyncio.Event(), asyncio.Event()

    async def stalling_transport(scope, receive, send):
        async def send_until_stalled(message):
            if message["type"] == "websocket.send" and '"type":"event"' in message.get("text", ""):
                stalled.set()
                await released.wait()  # never set: the desktop reads no more
            await send(message)

        await application(scope, receive, send_until_stalled)

    communicator = WebsocketCommunicator(stalling_transport, "/ws/")
    assert (await communicator.connect())[0]
    await communicator.send_json_to({"type": "authenticate", "token": tokens.issue_token(user="alice")})
    assert (await communicator.receive_json_from(5))["type"] == "authenticated"
    await communicator.send_json_to({"type": "join", "conversation": SHORT_NAME, "history": True})
    assert (await communicator.receive_json_from(5))["type"] == "joined"
    await asyncio.wait_for(stalled.wait(), 10)
    budget = replay_budget.get_budget()
    assert (budget.bytes, budget.events) != (0, 0)  # the page read, its first event being written
    await communicator.disconnect(timeout=5)
    assert (budget.bytes, budget.events) == (0, 0)


async def test_a_history_join_of_a_conversation_already_sent_is_closed_4429_when_trimmed_past_what_was_sent(
        plain, settings) -> None:
    """A desktop joined to a conversation, and sent its events, joins it again asking for its history while the
    budget is spent: its live events are left to the replay meanwhile. Trimmed past the last event it was sent
    before the page's turn comes, it is closed 4429 (an event it never got is gone), not handed the oldest kept
    and on as if its replay had just begun."""
    settings.EVENT_HISTORY_MAX_EVENTS = 10
    client = await plain()
    await client.request({"type": "join", "conversation": SHORT_NAME})
    for _ in range(2):
        await publish(SHORT_NAME)
        await client.receive()
    spent = await replay_budget.get_budget().reserve(2**62, 2**62)
    try:
        joined = await client.request({"type": "join", "conversation": SHORT_NAME, "history": True})
        assert (joined["type"], joined["complete"]) == ("joined", True)
        for _ in range(11):
            await publish(SHORT_NAME)  # events 1 to 3 go: event 3 was one it had not got
    finally:
        spent.release()
    assert await client.close_code() == 4429
    assert (replay_budget.get_budget().bytes, replay_budget.get_budget().events) == (0, 0)


async def budget_waiters(count: int) -> None:
    """Wait (a generous while at most) until ``count`` pages wait their turn for the process's replay budget."""
    async def waiting() -> None:
        while replay_budget.get_budget().waiting != count:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(waiting(), 10)


async def test_live_events_of_a_replay_waiting_again_for_a_share_its_first_events_size_are_left_to_the_history(
        plain, settings) -> None:
    """The replay's first event is over its page's share: the read takes none and the page waits again, for a
    share that size. Meanwhile it is not reading: its conversation's live events are left to the history (the
    read, once its turn comes, finds them there), not kept back against the live queue's bounds, which they
    would pass (4429) though the desktop reads everything."""
    settings.WEBSOCKET_SEND_QUEUE_LIMIT = 5
    settings.REPLAY_PAGE_BYTES = 4096
    big = {"conversation_name": SHORT_NAME, "data": json.dumps({"text": "x" * 10_000}),
           "data_type": EventKind.NEW_MESSAGE, "message_id": "big"}
    await publish_event(conversation_name=SHORT_NAME, event=EventKind.NEW_MESSAGE, payload=big)
    budget = replay_budget.get_budget()
    spent = await budget.reserve(budget.max_bytes - 4096, 1)  # a page's share fits, the big event's does not
    client = await plain()
    try:
        joined = await client.request({"type": "join", "conversation": SHORT_NAME, "history": True})
        assert (joined["type"], joined["replayed"]) == ("joined", 1)
        await budget_waiters(1)  # its first read found the event too big, and it waits again
        for _ in range(6):
            await publish(SHORT_NAME)
    finally:
        spent.release()
    seqs = []
    for _ in range(7):
        frame = await client.receive()
        assert frame["type"] == "event", frame
        seqs.append(Offset.parse(client.last_offset).seq)
    assert seqs == list(range(1, 8))
    await nothing_more(client)
    assert (budget.bytes, budget.events) == (0, 0)


async def test_plain_resume_with_an_offset_that_is_not_ours_is_refused(plain) -> None:
    client = await plain()
    refusal = await client.request({"type": "join", "conversation": SHORT_NAME, "after": "yesterday", "id": 3})
    assert (refusal["type"], refusal["code"], refusal["id"]) == ("error", "invalid_offset", 3)


async def test_plain_events_carry_increasing_offsets_in_each_conversation(plain) -> None:
    """Each conversation numbers its own events, in its own epoch: the offset an event carries is its place in
    its conversation (what a join's ``after`` takes back)."""
    client = await plain()
    await client.request({"type": "join", "conversation": SHORT_NAME})
    await client.request({"type": "join", "conversation": OTHER})
    offsets = []
    for conversation in (SHORT_NAME, OTHER, SHORT_NAME):
        await publish(conversation)
        await client.receive()
        offsets.append(Offset.parse(client.last_offset))
    assert [offset.seq for offset in offsets] == [1, 1, 2]
    assert offsets[0].epoch == offsets[2].epoch != offsets[1].epoch


# --- Socket.IO joins -----------------------------------------------------------------------------


async def socketio_client(make) -> SocketIOTestClient:
    return await open_connected(make)


async def test_socketio_join_with_history_option_replays_after_the_ack() -> None:
    payload = await publish(SHORT_NAME)
    async with client_factory() as make:
        client = await socketio_client(make)
        assert await client.call("join-conversation", SHORT_NAME, {"history": True}) == [True, SHORT_NAME]
        assert await client.receive_event() == [EventKind.NEW_MESSAGE, payload]


async def test_socketio_leaving_the_namespace_while_a_replay_waits_for_the_budget_gives_its_page_back() -> None:
    """The client leaves ``/`` (DISCONNECT) while its history join's page waits for the budget, and keeps its
    connection: the page, read once its turn comes, belongs to no replay any more; it is sent to nobody and gives
    back what it reserved (else the process's budget shrinks by a page for good)."""
    for _ in range(3):
        await publish(SHORT_NAME)
    budget = replay_budget.get_budget()
    spent = await budget.reserve(2**62, 2**62)
    async with client_factory() as make:
        client = await socketio_client(make)
        try:
            assert await client.call("join-conversation", SHORT_NAME, {"history": True}) == [True, SHORT_NAME]
            await budget_waiters(1)
            await client.send("41")
            assert await client.communicator.receive_nothing(QUIET)
        finally:
            spent.release()

        async def given_back() -> None:
            while (budget.bytes, budget.events, budget.waiting) != (0, 0, 0):
                await asyncio.sleep(0.01)

        await asyncio.wait_for(given_back(), 10)
        assert await client.communicator.receive_nothing(QUIET)


async def test_socketio_stock_join_gets_no_history_by_default() -> None:
    await publish(SHORT_NAME)
    async with client_factory() as make:
        client = await socketio_client(make)
        assert await client.call("join-conversation", SHORT_NAME) == [True, SHORT_NAME]
        assert await client.communicator.receive_nothing(QUIET)


async def test_socketio_join_history_setting_all_replays_for_stock_joins(settings) -> None:
    settings.SOCKETIO_JOIN_HISTORY = "all"
    payload = await publish(SHORT_NAME)
    async with client_factory() as make:
        client = await socketio_client(make)
        assert await client.call("join-conversation", SHORT_NAME) == [True, SHORT_NAME]
        assert await client.receive_event() == [EventKind.NEW_MESSAGE, payload]


async def test_socketio_connect_answer_carries_a_private_session_id() -> None:
    async with client_factory() as make:
        client = make()
        await client.open()
        from connector import tokens

        packet = await client.connect_namespace(tokens.issue_token(user="alice"))
        assert isinstance(packet.data["pid"], str) and len(packet.data["pid"]) >= 20
        assert packet.data["pid"] != packet.data["sid"]


async def test_socketio_recovery_takes_a_valid_token_of_the_session_s_user() -> None:
    """A pid alone recovers nothing: with another user's token the client gets a session of its own, with an
    expired token it is refused, and neither touches the session, which its own user then recovers."""
    from connector import tokens
    from testing.tokens import short_lived_token

    async def connect(client: SocketIOTestClient, auth: dict[str, Any]) -> Any:
        await client.open()
        await client.send("40" + json.dumps(auth))
        while (packet := await client.receive_packet()).packet_type == sio.EVENT:
            pass  # "unauthenticated", before a refusal
        return packet

    async with client_factory() as make:
        first = make()
        pid = (await connect(first, {"token": tokens.issue_token(user="alice")})).data["pid"]
        assert await first.call("join-conversation", SHORT_NAME) == [True, SHORT_NAME]
        await first.communicator.disconnect()  # dropped: the session waits to be recovered
        payload = await publish(SHORT_NAME)
        stranger = make()
        answer = await connect(stranger, {"token": tokens.issue_token(user="mallory"), "pid": pid})
        assert answer.packet_type == sio.CONNECT and answer.data["pid"] != pid
        assert await stranger.communicator.receive_nothing(QUIET)  # not in alice's conversation
        stale = make()
        answer = await connect(stale, {"token": short_lived_token(-60, user="alice"), "pid": pid})
        assert answer.packet_type == sio.CONNECT_ERROR
        owner = make()
        answer = await connect(owner, {"token": tokens.issue_token(user="alice"), "pid": pid})
        assert (answer.packet_type, answer.data["pid"]) == (sio.CONNECT, pid)
        assert await owner.receive_event() == [EventKind.NEW_MESSAGE, payload]


async def test_socketio_without_recovery_sends_no_pid_and_no_offsets(settings) -> None:
    settings.SOCKETIO_RECOVERY_SECONDS = 0
    async with client_factory() as make:
        client = make()
        await client.open()
        from connector import tokens

        packet = await client.connect_namespace(tokens.issue_token(user="alice"))
        assert "pid" not in packet.data
        await client.call("join-conversation", SHORT_NAME)
        payload = await publish(SHORT_NAME)
        frame = json.loads((await client.receive())[2:])
        assert frame == [EventKind.NEW_MESSAGE, payload]
