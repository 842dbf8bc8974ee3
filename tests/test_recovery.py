"""Socket.IO connection state recovery with the stock npm socket.io-client, across connector processes.

Two connector processes and one interceptor share one Redis (every test runs
on a standalone one, then on a cluster); the desktop reaches the connectors
through a TCP proxy on loopback, as through a load balancer. The connection
drops (the proxy cuts it, or the connector process is killed with SIGKILL),
events are pushed meanwhile, and the client reconnects by itself, to the
other process: it must report ``socket.recovered``, and receive every missed
event once, in order.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import Iterator

import httpx
import pytest

from testing import clients, processes
from testing.clients import NodeDesktop
from testing.push_bodies import push, push_body
from testing.tcp_proxy import tcp_proxy

PROJECT = processes.TEST_PROJECT


@pytest.fixture(scope="module", params=["standalone", "cluster"])
def recovery_redis(request) -> Iterator[processes.RedisAddress | processes.RedisClusterAddress]:
    """A private standalone Redis, then the session's Redis Cluster: every test runs on both."""
    if request.param == "cluster":
        yield request.getfixturevalue("redis_cluster")
        return
    with processes.redis_server(private=True) as address:
        yield address


def connector(redis: processes.RedisAddress, **extra: str):
    return processes.service_server(role="connector", redis=redis, SOCKETIO_PING_INTERVAL="2",
                                   SOCKETIO_PING_TIMEOUT="2", **extra)


@pytest.fixture(scope="module")
def interceptor(recovery_redis) -> Iterator[processes.Server]:
    with processes.service_server(role="interceptor", redis=recovery_redis) as server:
        yield server


def conversation() -> str:
    return f"projects/{PROJECT}/conversations/recover-{uuid.uuid4().hex[:8]}"


def message_ids(node: NodeDesktop) -> list[str]:
    return [payload["message_id"] for _, payload in node.events]


def connections(node: NodeDesktop) -> list[bool]:
    return [line["recovered"] for line in node.of_kind("connected")]


async def drop_and_recover(settings, interceptor, redis, *, kill: bool, push_before: bool) -> NodeDesktop:
    name = conversation()
    token = clients.server_token(settings, user="agent")
    with connector(redis) as first, connector(redis) as second:
        async with tcp_proxy(first.port) as proxy, clients.node_desktop(
            proxy, token=token, join=(name,), reconnect=True, timeout=60
        ) as node:
            await node.wait_for(lambda n: len(n.of_kind("ack")) == 1, what="the join")
            if push_before:
                await push(interceptor, name, "before")
                await node.wait_for(lambda n: message_ids(n) == ["before"], what="the first event")
            proxy.backend_port = processes.free_port()  # nothing there: the client stays away meanwhile
            if kill:
                first.process.send_signal(signal.SIGKILL)
                first.process.wait()
            proxy.cut()
            missed = [f"missed-{number}" for number in range(5)]
            for message_id in missed:
                await push(interceptor, name, message_id)
            proxy.backend_port = second.port  # the reconnection lands on the other process
            expected = (["before"] if push_before else []) + missed
            await node.wait_for(lambda n: len(message_ids(n)) >= len(expected), what="the missed events")
            await asyncio.sleep(1.0)  # a duplicate would show up now
            assert message_ids(node) == expected
            assert connections(node) == [False, True], node.lines
            # And the recovered session is live again on the second process.
            await push(interceptor, name, "after")
            await node.wait_for(lambda n: message_ids(n)[-1:] == ["after"], what="a live event after recovery")
            return node


async def test_a_dropped_connection_recovers_every_missed_event_on_another_process(
    settings, interceptor, recovery_redis
) -> None:
    await drop_and_recover(settings, interceptor, recovery_redis, kill=False, push_before=True)


async def test_a_killed_connector_s_desktop_recovers_on_another_process(settings, interceptor, recovery_redis) -> None:
    await drop_and_recover(settings, interceptor, recovery_redis, kill=True, push_before=True)


async def test_a_session_that_had_no_event_yet_recovers_too(settings, interceptor, recovery_redis) -> None:
    """socket.io-client sends no offset before its first event; the session's own start point is used."""
    await drop_and_recover(settings, interceptor, recovery_redis, kill=False, push_before=False)


