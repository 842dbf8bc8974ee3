"""``events.history``: append with de-duplication, replay in order, and honest gaps, on real Redis and in process.

Each test runs against ``RedisHistory`` (the suite's Redis, a key prefix per
test) and ``MemoryHistory`` (development mode), which must keep the same promises.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError

from events import redis_client
from events.history import (
    EPOCH_HEX_DIGITS,
    SEQUENCE_SECONDS,
    MemoryHistory,
    Offset,
    RedisHistory,
    channel_name,
    conversation_key,
    conversation_keys,
    decode_published,
)
from testing import processes

# Every test on a standalone Redis and again on a Redis Cluster (each conversation's keys in its own slot).
pytestmark = pytest.mark.usefixtures("redis_kind")

A = "projects/p/conversations/a"
B = "projects/p/conversations/b"


@pytest.fixture(params=["redis", "memory"])
async def history(request, settings):
    settings.EVENT_HISTORY_MAX_EVENTS = 10
    if request.param == "redis":
        return RedisHistory(redis_client.get_redis())
    return MemoryHistory()


async def append(history, conversation: str, message_id: str | None, kind: str = "new-message-event"):
    return await history.append(
        conversation=conversation, kind=kind, message_id=message_id, payload_json=json.dumps({"id": message_id})
    )


async def test_each_conversation_numbers_its_events_in_its_own_sequence_and_epoch(history) -> None:
    first, second, third = [await append(history, c, m) for c, m in ((A, "1"), (B, "2"), (A, "3"))]
    assert [first.offset.seq, second.offset.seq, third.offset.seq] == [1, 1, 2]
    assert first.offset.epoch == third.offset.epoch != second.offset.epoch
    assert all(len(a.offset.epoch) == EPOCH_HEX_DIGITS for a in (first, second))
    assert not any(appended.duplicate for appended in (first, second, third))


async def test_a_redelivered_message_id_is_a_duplicate_with_the_first_offset(history) -> None:
    original = await append(history, A, "m-1")
    again = [await append(history, A, "m-1") for _ in range(4)]
    assert all(appended.duplicate and appended.offset == original.offset for appended in again)
    replay = await history.read({A: 0}, epoch=None)
    assert [event.seq for event in replay.events] == [original.offset.seq]


async def test_the_same_message_id_of_another_kind_or_conversation_is_not_a_duplicate(history) -> None:
    await append(history, A, "m-1")
    assert not (await append(history, A, "m-1", kind="human-agent-assistant-event")).duplicate
    assert not (await append(history, B, "m-1")).duplicate


async def test_events_without_a_message_id_are_never_duplicates(history) -> None:
    assert not (await append(history, A, None)).duplicate
    assert not (await append(history, A, None)).duplicate


async def test_read_gives_every_event_after_each_position_conversation_by_conversation(history) -> None:
    for conversation, message_id in ((A, "1"), (B, "2"), (A, "3"), (B, "4"), (A, "5")):
        await append(history, conversation, message_id)
    replay = await history.read({A: 1, B: 0}, epoch=None)
    assert [(event.conversation, event.seq) for event in replay.events] == [(A, 2), (A, 3), (B, 1), (B, 2)]
    assert json.loads(replay.events[0].payload_json) == {"id": "3"}
    assert replay.complete
    assert {c: at.seq for c, at in replay.positions.items()} == {A: 3, B: 2}
    assert replay.positions[A].epoch == replay.events[0].epoch


async def test_read_past_the_trimmed_history_is_incomplete(history) -> None:
    """With 10 kept per conversation, resuming after event 2 of 30 cannot be whole; after 25 it can."""
    for number in range(1, 31):
        await append(history, A, str(number))
    trimmed = await history.read({A: 2}, epoch=None)
    assert not trimmed.complete
    assert [event.seq for event in trimmed.events] == list(range(21, 31))
    assert trimmed.trimmed == {A} and not trimmed.stale
    assert (await history.read({A: 25}, epoch=None)).complete


async def test_read_in_another_epoch_is_incomplete(history) -> None:
    appended = await append(history, A, "1")
    assert (await history.read({A: 0}, epoch=appended.offset.epoch)).complete
    assert not (await history.read({A: 0}, epoch="0ther")).complete
    assert (await history.read({A: appended.offset}, epoch="0ther")).complete  # an offset carries its own epoch


async def test_an_offset_of_the_sequence_once_shared_by_all_conversations_is_another_epoch(history) -> None:
    """Offsets made before each conversation had its own sequence (``<8 hex digits>-<seq>``) parse, but never
    name a conversation's epoch: reading after one is never whole."""
    await append(history, A, "1")
    old = Offset.parse("1a2b3c4d-1")
    replay = await history.read({A: old})
    assert replay.stale == {A} and not replay.complete and [event.seq for event in replay.events] == [1]


