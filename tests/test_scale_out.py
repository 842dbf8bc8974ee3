"""Scale-out: two connector processes and one interceptor process on one Redis.

Where the sample maps a conversation to one connector instance, every desktop
in the conversation must get every event, whichever connector it is on, and
exactly once. Desktops are python-socketio clients (two per connector) and the
npm socket.io-client through node; they join with both name forms.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest

from testing import clients, processes
from testing.clients import NodeDesktop, Push, SocketIODesktop
from testing.processes import Server

# After the last expected event, how long to keep listening for a duplicate.
QUIET_PERIOD = 1.0


@pytest.fixture(scope="module")
def cluster(redis_server: processes.RedisAddress) -> Iterator[dict[str, Server]]:
    """connector-a, connector-b and the interceptor, separate server processes sharing one Redis."""
    with contextlib.ExitStack() as stack:
        yield {
            "connector-a": stack.enter_context(processes.service_server(role="connector", redis=redis_server)),
            "connector-b": stack.enter_context(processes.service_server(role="connector", redis=redis_server)),
            "interceptor": stack.enter_context(processes.service_server(role="interceptor", redis=redis_server)),
        }


async def wait_for_round(
    python_desktops: list[SocketIODesktop], node: NodeDesktop, *, previously: int, pushes: list[Push]
) -> None:
    """Wait until every desktop has the round's events, then a quiet period for duplicates to show."""
    expected = previously + len(pushes)
    for desktop in python_desktops:
        await clients.wait_until(lambda: len(desktop.events) >= expected, what=f"{desktop.name}'s events")
    await node.wait_for(lambda n: len(n.events) >= expected, what="the node desktop's events")
    await asyncio.sleep(QUIET_PERIOD)


@dataclass
class Desktops:
    """Desktops joined to the fixture conversations: two python ones per connector and one node one."""

    python: dict[str, SocketIODesktop]  # named after their connector ("a-..." or "b-...")
    node: NodeDesktop
    conversations: list[str]  # normalised names
    first: list[Push]  # a round of every fixture
    second: list[Push]  # the same again, with new message ids


@pytest.fixture
async def desktops(cluster, settings) -> AsyncIterator[Desktops]:
    suffix = uuid.uuid4().hex[:8]
    first = clients.valid_pushes(conversation_suffix=suffix, message_suffix="-round1")
    second = clients.valid_pushes(conversation_suffix=suffix, message_suffix="-round2")
    by_conversation = clients.one_per_conversation(first)
    long_names = [fixture.published_as for fixture in by_conversation]
    short_names = [fixture.conversation for fixture in by_conversation]
    token = clients.server_token(settings, user="agent")
    python = {name: SocketIODesktop(name) for name in ("a-leaves", "a-stays", "b-disconnects", "b-stays")}
    try:
        for name, desktop in python.items():
            await desktop.connect(cluster[f"connector-{name[0]}"], token)
            # Half join as projects/P/locations/L/conversations/C, half as projects/P/conversations/C.
            for joined_as, normalised in zip(long_names if name.endswith("stays") else short_names, short_names):
                assert list(await desktop.join(joined_as)) == [True, normalised]
        async with clients.node_desktop(cluster["connector-b"], token=token, join=tuple(long_names)) as node:
            await node.wait_for(lambda n: len(n.of_kind("ack")) == len(long_names), what="the node join acks")
            assert [ack["args"] for ack in node.of_kind("ack")] == [[True, name] for name in short_names]
            yield Desktops(python=python, node=node, conversations=short_names, first=first, second=second)
            assert not node.of_kind("disconnect"), node.lines
    finally:
        for desktop in python.values():
            await desktop.disconnect()


async def test_every_desktop_on_both_connectors_gets_each_event_exactly_once(cluster, desktops):
    """Each fixture pushed to the interceptor reaches all five desktops, on both connectors, once each."""
    started = datetime.now(timezone.utc)
    await clients.push_all(cluster["interceptor"], desktops.first)
    await wait_for_round(list(desktops.python.values()), desktops.node, previously=0, pushes=desktops.first)
    window = (started, datetime.now(timezone.utc))
    for desktop in desktops.python.values():
        clients.assert_received_exactly(desktop.events, desktops.first, received_between=window)
    clients.assert_received_exactly(desktops.node.events, desktops.first, received_between=window)


async def test_after_one_desktop_leaves_and_one_disconnects_the_rest_still_get_each_event_once(cluster, desktops):
    """A desktop that left and one that disconnected get nothing more; those remaining on both connectors still
    get each event exactly once (a leave or disconnect on one connector does not unsubscribe the others)."""
    python, node = desktops.python, desktops.node
    await clients.push_all(cluster["interceptor"], desktops.first)
    await wait_for_round(list(python.values()), node, previously=0, pushes=desktops.first)

    for name in desktops.conversations:
        assert list(await python["a-leaves"].leave(name)) == [True, name]
    await python["b-disconnects"].disconnect()
    departed = {name: list(python[name].events) for name in ("a-leaves", "b-disconnects")}
    remaining = [python["a-stays"], python["b-stays"]]

    started = datetime.now(timezone.utc)
    await clients.push_all(cluster["interceptor"], desktops.second)
    await wait_for_round(remaining, node, previously=len(desktops.first), pushes=desktops.second)
    window = (started, datetime.now(timezone.utc))
    earlier = len(desktops.first)
    for desktop in remaining:
        clients.assert_received_exactly(desktop.events[earlier:], desktops.second, received_between=window)
    clients.assert_received_exactly(node.events[earlier:], desktops.second, received_between=window)
    for name, events in departed.items():
        assert python[name].events == events, name
    # Events for a socket that went away must not break the connector that held it.
    for server in cluster.values():
        assert "Traceback" not in server.log(), server.log()
