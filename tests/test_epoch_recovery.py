"""Desktops that come back after Redis restarted empty get what was pushed since it came back, on both transports.

Redis is stopped and started again (empty) under a connector and an
interceptor. A long-polling session's keys go with it: socket.io-client's
next GET is refused, it reconnects with its ``pid`` and last offset (of the
lost epoch), is told it was not recovered, and joins its conversation again.
Every event of the new epoch was pushed after its last one, so its join
starts at the new epoch's start: what was pushed between Redis's return and
the re-join arrives, once, in order. A WebSocket desktop that reconnects with
such an offset gets the same; a desktop that never had an offset gets only
what comes after its join.
"""

from __future__ import annotations

import asyncio
import contextlib

from connector.desktops import offsets as vector_offsets
from testing import clients, processes
from testing import fault_scenarios as faults
from testing.stalled_desktop import StalledDesktop

PING = {"SOCKETIO_PING_INTERVAL": "2", "SOCKETIO_PING_TIMEOUT": "2"}


def message_ids(node: clients.NodeDesktop) -> list[str]:
    return [payload["message_id"] for _, payload in node.events]


async def deliver(interceptor: processes.Server, conversation: str, ids: list[str]) -> None:
    """Push each of ``ids`` in turn, retried until acknowledged (the interceptor answers 503 while Redis is away)."""
    pubsub = faults.PubSub(interceptor, faults.Tally("pushes"))
    try:
        for message_id in ids:
            await pubsub.deliver(conversation, message_id)
    finally:
        await pubsub.close()
    assert pubsub.tally.acknowledged == len(ids)


async def test_a_polling_desktop_rejoining_after_redis_restarted_empty_gets_what_came_meanwhile() -> None:
    (conversation,) = faults.conversations(1)
    before, window, gap, live = ([f"{stage}-{n}" for n in range(3)] for stage in ("before", "window", "gap", "live"))
    with processes.restartable_redis() as store, \
            processes.service_server(role="connector", redis=store.address, **PING) as connector, \
            processes.service_server(role="interceptor", redis=store.address) as interceptor:
        async with clients.node_desktop(connector, token=faults.token(), join=(conversation,), reconnect=True,
                                        transports="polling", timeout=120) as node:
            await node.wait_for(lambda n: len(n.of_kind("ack")) == 1, what="the join")
            await deliver(interceptor, conversation, before)
            await node.wait_for(lambda n: len(n.events) == 3, what="the events before the restart")
            store.stop()
            store.start()
            await deliver(interceptor, conversation, window)  # before or after the client is back: either way
            await node.wait_for(lambda n: len(n.of_kind("connected")) == 2, what="the reconnection")
            assert [line["recovered"] for line in node.of_kind("connected")] == [False, False]
            await deliver(interceptor, conversation, gap)
            await node.command(f"join {conversation}")
            await node.wait_for(lambda n: len(n.of_kind("ack")) == 2, what="the join again")
            await deliver(interceptor, conversation, live)
            expected = before + window + gap + live
            with contextlib.suppress(AssertionError):
                await node.wait_for(lambda n: len(n.events) >= len(expected), what="every event")
            await asyncio.sleep(1)  # a duplicate would show by now
            received = message_ids(node)
            offsets = node.offsets
    assert received == expected, received
    new_epoch = [vector_offsets.position(offset, conversation) for offset in offsets[3:]]
    assert [offset.seq for offset in new_epoch] == list(range(1, 10))
    lost_epoch = vector_offsets.position(offsets[2], conversation).epoch
    assert {offset.epoch for offset in new_epoch} != {lost_epoch} and len({o.epoch for o in new_epoch}) == 1


async def test_a_websocket_desktop_back_with_a_lost_epoch_s_offset_gets_it_and_a_new_one_does_not() -> None:
    """No desktop is in the conversation while Redis restarts (another keeps the process's subscription up, and
    its catch-up done before the pushes): what the desktops get of the pushes before their joins is the joins'."""
    conversation, elsewhere = faults.conversations(2)
    with processes.restartable_redis() as store, \
            processes.service_server(role="connector", redis=store.address) as connector, \
            processes.service_server(role="interceptor", redis=store.address) as interceptor:
        first, anchor = StalledDesktop(connector.port, receive_buffer=None), StalledDesktop(connector.port)
        back, fresh = StalledDesktop(connector.port, receive_buffer=None), StalledDesktop(connector.port)
        try:
            await anchor.connect(faults.token())
            assert await anchor.call("join-conversation", elsewhere) == [True, elsewhere]
            await first.connect(faults.token())
            assert await first.call("join-conversation", conversation) == [True, conversation]
            await deliver(interceptor, conversation, ["before"])
            await first.read_until(lambda d: len(d.events) == 1, timeout=faults.WAIT)
            first.close()
            pid, offset = first.pid, first.offsets()[-1]
            store.stop()
            store.start()
            # The process's subscription is back, and caught up, once an event of it arrives.
            await deliver(interceptor, elsewhere, ["probe"])
            await anchor.read_until(lambda d: len(d.events) == 1, timeout=faults.WAIT)
            await deliver(interceptor, conversation, ["after-0", "after-1"])
            answer = await back.connect(faults.token(), pid=pid, offset=offset)
            assert answer["pid"] != pid  # not recovered: its session went with Redis's data
            await fresh.connect(faults.token())
            for desktop in (back, fresh):
                assert await desktop.call("join-conversation", conversation) == [True, conversation]
            await deliver(interceptor, conversation, ["live"])
            with contextlib.suppress(TimeoutError):
                await back.read_until(lambda d: len(d.events) == 3, timeout=10)
            await fresh.read_until(lambda d: len(d.events) == 1, timeout=faults.WAIT)
            await asyncio.sleep(0.5)
            with contextlib.suppress(TimeoutError):
                await back.read_until(lambda d: len(d.events) > 3, timeout=0.5)
        finally:
            for desktop in (first, anchor, back, fresh):
                desktop.close()
    assert [event.payload["message_id"] for event in back.events] == ["after-0", "after-1", "live"]
    assert [event.payload["message_id"] for event in fresh.events] == ["live"]