async def test_a_conversation_without_history_reads_empty_and_complete(history) -> None:
    replay = await history.read({"projects/p/conversations/none": 0}, epoch=None)
    assert (replay.events, replay.complete) == ([], True)


async def test_a_position_taken_before_any_event_is_in_the_epoch_of_the_events_after_it(history) -> None:
    before = await history.position(A)
    first = await append(history, A, "1")
    assert (before.seq, first.offset) == (0, Offset(before.epoch, 1))
    replay = await history.read({A: before.seq}, epoch=before.epoch)
    assert (replay.complete, [event.seq for event in replay.events]) == (True, [1])


async def test_position_is_the_end_of_the_conversation_s_sequence(history) -> None:
    await append(history, A, "1")
    await append(history, B, "2")
    await append(history, B, "3")
    assert ((await history.position(A)).seq, (await history.position(B)).seq) == (1, 2)


async def test_redis_publishes_each_new_event_once_on_the_conversations_sharded_channel(settings) -> None:
    """The append and the publish (SPUBLISH) are one step: a subscriber (SSUBSCRIBE) sees each new event once,
    duplicates never."""
    history = RedisHistory(redis_client.get_redis())
    pubsub = await redis_client.subscriber_pubsub()
    read = pubsub.get_sharded_message if redis_client.is_cluster() else pubsub.get_message
    await pubsub.ssubscribe(channel_name(A))
    assert (await read(timeout=5))["type"] == "ssubscribe"
    first = await append(history, A, "m-1")
    await append(history, A, "m-1")
    second = await append(history, A, "m-2")
    received = []
    while (message := await read(timeout=0.5)) is not None:
        received.append(decode_published(A, message["data"]))
    await pubsub.aclose()
    assert [event.offset for event in received] == [str(first.offset), str(second.offset)]
    assert json.loads(received[1].payload_json) == {"id": "m-2"}


async def test_appends_made_together_each_get_their_own_answer(history) -> None:
    """Appends asked for in the same turn of the event loop (one pipeline on Redis) are answered one by one:
    each its own offset, the repeated messageId a duplicate of the first."""
    answers = await asyncio.gather(*(append(history, c, m) for c, m in ((A, "1"), (B, "2"), (A, "1"), (A, "3"))))
    assert [answer.offset.seq for answer in answers] == [1, 1, 1, 2]
    assert [answer.duplicate for answer in answers] == [False, False, True, False]
    replay = await history.read({A: 0, B: 0}, epoch=None)
    assert [(event.conversation, event.seq) for event in replay.events] == [(A, 1), (A, 2), (B, 1)]


async def test_appends_positions_and_reads_go_on_after_redis_lost_its_functions_and_scripts() -> None:
    """Restored from a snapshot older than the library, or flushed, Redis has neither the functions nor the
    scripts: the calls of that moment load them and succeed."""
    client = redis_client.get_redis()
    history = RedisHistory(client)
    await append(history, A, "1")
    await client.function_flush()
    await client.script_flush()
    answers = await asyncio.gather(*(append(history, A, m) for m in ("2", "3")))
    assert [answer.offset.seq for answer in answers] == [2, 3] and not any(a.duplicate for a in answers)
    await client.function_flush()
    assert (await history.position(A)).seq == 3
    await client.script_flush()
    assert [event.seq for event in (await history.read({A: 1})).events] == [2, 3]


@pytest.mark.parametrize("redis_kind", ["standalone"], indirect=True)
async def test_every_append_of_a_batch_fails_when_redis_is_unreachable(settings) -> None:
    settings.REDISHOST, settings.REDISPORT = "127.0.0.1", processes.free_port()
    history = RedisHistory(redis_client.get_redis())
    outcomes = await asyncio.gather(*(append(history, A, m) for m in ("1", "2", "3")), return_exceptions=True)
    assert all(isinstance(outcome, RedisConnectionError) for outcome in outcomes), outcomes
