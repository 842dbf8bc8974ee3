"""A desktop that stops reading in the middle of its replay gives back its share of the process's replay budget
within ``REPLAY_STALL_SECONDS``, rather than holding every other desktop's replay up until its heartbeat fails.

Real processes: a connector whose replay budget is one page, a history larger than the kernel's socket buffers
can take, a Socket.IO desktop that reads through a small receive buffer and stops
(``testing.stalled_desktop``), and a second desktop that joins the same history after it and reads all of it.
Pings come every 120 s and their timeout is 120 s, so only the stall bound can free the budget before the second
desktop's wait runs out, and a desktop reading a big event slowly meets no heartbeat before it has read it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import pytest

from testing import fault_scenarios as faults
from testing import processes
from testing.stalled_desktop import Ended, StalledDesktop
from tests.test_paged_replay import fill

HISTORY_EVENTS = 60
PADDING = 200_000  # 12 MB of history: more than loopback's socket buffers hold for one reader
BUDGET = 8 * 2**20
SETTINGS = {
    "EVENT_HISTORY_MAX_EVENTS": "1000",
    "EVENT_HISTORY_MAX_BYTES": str(64 * 2**20),
    "REPLAY_PAGE_BYTES": str(BUDGET),
    "REPLAY_PROCESS_BYTES": str(BUDGET),
    "WEBSOCKET_SEND_QUEUE_BYTES": str(BUDGET),
    "REPLAY_STALL_SECONDS": "2",
    "SOCKETIO_PING_INTERVAL": "120",
    "SOCKETIO_PING_TIMEOUT": "120",
}
# Well within the heartbeat (240 s), well beyond the stall bound and the replay itself.
SECOND_DESKTOP_SECONDS = 30


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[processes.Server, processes.Server]]:
    with processes.redis_server(private=True) as store, \
            processes.service_server(role="connector", redis=store, **SETTINGS) as connector, \
            processes.service_server(role="interceptor", redis=store, **SETTINGS) as interceptor:
        yield connector, interceptor


async def test_a_desktop_that_stops_reading_its_replay_is_closed_and_the_next_replays_everything(servers) -> None:
    connector, interceptor = servers
    conversation = faults.conversations(1)[0]
    ids = await fill(interceptor, conversation, HISTORY_EVENTS, padding=PADDING)
    stalled, reader = StalledDesktop(connector.port), StalledDesktop(connector.port)
    try:
        await stalled.connect(faults.token())
        assert await stalled.call("join-conversation", conversation, {"history": True}) == [True, conversation]
        await stalled.read_until(lambda d: len(d.events) >= 2, timeout=faults.WAIT)
        # It reads no more: its page (the whole budget) is written as far as the socket takes, then waits.
        await reader.connect(faults.token())
        assert await reader.call("join-conversation", conversation, {"history": True}) == [True, conversation]
        await reader.read_until(lambda d: len(d.events) >= HISTORY_EVENTS, timeout=SECOND_DESKTOP_SECONDS)
        with pytest.raises(Ended) as ended:
            await stalled.read_until(lambda d: False, timeout=faults.WAIT)
    finally:
        with contextlib.suppress(Exception):
            stalled.close()
            reader.close()
    received = [event.payload["message_id"] for event in reader.events]
    assert sorted(received) == sorted(ids), received  # once each (pushed concurrently: in the history's order)
    assert ended.value.args[0][0] == 4429, ended.value.args
    log = connector.log()
    # 200 KB events: REPLAY_STALL_SECONDS for each 64 KiB of one, four times 2 s.
    assert "took no replayed event for 8 s (REPLAY_STALL_SECONDS" in log and "Traceback" not in log


BIG_EVENT = 10 * 2**20  # well past the kernel's socket buffers on both sides, and past the whole budget
SLOW_READ_PAUSE = 0.01  # a read of at most a few KB (its small receive buffer) every 10 ms: well under 1 MB/s


async def test_a_desktop_reading_a_big_replayed_event_slowly_but_steadily_is_not_taken_for_stalled(servers) -> None:
    """A replayed event that takes longer than ``REPLAY_STALL_SECONDS`` to write, because it is big and the desktop's
    link slow, is not a stall: closed 4429 each time, the desktop would meet the same event on every recovery."""
    connector, interceptor = servers
    conversation = faults.conversations(1)[0]
    ids = await fill(interceptor, conversation, 1, padding=BIG_EVENT)
    desktop = StalledDesktop(connector.port)
    try:
        await desktop.connect(faults.token())
        assert await desktop.call("join-conversation", conversation, {"history": True}) == [True, conversation]
        async with asyncio.timeout(SECOND_DESKTOP_SECONDS * 4):
            while not desktop.events:
                await desktop._read()
                await asyncio.sleep(SLOW_READ_PAUSE)
    finally:
        desktop.close()
    assert [event.payload["message_id"] for event in desktop.events] == ids  # (closed 4429 first: Ended)
