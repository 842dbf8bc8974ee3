"""The replay pages a process holds at once, bounded in bytes and in events (``REPLAY_PROCESS_BYTES`` /
``REPLAY_PROCESS_EVENTS``), whatever the number of desktops replaying.

A page's read first reserves its most bytes and events (its own bounds,
``REPLAY_PAGE_*`` and the room its desktop's live queue leaves) from the
process's budget, waiting its turn when the budget is spent: first come, first
served, so a large page is never passed over by smaller ones for ever. Once
read, the page gives back what it does not hold; the rest goes back as its
events are handed to the socket, or when the connection ends (the reservation
is released whichever way its holder ends, a cancelled wait included).

A page holds at least one event however big. An event alone over the page's
reservation is never read on it: the read takes none and says how big the
event is (``events.history.Replay.too_big``), and the page reserves that much
and reads again. One over the whole budget waits until the page can take the
whole budget, and is read alone: the process then holds that one event, never
more than one, bounded by the push's (``PUSH_MAX_BODY_BYTES``).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from django.conf import settings

from common.loop_local import LoopLocal
from events import metrics
from events.history import Event, Replay, Since, event_bytes, get_history


class Reservation:
    """Bytes and events of one holder (a page, or a desktop's pages) taken from a ``ReplayBudget``."""

    __slots__ = ("_budget", "bytes", "events")

    def __init__(self, budget: ReplayBudget, nbytes: int = 0, events: int = 0) -> None:
        self._budget = budget
        self.bytes = nbytes
        self.events = events

    def give_back(self, nbytes: int, events: int = 0) -> None:
        """Return up to ``nbytes`` and ``events`` of it (never more than it holds)."""
        nbytes, events = min(nbytes, self.bytes), min(events, self.events)
        if nbytes or events:
            self.bytes -= nbytes
            self.events -= events
            self._budget.returned(nbytes, events)

    def keep(self, nbytes: int, events: int) -> None:
        """Give back all but ``nbytes`` and ``events``."""
        self.give_back(max(0, self.bytes - nbytes), max(0, self.events - events))

    def release(self) -> None:
        """Give it all back; releasing twice is harmless."""
        self.give_back(self.bytes, self.events)

    def join(self, other: Reservation) -> None:
        """Hold ``other``'s share too (it is left empty)."""
        assert other._budget is self._budget
        self.bytes += other.bytes
        self.events += other.events
        other.bytes = other.events = 0


class ReplayBudget:
    """A process's bytes and events for replay pages: reservations wait, first in first out, until both fit."""

    def __init__(self, max_bytes: int, max_events: int) -> None:
        self.max_bytes = max_bytes
        self.max_events = max_events
        self.bytes = 0  # reserved now
        self.events = 0
        self._waiting: deque[tuple[int, int, asyncio.Future]] = deque()

    @property
    def waiting(self) -> int:
        """Reservations waiting their turn."""
        return sum(1 for *_, turn in self._waiting if not turn.done())

    async def reserve(self, nbytes: int, events: int) -> Reservation:
        """Take ``nbytes`` and ``events`` (each at most the whole budget, at least one event), waiting behind the
        reservations that came first until they fit."""
        nbytes = max(0, min(nbytes, self.max_bytes))
        events = max(1, min(events, self.max_events))
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append((nbytes, events, turn))
        self._wake()
        if turn.done():
            return Reservation(self, nbytes, events)
        started = time.monotonic()
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self.returned(nbytes, events)  # granted just as its waiter was cancelled
            else:
                turn.cancel()
                self._wake()  # it may have been the first in line, holding back the others
            raise
        finally:
            metrics.replay_budget_waited(time.monotonic() - started)
        return Reservation(self, nbytes, events)

    def returned(self, nbytes: int, events: int) -> None:
        """``nbytes`` and ``events`` of a reservation came back: let the next in line in."""
        self.bytes -= nbytes
        self.events -= events
        metrics.replay_reserved(self.bytes, self.events)
        self._wake()

    def _fits(self, nbytes: int, events: int) -> bool:
        return self.bytes + nbytes <= self.max_bytes and self.events + events <= self.max_events

    def _take(self, nbytes: int, events: int) -> None:
        self.bytes += nbytes
        self.events += events
        metrics.replay_reserved(self.bytes, self.events)

    def _wake(self) -> None:
        while self._waiting:
            nbytes, events, turn = self._waiting[0]
            if turn.done():  # cancelled while waiting
                self._waiting.popleft()
                continue
            if not self._fits(nbytes, events):
                return
            self._waiting.popleft()
            self._take(nbytes, events)
            turn.set_result(None)


_budgets: LoopLocal[ReplayBudget] = LoopLocal(
    lambda: ReplayBudget(settings.REPLAY_PROCESS_BYTES, settings.REPLAY_PROCESS_EVENTS))


def get_budget() -> ReplayBudget:
    """This process's budget (one per event loop)."""
    return _budgets.get()


def page_size(replay: Replay) -> int:
    """The bytes a page's events hold, as the history bounds them (their kinds' and payloads' UTF-8)."""
    return sum(event_size(event) for event in replay.events)


def event_size(event: Event) -> int:
    """An event's bytes as the history's page bounds count them (its kind's and payload's UTF-8)."""
    return event_bytes(event)


async def read_page(since: Since, *, max_events: int, max_bytes: int,
                    reading: Callable[[bool], None] | None = None) -> tuple[Replay, Reservation]:
    """A page of ``since``'s replay (``events.history.RedisHistory.read_page``) read within the process's budget,
    and the reservation it holds: the page's own bytes and events, to give back as they are sent. ``reading`` is
    called with True once the page has its turn, just before a read starts, and with False when the page goes
    back to wait (its first event too big for its share)."""
    budget = get_budget()
    want = min(max_bytes, budget.max_bytes)
    while True:
        reservation = await budget.reserve(want, max_events)
        try:
            alone = want >= budget.max_bytes  # the whole budget: the first event is read however big
            if reading is not None:
                reading(True)
            page = await get_history().read_page(since, max_events=reservation.events, max_bytes=want,
                                                 whole_first=alone)
        except BaseException:
            reservation.release()
            raise
        if page.events or not page.too_big:
            reservation.keep(page_size(page), len(page.events))
            return page, reservation
        # Its next event alone is bigger than the reservation: reserve that much (the whole budget at most)
        # and read again; the reservation held meanwhile is given back first, so no two wait on each other.
        reservation.release()
        if reading is not None:
            reading(False)
        want = min(page.too_big, budget.max_bytes)