async def test_redis_keeps_the_history_capped_and_refreshes_its_expiry_on_each_write(settings) -> None:
    """A conversation's stream holds at most EVENT_HISTORY_MAX_EVENTS entries, each id ``0-<seq>``, and its
    stream and de-duplication record expire EVENT_HISTORY_SECONDS after the conversation's last event."""
    settings.EVENT_HISTORY_MAX_EVENTS, settings.EVENT_HISTORY_SECONDS = 10, 600
    history, client = RedisHistory(redis_client.get_redis()), redis_client.get_redis()
    _, stream, seen, _, _ = conversation_keys(A)
    appended = [await append(history, A, f"m-{number}") for number in range(15)]
    entries = await client.xrange(stream)
    assert [entry_id.decode() for entry_id, _ in entries] == [f"0-{a.offset.seq}" for a in appended[-10:]]
    assert 590 <= await client.ttl(stream) <= 600 and 590 <= await client.ttl(seen) <= 600
    await client.expire(stream, 5)
    await client.expire(seen, 5)
    await append(history, A, "m-15")
    assert 590 <= await client.ttl(stream) <= 600 and 590 <= await client.ttl(seen) <= 600


async def expire(*keys: str) -> None:
    """What Redis's expiry does to ``keys``: they go (after a millisecond's lifetime)."""
    client = redis_client.get_redis()
    for key in keys:
        await client.pexpire(key, 1)
    while await client.exists(*keys):
        await asyncio.sleep(0.01)


async def test_a_replay_after_the_history_expired_is_not_whole(settings) -> None:
    """After EVENT_HISTORY_SECONDS of quiet the stream and its marks expire while the sequence lives on: a
    replay from before the sequence's end lost those events, and says so (a page too); from its end it is
    whole."""
    history = RedisHistory(redis_client.get_redis())
    first = await append(history, A, "1")
    for number in "2345":
        await append(history, A, number)
    await expire(*(conversation_key(A, part) for part in ("history", "trimmed", "history-bytes", "seen")))
    replay = await history.read({A: first.offset})
    assert (replay.events, replay.complete, replay.trimmed) == ([], False, {A})
    assert replay.positions[A] == Offset(first.offset.epoch, 5)
    page = await history.read_page({A: first.offset, B: 0}, max_events=10, max_bytes=10_000, count=True)
    assert (page.complete, page.trimmed, page.more) == (False, {A}, False)
    assert (await history.read({A: Offset(first.offset.epoch, 5)})).complete


async def test_a_stream_that_starts_after_its_trimmed_mark_is_a_gap(settings) -> None:
    """The oldest stored entry says what went before it even when the trimmed mark is gone (it expires on its
    own, or is evicted): sequence numbers have no holes."""
    settings.EVENT_HISTORY_MAX_EVENTS = 10
    history = RedisHistory(redis_client.get_redis())
    for number in range(1, 16):
        await append(history, A, str(number))
    await expire(conversation_key(A, "trimmed"))
    replay = await history.read({A: 2}, epoch=None)
    assert (replay.trimmed, [event.seq for event in replay.events]) == ({A}, list(range(6, 16)))
    page = await history.read_page({B: 0, A: 2}, max_events=3, max_bytes=10_000)
    assert (page.trimmed, [event.seq for event in page.events]) == ({A}, [6, 7, 8])
    assert (await history.read({A: 5}, epoch=None)).complete


async def test_a_join_s_sequence_without_events_lives_as_long_as_a_history(settings) -> None:
    """Every join takes a position, for any name: a sequence without events expires with the history's
    lifetime, not a day; an append keeps it a day, and so does a join once it has events."""
    settings.EVENT_HISTORY_SECONDS = 600
    history, client = RedisHistory(redis_client.get_redis()), redis_client.get_redis()
    sequence = conversation_key(A, "seq")
    await history.position(A)
    assert 590 <= await client.ttl(sequence) <= 600
    await history.position(A)
    assert 590 <= await client.ttl(sequence) <= 600
    await append(history, A, "1")
    assert SEQUENCE_SECONDS - 10 <= await client.ttl(sequence) <= SEQUENCE_SECONDS
    await client.expire(sequence, 100)
    await history.position(A)
    assert SEQUENCE_SECONDS - 10 <= await client.ttl(sequence) <= SEQUENCE_SECONDS


async def test_a_position_before_any_event_whose_sequence_expired_is_another_epoch(settings) -> None:
    """A position at seq 0 outlives its sequence (made by a join, it expires with the history's lifetime):
    the sequence made again is another epoch's, so a replay from that position is never whole."""
    history = RedisHistory(redis_client.get_redis())
    before = await history.position(A)
    await expire(conversation_key(A, "seq"))
    await history.position(A)
    await append(history, A, "1")
    replay = await history.read({A: before})
    assert (replay.complete, replay.stale, [event.seq for event in replay.events]) == (False, {A}, [1])


@pytest.mark.parametrize("text", ["", "abc", "-5", "e-", "e-x", "é-1", "a b-1", "x" * 70 + "-1", None, 5])
def test_offsets_that_are_not_ours_do_not_parse(text) -> None:
    assert Offset.parse(text) is None


