"""``connector.desktops.replay_budget``: the replay pages a process holds, bounded in bytes and in events.

The budget itself: first come first served (a large reservation is not passed
over by smaller ones), a cancelled wait or a released holder lets the next in,
nothing is ever reserved past the bounds. Then a page's read within it, on real
Redis and in process: what a page does not hold goes back at once, and an event
bigger than the page's share, or than the whole budget, is read on a share its
size (the whole budget, alone).
"""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from connector.desktops import replay_budget
from connector.desktops.replay_budget import ReplayBudget
from events import redis_client
from events.history import MemoryHistory, RedisHistory

A = "projects/p/conversations/a"
B = "projects/p/conversations/b"


async def turn() -> None:
    """Let every task ready to run take its step."""
    for _ in range(5):
        await asyncio.sleep(0)


async def waiters(budget: ReplayBudget, count: int) -> None:
    """Wait (a generous while at most) until ``count`` reservations wait their turn."""
    async def waiting() -> None:
        while budget.waiting != count:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(waiting(), 10)


async def test_reservations_are_granted_first_come_first_served_within_both_bounds() -> None:
    budget = ReplayBudget(max_bytes=100, max_events=10)
    first = await budget.reserve(60, 1)
    big = asyncio.ensure_future(budget.reserve(80, 1))  # waits for the first
    small = asyncio.ensure_future(budget.reserve(30, 1))  # would fit now, but comes after the big one
    await turn()
    assert not big.done() and not small.done() and budget.waiting == 2
    assert (budget.bytes, budget.events) == (60, 1)
    first.release()
    await turn()
    assert big.done() and not small.done()  # 80 + 30 would pass the bound
    assert (budget.bytes, budget.events) == (80, 1)
    small_enough = big.result()
    small_enough.keep(20, 1)  # a page that read less gives the rest back at once
    await turn()
    assert small.done() and (budget.bytes, budget.events) == (50, 2)
    small.result().release()
    small_enough.release()
    small_enough.release()  # twice is harmless
    assert (budget.bytes, budget.events) == (0, 0)


async def test_the_count_of_events_bounds_reservations_as_the_bytes_do() -> None:
    budget = ReplayBudget(max_bytes=10**6, max_events=5)
    held = [await budget.reserve(1, 2), await budget.reserve(1, 2)]
    third = asyncio.ensure_future(budget.reserve(1, 2))
    await turn()
    assert not third.done() and budget.events == 4
    held[0].give_back(0, 1)  # one event of the first written
    await turn()
    assert third.done() and budget.events == 5
    for holder in [*held, third.result()]:
        holder.release()
    assert (await budget.reserve(0, 10**9)).events == 5  # never more than the bound


async def test_a_cancelled_wait_takes_nothing_and_lets_the_next_in() -> None:
    budget = ReplayBudget(max_bytes=100, max_events=10)
    holder = await budget.reserve(90, 1)
    first = asyncio.ensure_future(budget.reserve(50, 1))  # the first in line, then its desktop goes
    second = asyncio.ensure_future(budget.reserve(10, 1))
    await turn()
    assert not first.done() and not second.done()
    first.cancel()
    await turn()
    assert first.cancelled()
    holder.give_back(80)  # 10 held: the second fits; the cancelled one would not have held it back anyway
    await turn()
    assert second.done() and (budget.bytes, budget.events) == (20, 2) and budget.waiting == 0


async def test_a_wait_cancelled_just_as_it_is_granted_gives_its_share_back() -> None:
    budget = ReplayBudget(max_bytes=100, max_events=10)
    holder = await budget.reserve(100, 1)
    waiting = asyncio.ensure_future(budget.reserve(100, 1))
    await turn()
    holder.release()  # grants the waiter: its future is done, its task not yet resumed
    waiting.cancel()
    await turn()
    assert waiting.cancelled() and (budget.bytes, budget.events) == (0, 0)


async def test_a_reservation_is_never_more_than_the_whole_budget_and_always_one_event() -> None:
    budget = ReplayBudget(max_bytes=100, max_events=10)
    whole = await budget.reserve(10**9, 10**9)
    assert (whole.bytes, whole.events) == (100, 10)
    nothing = asyncio.ensure_future(budget.reserve(0, 0))
    await turn()
    assert not nothing.done()  # an event at least: it waits too
    whole.release()
    await turn()
    assert (nothing.result().bytes, nothing.result().events) == (0, 1)


async def test_reservations_joined_into_one_holder_give_back_together() -> None:
    budget = ReplayBudget(max_bytes=100, max_events=10)
    desktop, page = await budget.reserve(30, 3), await budget.reserve(40, 2)
    desktop.join(page)
    assert (desktop.bytes, desktop.events, page.bytes, page.events) == (70, 5, 0, 0)
    page.release()  # empty now: gives nothing
    assert budget.bytes == 70
    desktop.release()
    assert (budget.bytes, budget.events) == (0, 0)


# --- a page's read within the budget ---------------------------------------------------------------------------


