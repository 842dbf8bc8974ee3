"""``events.history``'s byte budget per conversation: trimmed oldest first, exactly, with honest gaps.

As in ``tests/test_history.py``, each test runs against ``RedisHistory`` (the
suite's Redis, a key prefix per test) and ``MemoryHistory``, which must keep
the same promises; the running byte total in Redis is checked against what
the stream really holds.
"""

from __future__ import annotations

import json

import pytest

from events import redis_client
from events.history import MemoryHistory, RedisHistory, conversation_key, history_bytes_key

A = "projects/p/conversations/a"
BUDGET = 64 * 1024  # the setting's minimum


@pytest.fixture(params=["redis", "memory"])
async def history(request, settings):
    settings.EVENT_HISTORY_MAX_EVENTS, settings.EVENT_HISTORY_MAX_BYTES = 10, BUDGET
    if request.param == "redis":
        return RedisHistory(redis_client.get_redis())
    return MemoryHistory()


def payload(message_id: str, size: int) -> str:
    """A payload JSON of exactly ``size`` bytes."""
    text = json.dumps({"id": message_id, "pad": ""})
    return json.dumps({"id": message_id, "pad": "x" * (size - len(text))})


async def append(history, message_id: str, size: int):
    return await history.append(conversation=A, kind="new-message-event", message_id=message_id,
                                payload_json=payload(message_id, size))


async def stored_bytes_in_redis(settings) -> tuple[int, int]:
    """The running total the script keeps, and the sum of the payloads the stream really holds."""
    client = redis_client.get_redis()
    entries = await client.xrange(conversation_key(A, "history"))
    return int(await client.get(history_bytes_key(A)) or 0), sum(len(fields[b"p"]) for _, fields in entries)


async def test_the_oldest_events_go_while_the_history_is_over_its_byte_budget(history, settings) -> None:
    """Events of 20 kB under a 64 KiB budget: three are kept (count alone would keep ten). A replay from
    before the oldest kept one is not whole; from right before it, it is."""
    appended = [await append(history, f"m-{n}", 20_000) for n in range(1, 11)]
    seqs = [a.offset.seq for a in appended]
    replay = await history.read({A: 0}, epoch=None)
    assert [event.seq for event in replay.events] == seqs[-3:]
    assert not replay.complete
    assert (await history.read({A: seqs[-4]}, epoch=None)).complete
    assert not (await history.read({A: seqs[-5]}, epoch=None)).complete
    if isinstance(history, RedisHistory):
        assert await stored_bytes_in_redis(settings) == (60_000, 60_000)


async def test_an_event_over_the_budget_by_itself_is_kept_alone(history, settings) -> None:
    """A 100 kB event under a 64 KiB budget replaces everything before it and stays, so a desktop that saw the
    event before it recovers it; the next event pushes it out and replays from before then are not whole."""
    small = [await append(history, f"s-{n}", 1_000) for n in range(3)]
    big = await append(history, "big", 100_000)
    before_big = await history.read({A: small[-1].offset.seq}, epoch=None)
    assert [event.seq for event in before_big.events] == [big.offset.seq] and before_big.complete
    assert not (await history.read({A: small[0].offset.seq}, epoch=None)).complete
    after = await append(history, "after", 1_000)
    assert (await history.read({A: big.offset.seq}, epoch=None)).events[0].seq == after.offset.seq
    assert (await history.read({A: big.offset.seq}, epoch=None)).complete
    assert not (await history.read({A: small[-1].offset.seq}, epoch=None)).complete
    if isinstance(history, RedisHistory):
        assert await stored_bytes_in_redis(settings) == (1_000, 1_000)


async def test_a_redelivery_of_an_event_trimmed_for_bytes_is_still_a_duplicate(history) -> None:
    first = await append(history, "m-1", 40_000)
    await append(history, "m-2", 40_000)  # together over the budget: m-1 is trimmed
    again = await append(history, "m-1", 40_000)
    assert again.duplicate and again.offset == first.offset


async def test_many_large_events_never_hold_more_than_the_budget_and_one_event(history, settings) -> None:
    """The abuse case: events near Pub/Sub's size, one after another; what is stored never passes the budget
    plus the newest event, whatever the count limit."""
    settings.EVENT_HISTORY_MAX_EVENTS = 1000
    for n in range(40):
        await append(history, f"m-{n}", 30_000 + 997 * n)
        if isinstance(history, RedisHistory):
            total, really = await stored_bytes_in_redis(settings)
            assert total == really <= BUDGET + 30_000 + 997 * n
        replay = await history.read({A: 0}, epoch=None)
        assert sum(len(event.payload_json) for event in replay.events) <= max(BUDGET, 30_000 + 997 * n)


async def test_redis_counts_a_history_kept_without_its_running_total_once(settings) -> None:
    """A history stored by an earlier version (or whose total Redis evicted alone) is counted on the next
    append, so the budget holds from then on."""
    settings.EVENT_HISTORY_MAX_EVENTS, settings.EVENT_HISTORY_MAX_BYTES = 1000, BUDGET
    history, client = RedisHistory(redis_client.get_redis()), redis_client.get_redis()
    appended = [await append(history, f"m-{n}", 15_000) for n in range(4)]
    await client.delete(history_bytes_key(A))
    last = await append(history, "m-4", 15_000)
    assert await stored_bytes_in_redis(settings) == (60_000, 60_000)
    replay = await history.read({A: 0}, epoch=None)
    assert [event.seq for event in replay.events] == [a.offset.seq for a in appended[1:]] + [last.offset.seq]
    assert not replay.complete  # the first event was trimmed
    assert (await history.read({A: appended[0].offset.seq}, epoch=None)).complete


async def test_redis_expires_the_running_total_with_the_stream(settings) -> None:
    settings.EVENT_HISTORY_SECONDS = 600
    history, client = RedisHistory(redis_client.get_redis()), redis_client.get_redis()
    await append(history, "m-1", 1_000)
    assert 590 <= await client.ttl(history_bytes_key(A)) <= 600