def test_offsets_round_trip() -> None:
    assert Offset.parse("1a2b3c4d-42") == Offset("1a2b3c4d", 42)
    assert str(Offset("1a2b3c4d", 42)) == "1a2b3c4d-42"


# --- replays read a page at a time ------------------------------------------------------------


async def test_a_page_stops_at_its_event_count_and_the_next_goes_on_after_its_last_event(history) -> None:
    """Two conversations read one after the other, three events a page: every event once, each conversation's
    in order, and each page's positions are where it stopped in each conversation (its last event there, or the
    conversation's end), the next page going on from them."""
    for number in range(8):
        await append(history, (A, B)[number % 3 == 0], str(number))  # A: 5 events, B: 3
    since, seen, pages = {A: 0, B: 0}, [], []
    while True:
        page = await history.read_page(since, epoch=None, max_events=3, max_bytes=10**6)
        assert page.complete and len(page.events) <= 3
        seen += [(event.conversation, event.seq) for event in page.events]
        pages.append(({c: at.seq for c, at in page.positions.items()}, page.more))
        if not page.more:
            break
        since = page.positions
    assert seen == [(A, 1), (A, 2), (A, 3), (A, 4), (A, 5), (B, 1), (B, 2), (B, 3)]
    assert pages == [({A: 3, B: 0}, True), ({A: 5, B: 1}, True), ({A: 5, B: 3}, False)]


async def test_a_page_stops_before_the_event_that_would_pass_its_bytes_but_takes_one_however_big(history) -> None:
    for number in range(4):
        await history.append(conversation=A, kind="k", message_id=str(number),
                             payload_json=json.dumps({"pad": "x" * (1000 if number == 0 else 100)}))
    first = await history.read_page({A: 0}, epoch=None, max_events=100, max_bytes=500)
    assert [event.seq for event in first.events] == [1] and first.more and first.positions[A].seq == 1
    second = await history.read_page({A: 1}, epoch=None, max_events=100, max_bytes=250)
    assert [event.seq for event in second.events] == [2, 3] and second.more
    last = await history.read_page({A: 3}, epoch=None, max_events=100, max_bytes=250)
    assert [event.seq for event in last.events] == [4] and not last.more and last.positions[A].seq == 4


async def test_a_page_not_taking_its_first_event_whole_says_how_big_the_one_over_its_bytes_is(history) -> None:
    """``whole_first=False`` (the process's replay budget reads so): a page never holds an event over its bytes;
    one that would start with such an event holds none and says its size, which a page then reads it with."""
    sizes = [1000, 100, 100]
    for number, size in enumerate(sizes):
        await history.append(conversation=A, kind="k", message_id=str(number),
                             payload_json=json.dumps({"pad": "x" * size}))
    big = len("k") + len(json.dumps({"pad": "x" * 1000}))
    empty = await history.read_page({A: 0}, epoch=None, max_events=100, max_bytes=500, whole_first=False)
    assert (empty.events, empty.more, empty.too_big, empty.positions[A].seq) == ([], True, big, 0)
    exact = await history.read_page({A: 0}, epoch=None, max_events=100, max_bytes=empty.too_big, whole_first=False)
    assert [event.seq for event in exact.events] == [1] and exact.too_big == 0
    rest = await history.read_page({A: 1}, epoch=None, max_events=100, max_bytes=500, whole_first=False)
    assert [event.seq for event in rest.events] == [2, 3] and not rest.more and rest.too_big == 0
    # A page of several conversations starts with the first one's next event: too big, it holds none (not the
    # next conversation's events first: a replay comes conversation by conversation, and a conversation with
    # events after it at every read would hold the big one back for ever).
    await append(history, B, "b1")
    both = await history.read_page({A: 0, B: 0}, epoch=None, max_events=100, max_bytes=500, whole_first=False)
    assert (both.events, both.too_big, both.more) == ([], big, True)
    assert both.positions[A].seq == 0 and both.positions[B].seq == 0
    after_a = await history.read_page({A: 3, B: 0}, epoch=None, max_events=100, max_bytes=500, whole_first=False)
    assert [(event.conversation, event.seq) for event in after_a.events] == [(B, 1)] and after_a.too_big == 0