async def assert_not_recovered_past_the_history(settings, recovery_redis, push_missed, **interceptor_env: str) -> None:
    """A desktop away while ``push_missed(interceptor, name)`` pushes past what an interceptor with
    ``interceptor_env`` keeps: its reconnection is told it was not recovered, and nothing is replayed."""
    name = conversation()
    token = clients.server_token(settings, user="agent")
    with processes.service_server(role="interceptor", redis=recovery_redis, **interceptor_env) as small, \
            connector(recovery_redis) as first:
        async with tcp_proxy(first.port) as proxy, clients.node_desktop(
            proxy, token=token, join=(name,), reconnect=True, timeout=60
        ) as node:
            await node.wait_for(lambda n: len(n.of_kind("ack")) == 1, what="the join")
            await push(small, name, "seen")
            await node.wait_for(lambda n: message_ids(n) == ["seen"], what="the first event")
            proxy.backend_port = processes.free_port()  # nothing there: the client stays away meanwhile
            proxy.cut()
            await push_missed(small, name)
            proxy.backend_port = first.port
            await node.wait_for(lambda n: len(connections(n)) == 2, what="the reconnection")
            assert connections(node) == [False, False]
            await asyncio.sleep(0.5)
            assert message_ids(node) == ["seen"]  # nothing passed off as a complete replay


async def test_past_the_kept_history_the_client_is_told_it_was_not_recovered(
    settings, interceptor, recovery_redis
) -> None:
    async def fifteen(small, name: str) -> None:
        for number in range(15):  # more than the 10 kept: the replay could not be whole
            await push(small, name, f"lost-{number}")

    await assert_not_recovered_past_the_history(settings, recovery_redis, fifteen, EVENT_HISTORY_MAX_EVENTS="10")


async def test_past_the_kept_history_s_bytes_the_client_is_told_it_was_not_recovered(
    settings, interceptor, recovery_redis
) -> None:
    """Four events of 30 kB under a 64 KiB history: far below the count limit, the first missed one was
    trimmed for bytes, and the replay is not passed off as whole."""

    async def four_large(small, name: str) -> None:
        for number in range(4):
            body = push_body({"conversation": name, "text": "x" * 30_000}, messageId=f"lost-{number}")
            async with httpx.AsyncClient(timeout=10) as client:
                response = await client.post(f"{small.http_url}/new-message-event", content=body,
                                             headers={"Content-Type": "application/json"})
            assert response.status_code == 204, response.text

    await assert_not_recovered_past_the_history(settings, recovery_redis, four_large, EVENT_HISTORY_MAX_BYTES="65536")


async def test_an_expired_session_is_not_recovered(settings, interceptor, recovery_redis) -> None:
    name = conversation()
    token = clients.server_token(settings, user="agent")
    with connector(recovery_redis, SOCKETIO_RECOVERY_SECONDS="1") as first:
        async with tcp_proxy(first.port) as proxy:
            async with clients.node_desktop(proxy, token=token, join=(name,), reconnect=True, timeout=60) as node:
                await node.wait_for(lambda n: len(n.of_kind("ack")) == 1, what="the join")
                proxy.backend_port = processes.free_port()  # nothing there: reconnections fail for a while
                proxy.cut()
                await asyncio.sleep(2.5)
                proxy.backend_port = first.port
                await node.wait_for(lambda n: len(connections(n)) == 2, what="the reconnection")
                assert connections(node) == [False, False]


@pytest.mark.parametrize("transports", ["websocket", "polling"])
async def test_a_history_join_after_live_events_does_not_move_the_offset_back(
    settings, interceptor, recovery_redis, transports
) -> None:
    """A join's history replays events older than the live ones already sent; the client keeps only the
    last offset it received, so a recovery after it must not send the live ones again."""
    live, late = conversation(), conversation()
    token = clients.server_token(settings, user="agent")
    with connector(recovery_redis, SOCKETIO_JOIN_HISTORY="all") as first:
        for message_id in ("old-1", "old-2"):
            await push(interceptor, late, message_id)
        async with tcp_proxy(first.port) as proxy, clients.node_desktop(
            proxy, token=token, join=(live,), reconnect=True, timeout=60, transports=transports
        ) as node:
            await node.wait_for(lambda n: len(n.of_kind("ack")) == 1, what="the join")
            for message_id in ("live-1", "live-2"):
                await push(interceptor, live, message_id)
            await node.wait_for(lambda n: message_ids(n) == ["live-1", "live-2"], what="the live events")
            await node.command(f"join {late}")
            expected = ["live-1", "live-2", "old-1", "old-2"]
            await node.wait_for(lambda n: message_ids(n) == expected, what="the late join's history")
            proxy.backend_port = processes.free_port()  # nothing there: the client stays away meanwhile
            proxy.cut()
            await push(interceptor, live, "missed")
            proxy.backend_port = first.port
            await node.wait_for(lambda n: len(message_ids(n)) >= len(expected) + 1, what="the missed event")
            await asyncio.sleep(1.0)  # a duplicate would show up now
            assert message_ids(node) == [*expected, "missed"]
            assert connections(node) == [False, True], node.lines
