"""Sends that wait together on a desktop that stopped reading, under the image's server (uvicorn, websockets).

While the connector's event sender waits for a stalled desktop's full socket
buffers to drain, anything else sent on that connection (a join's
acknowledgement, a ping) waits behind it. Under the websockets library's own
flow control the second send failed an assertion instead, which ended the
connection with a traceback (``aa_site.serve_uvicorn.websocket_protocol``).
A ping that waits so counts as unanswered from the moment it was due, as
Socket.IO counts it: a desktop stalled in a quiet conversation is closed too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from connector.desktops import offsets
from testing import fault_scenarios as faults
from testing import processes
from testing.socket_buffers import SLOW_PADDING, pushes_past_the_socket_buffers
from testing.stalled_desktop import Ended, StalledDesktop

NO_LIMIT = {"WEBSOCKET_SEND_QUEUE_LIMIT": "1000000000", "WEBSOCKET_SEND_QUEUE_BYTES": "1000000000000"}
BIG_PADDING = 200_000  # a few events of 200 KB fill the socket buffers before the first ping is due


@dataclass
class Stall:
    """A stalled desktop and a reading one in ``conversation`` on one connector, without send limits."""

    conversation: str
    connector: processes.Server
    stalled: StalledDesktop
    reader: faults.Desktop
    pubsub: faults.PubSub

    async def fill(self, pushes: list[tuple[str, str]], *, padding: int) -> None:
        """Push, until the reading desktop has them all: the connector then holds the rest for the stalled one."""
        await faults.push_concurrently(self.pubsub, pushes, concurrency=8, padding=padding)
        await faults.settle(lambda: len(self.reader.received) >= len(pushes))


@contextlib.asynccontextmanager
async def stall(**connector_env: str) -> AsyncIterator[Stall]:
    (conversation,) = faults.conversations(1)
    with processes.redis_server(private=True) as store, \
            processes.service_server(role="connector", redis=store, **NO_LIMIT, **connector_env) as connector, \
            processes.service_server(role="interceptor", redis=store) as interceptor:
        stalled, reader = StalledDesktop(connector.port), faults.Desktop()
        pubsub = faults.PubSub(interceptor, faults.Tally("stalled sends"))
        try:
            await stalled.connect(faults.token())
            assert await stalled.call("join-conversation", conversation) == [True, conversation]
            await reader.connect(connector, faults.token(), conversation)
            yield Stall(conversation, connector, stalled, reader, pubsub)
        finally:
            stalled.close()
            await pubsub.close()
            await reader.client.disconnect()


async def test_an_acknowledgement_waits_behind_the_events_a_stalled_desktop_has_not_read() -> None:
    (second,) = faults.conversations(1)
    async with stall() as setup:
        stalled = setup.stalled
        pushes = [(setup.conversation, f"before-{number}") for number in range(pushes_past_the_socket_buffers())]
        await setup.fill(pushes, padding=SLOW_PADDING)
        # The connector has handed every event to the stalled desktop's sender, which waits on its buffers.
        ack_id = await stalled.request("join-conversation", second)
        await setup.pubsub.deliver(second, "after-join")
        answer = await stalled.acknowledgement(ack_id)
        await stalled.read_until(lambda d: len(d.events) > len(pushes), timeout=faults.WAIT)
        log = setup.connector.log()
    assert answer == [True, second]
    received = [event.payload["message_id"] for event in stalled.events]
    # Each once; the joined conversation's event need not wait behind the other's backlog (a join's start is a
    # replay, sent ahead of queued live events: offsets are per conversation, and each frame's vector says what
    # was sent before it).
    assert sorted(received) == sorted([*(message_id for _, message_id in pushes), "after-join"])
    seqs = [offsets.position(offset, setup.conversation).seq for offset in stalled.offsets()]
    assert seqs == sorted(seqs) and offsets.position(stalled.offsets()[-1], second).seq == 1
    assert stalled.ended is None
    assert "Traceback" not in log and '"severity": "ERROR"' not in log, log


async def test_a_ping_stuck_behind_unread_events_goes_unanswered_and_closes_the_connection() -> None:
    most_buffered = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    async with stall(SOCKETIO_PING_INTERVAL="3", SOCKETIO_PING_TIMEOUT="1") as setup:
        stalled = setup.stalled
        pushes = [(setup.conversation, f"big-{number}") for number in range(2 * most_buffered // BIG_PADDING + 5)]
        await setup.fill(pushes, padding=BIG_PADDING)
        await asyncio.sleep(4)  # past a ping and its timeout, reading nothing
        with contextlib.suppress(Ended):
            await stalled.read_until(lambda _: False, timeout=faults.WAIT)
        log = setup.connector.log()
    assert stalled.ended == (1000, ""), stalled.ended
    assert 0 < len(stalled.events) < len(pushes)  # what the buffers held; the rest is recoverable
    assert "no pong within 1s" in log and "Traceback" not in log