async def test_a_page_of_several_conversations_counts_their_bytes_not_their_characters(history) -> None:
    """A page's byte bound holds over all its conversations: the room the first one's events leave for the next
    is counted in UTF-8 bytes, as the read of each counts them (else a page of non-ASCII text holds up to three
    times its bound, and the replay budget, which reserves the bound, more than it reserved)."""
    def size(event) -> int:
        return len(event.kind.encode("utf-8")) + len(event.payload_json.encode("utf-8"))

    await history.append(conversation=A, kind="k", message_id="a",
                         payload_json=json.dumps("你" * 200, ensure_ascii=False))
    for number in range(3):
        await history.append(conversation=B, kind="k", message_id=str(number),
                             payload_json=json.dumps("好" * 100, ensure_ascii=False))
    page = await history.read_page({A: 0, B: 0}, epoch=None, max_events=100, max_bytes=1000, whole_first=False)
    assert [(event.conversation, event.seq) for event in page.events] == [(A, 1), (B, 1)] and page.more
    assert sum(size(event) for event in page.events) <= 1000


async def test_a_page_without_events_of_a_trimmed_conversation_goes_on_from_its_oldest_event_kept(history) -> None:
    """Where a replay starts (read without events) past a trim: its next page reads what is kept, and is whole."""
    for number in range(25):
        await append(history, A, str(number))  # the history keeps 16 to 25
    start = await history.read_page({A: 2}, epoch=None, max_events=0, max_bytes=0, count=True)
    assert (start.events, start.more, start.complete, start.total) == ([], True, False, 10)
    assert start.starts[A].seq == 2 and start.positions[A].seq == 15
    page = await history.read_page(start.positions, epoch=None, max_events=100, max_bytes=10**6)
    assert page.complete and [event.seq for event in page.events] == list(range(16, 26)) and not page.more


async def test_a_page_counts_what_the_whole_replay_holds_when_asked(history) -> None:
    for number in range(40):
        await append(history, A, str(number))  # the history keeps the last 10
    page = await history.read_page({A: 33}, epoch=None, max_events=2, max_bytes=10**6, count=True)
    assert (page.total, [event.seq for event in page.events]) == (7, [34, 35])
    assert (await history.read_page({A: 0}, epoch=None, max_events=2, max_bytes=10**6)).total is None


async def test_a_page_after_a_trimmed_position_is_incomplete(history) -> None:
    for number in range(25):
        await append(history, A, str(number))
    assert not (await history.read_page({A: 2}, epoch=None, max_events=5, max_bytes=10**6)).complete
    assert (await history.read_page({A: 15}, epoch=None, max_events=5, max_bytes=10**6)).complete


async def test_a_page_after_a_position_of_another_epoch_reads_the_current_epoch_from_its_start(history) -> None:
    """Every event of the current epoch was pushed after Redis lost the other's: none is older than the
    position's, whatever their numbers."""
    for number in range(5):
        await append(history, A, str(number))
    page = await history.read_page({A: 3}, epoch="0ther", max_events=100, max_bytes=10**6)
    assert not page.complete and [event.seq for event in page.events] == [1, 2, 3, 4, 5]


async def test_a_page_counts_and_bounds_across_conversations(history) -> None:
    """The bytes left by one conversation's events bound the next one's; the count sums them all."""
    for number in range(3):
        await history.append(conversation=A, kind="k", message_id=str(number), payload_json=json.dumps("x" * 96))
        await history.append(conversation=B, kind="k", message_id=str(number), payload_json=json.dumps("y" * 96))
    page = await history.read_page({A: 1, B: 0}, max_events=100, max_bytes=350, count=True)
    assert [(event.conversation, event.seq) for event in page.events] == [(A, 2), (A, 3), (B, 1)]
    assert page.more and page.total == 5 and {c: at.seq for c, at in page.positions.items()} == {A: 3, B: 1}


async def test_every_key_of_one_push_is_in_one_cluster_slot(settings) -> None:
    """What makes the append cluster-safe: each key the script is given, and the channel it publishes on, hash
    to the conversation's slot; another conversation's keys are elsewhere (whatever the name's characters)."""
    history = RedisHistory(redis_client.get_redis())
    names = [A, "projects/p/conversations/with:colons", "projects/p/locations/global/conversations/Z-9_x"]
    slots = []
    for name in names:
        keys = [*conversation_keys(name), channel_name(name)]
        assert len({key_slot(key.encode()) for key in keys}) == 1, keys
        slots.append(key_slot(keys[0].encode()))
        await append(history, name, "1")
    assert len(set(slots)) == len(names)
    # And the function touches no other key: every key in Redis now is one of those conversations'.
    stored = [key async for key in redis_client.get_redis().scan_iter(match=f"{settings.EVENT_KEY_PREFIX}*")]
    assert {key_slot(key) for key in stored} <= set(slots) and stored