@pytest.fixture(params=["redis", "memory"])
async def history(request, settings, redis_events, monkeypatch):
    """The history a page is read from, as ``get_history`` gives it (the suite's Redis, or in process)."""
    made = RedisHistory(redis_client.get_redis()) if request.param == "redis" else MemoryHistory()
    monkeypatch.setattr(replay_budget, "get_history", lambda: made)
    return made


@pytest.fixture
def budget(settings, monkeypatch) -> ReplayBudget:
    made = ReplayBudget(max_bytes=2000, max_events=50)
    monkeypatch.setattr(replay_budget, "get_budget", lambda: made)
    return made


async def append(history, conversation: str, number: int, pad: int) -> int:
    payload = json.dumps({"n": number, "pad": "x" * pad})
    await history.append(conversation=conversation, kind="k", message_id=str(number), payload_json=payload)
    return len("k") + len(payload)


async def test_a_page_holds_what_it_read_and_gives_the_rest_back_at_once(history, budget) -> None:
    sizes = [await append(history, A, number, 100) for number in range(3)]
    page, held = await replay_budget.read_page({A: 0}, max_events=10, max_bytes=1000)
    assert [event.seq for event in page.events] == [1, 2, 3] and not page.more
    assert (held.bytes, held.events) == (sum(sizes), 3) == (budget.bytes, budget.events)
    for event in page.events:
        held.give_back(replay_budget.event_size(event), 1)
    assert (budget.bytes, budget.events) == (0, 0)


async def test_a_page_waits_while_the_budget_is_spent(history, budget) -> None:
    await append(history, A, 1, 100)
    other = await budget.reserve(2000, 1)
    reading = asyncio.ensure_future(replay_budget.read_page({A: 0}, max_events=10, max_bytes=1000))
    await asyncio.sleep(0.05)
    assert not reading.done() and budget.waiting == 1
    other.release()
    page, held = await reading
    assert [event.seq for event in page.events] == [1]
    held.release()


async def test_an_event_over_the_pages_share_is_read_on_a_share_its_size(history, budget) -> None:
    big = await append(history, A, 1, 1500)
    small = await append(history, A, 2, 10)
    page, held = await replay_budget.read_page({A: 0}, max_events=10, max_bytes=500)
    assert [event.seq for event in page.events] == [1] and page.more
    assert held.bytes == big <= budget.max_bytes
    held.release()
    page, held = await replay_budget.read_page(page.positions, max_events=10, max_bytes=500)
    assert [event.seq for event in page.events] == [2] and held.bytes == small
    held.release()


async def test_a_replay_of_several_conversations_reads_the_first_ones_big_event_before_the_next_ones(
        history, budget) -> None:
    """The first conversation's next event is over the page's share: the page reads it on a share its size, not
    the next conversation's events first (a replay comes conversation by conversation, in the order joined)."""
    big = await append(history, A, 1, 1500)
    await append(history, B, 1, 10)
    page, held = await replay_budget.read_page({A: 0, B: 0}, max_events=10, max_bytes=500)
    assert [(event.conversation, event.seq) for event in page.events] == [(A, 1)] and held.bytes == big
    held.release()
    page, held = await replay_budget.read_page(page.positions, max_events=10, max_bytes=500)
    assert [(event.conversation, event.seq) for event in page.events] == [(B, 1)] and not page.more
    held.release()


async def test_an_event_over_the_whole_budget_is_read_alone_on_the_whole_budget(history, budget) -> None:
    await append(history, A, 1, 5000)
    await append(history, B, 2, 10)
    other = await budget.reserve(300, 1)
    reading = asyncio.ensure_future(replay_budget.read_page({A: 0}, max_events=10, max_bytes=500))
    await waiters(budget, 1)  # (after its first read's round trip, however long the machine takes)
    # Its share of 500 fit, but the read found the event too big for it: it gave that back and waits for it all.
    assert not reading.done() and (budget.bytes, budget.waiting) == (300, 1)
    others_page = asyncio.ensure_future(replay_budget.read_page({B: 0}, max_events=10, max_bytes=500))
    await waiters(budget, 2)
    assert not others_page.done()  # in line behind the whole-budget read, though it would fit
    other.release()
    page, held = await reading
    assert [event.seq for event in page.events] == [1] and held.bytes == budget.max_bytes == budget.bytes
    assert not others_page.done()
    held.give_back(replay_budget.event_size(page.events[0]), 1)  # written: all of it goes back
    page, theirs = await others_page
    assert [event.seq for event in page.events] == [1] and budget.bytes == theirs.bytes
    theirs.release()
    assert (budget.bytes, budget.events) == (0, 0)


async def test_a_read_that_fails_gives_its_share_back(budget, monkeypatch) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # nothing listens there
    nowhere = RedisHistory(Redis(host="127.0.0.1", port=port, socket_connect_timeout=1))
    monkeypatch.setattr(replay_budget, "get_history", lambda: nowhere)
    with pytest.raises(RedisConnectionError):
        await replay_budget.read_page({A: 0}, max_events=10, max_bytes=500)
    assert (budget.bytes, budget.events) == (0, 0)
