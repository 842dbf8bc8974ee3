"""A large history replayed a page at a time, on real processes: the connector holds one page, not the history.

A history of 200 events of 200 KB (40 MB) is replayed to a Socket.IO desktop
that reads through a small socket buffer and stops reading for a while
(``testing.stalled_desktop``): the connector's peak resident memory (the kernel's
``VmHWM``) grows by far less than the history, and the desktop gets every
event once, in order. A long-polling session's history join is answered over
several GETs, none longer than ``REPLAY_PAGE_BYTES``, every event once, in
order. Before pages, the replay was read whole for the join and one GET
answered it all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Iterator

import httpx
import pytest

from connector.desktops import offsets
from testing import clients, processes
from testing import fault_scenarios as faults
from testing.engineio_polling import connected_session, conversation_events, session_url
from testing.stalled_desktop import StalledDesktop

HISTORY_EVENTS = 200
LIVE = [f"live-{number}" for number in range(5)]
BIG_PADDING = 200_000
PAGE_BYTES = 2**20
SETTINGS = {
    "EVENT_HISTORY_MAX_EVENTS": "1000",
    # Room for the whole 40 MB history (the default byte budget would trim it to its last 16 MiB).
    "EVENT_HISTORY_MAX_BYTES": str(64 * 2**20),
    "REPLAY_PAGE_BYTES": str(PAGE_BYTES),
    "WEBSOCKET_SEND_QUEUE_BYTES": str(PAGE_BYTES),
}
# What the connector may grow by while replaying: its page and live queue (1 MiB each), their copies (Redis's
# reply, the decoded payloads, a frame), the server's write buffer, and the allocator's slack. The history is
# 40 MB: read whole, the replay grew it by more than twice that.
GROWTH_BOUND = 24 * 2**20


def memory(pid: int, field: str) -> int:
    """``VmRSS`` or ``VmHWM`` (the peak resident set since the process started) of ``pid``, in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    raise ValueError(f"no {field} for process {pid}")


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[processes.Server, processes.Server]]:
    with processes.redis_server(private=True) as store, \
            processes.service_server(role="connector", redis=store, **SETTINGS) as connector, \
            processes.service_server(role="interceptor", redis=store, **SETTINGS) as interceptor:
        yield connector, interceptor


async def fill(interceptor: processes.Server, conversation: str, count: int, *, padding: int) -> list[str]:
    """Push ``count`` events of ``padding`` characters of filler to ``conversation``; their message ids."""
    pubsub = faults.PubSub(interceptor, faults.Tally("history"))
    ids = [f"old-{number}" for number in range(count)]
    try:
        await faults.push_concurrently(pubsub, [(conversation, message_id) for message_id in ids],
                                       concurrency=4, padding=padding)
    finally:
        await pubsub.close()
    assert pubsub.tally.acknowledged == count
    return ids


async def test_a_large_history_goes_to_a_slow_desktop_a_page_at_a_time(servers) -> None:
    connector, interceptor = servers
    conversation = faults.conversations(1)[0]
    ids = await fill(interceptor, conversation, HISTORY_EVENTS, padding=BIG_PADDING)
    pid = connector.process.pid
    before = memory(pid, "VmRSS")
    desktop = StalledDesktop(connector.port)
    try:
        await desktop.connect(faults.token())
        assert await desktop.call("join-conversation", conversation, {"history": True}) == [True, conversation]
        await desktop.read_until(lambda d: len(d.events) >= 20, timeout=faults.WAIT)
        # The desktop stops reading: the replay waits for it, and live events pushed meanwhile wait their turn.
        pubsub = faults.PubSub(interceptor, faults.Tally("live"))
        for message_id in LIVE:
            await pubsub.deliver(conversation, message_id)
        await pubsub.close()
        await asyncio.sleep(1)
        stalled_peak = memory(pid, "VmHWM") - before
        await desktop.read_until(lambda d: len(d.events) >= HISTORY_EVENTS + len(LIVE), timeout=faults.WAIT * 4)
        await asyncio.sleep(0.5)  # nothing more (a duplicate) follows
        with contextlib.suppress(TimeoutError):
            await desktop.read_until(lambda d: len(d.events) > HISTORY_EVENTS + len(LIVE), timeout=1)
    finally:
        desktop.close()
    growth = memory(pid, "VmHWM") - before
    received = [event.payload["message_id"] for event in desktop.events]
    assert sorted(received[:HISTORY_EVENTS]) == sorted(ids) and received[HISTORY_EVENTS:] == LIVE, received
    seqs = [offsets.position(offset, conversation).seq for offset in desktop.offsets()]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert stalled_peak < GROWTH_BOUND, f"the connector grew {stalled_peak / 2**20:.1f} MiB while the desktop stalled"
    assert growth < GROWTH_BOUND, f"the connector grew {growth / 2**20:.1f} MiB during the replay"
    assert "Traceback" not in connector.log()


async def test_a_polling_history_join_is_answered_a_page_per_get(servers, settings) -> None:
    """Each GET answers at most ``REPLAY_PAGE_BYTES``; the next goes on where it stopped; all arrive once, in
    order, and a live event pushed meanwhile comes after the older ones."""
    connector, interceptor = servers
    conversation = f"projects/{processes.TEST_PROJECT}/conversations/paged-{uuid.uuid4().hex[:8]}"
    count, padding = 60, 60_000  # 3.6 MB: four pages at least
    ids = await fill(interceptor, conversation, count, padding=padding)
    token = clients.server_token(settings, user="agent")
    url = connector.http_url
    received: list[list] = []
    sizes: list[int] = []
    async with httpx.AsyncClient(timeout=30) as client:
        sid = await connected_session(client, url, token, ping_ms=(25000, 20000))
        join = json.dumps(["join-conversation", conversation, {"history": True}])
        assert (await client.post(session_url(url, sid), content=f"420{join}".encode())).text == "ok"
        live_pushed = False
        while len(received) < count + 1:
            answer = await client.get(session_url(url, sid))
            assert answer.status_code == 200, answer.text
            sizes.append(len(answer.content))
            received += conversation_events(answer.text)
            if "2" in answer.text.split("\x1e"):
                await client.post(session_url(url, sid), content=b"3")  # the pong
            if not live_pushed and received:
                pubsub = faults.PubSub(interceptor, faults.Tally("live"))
                await pubsub.deliver(conversation, "live")
                await pubsub.close()
                live_pushed = True
        await client.post(session_url(url, sid), content=b"1")
    message_ids = [event[1]["message_id"] for event in received]
    assert sorted(message_ids[:-1]) == sorted(ids), message_ids
    assert message_ids[-1] == "live" and len(message_ids) == count + 1
    assert max(sizes) <= PAGE_BYTES, sizes
    assert len([size for size in sizes if size > padding]) >= 4, sizes
    seqs = [offsets.position(event[-1], conversation).seq for event in received]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

