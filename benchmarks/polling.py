"""Push-to-desktop latency of long-polling desktops beside WebSocket desktops, in one run, without stickiness.

Starts a private redis-server (or uses ``AA_TEST_REDIS``), one interceptor
and two connector processes behind nginx round-robin (``testing.nginx_proxy``:
each request to the next connector in turn, as a load balancer without
sticky sessions), connects python-socketio desktops through nginx, every
other one on ``transports=['polling']`` and the rest on ``['websocket']``,
two of each kind per conversation, then POSTs Pub/Sub pushes to the
interceptor (``benchmarks.socketio_delivery``'s push phase) and prints
delivery counts and push-to-desktop latency per transport.

    .venv/bin/python -m benchmarks.polling [--desktops 40 --conversations 10 --pushes 1000 --concurrency 8]
        [--redis cluster]

``--redis cluster`` runs it on a private local Redis Cluster (three primaries,
a replica each) instead of a standalone Redis.

Then the wake phase (``--wakes``, 200): one long-polling session by hand, its
GET waiting on one connector while a POST on the other queues an answer (an
unknown event's acknowledgement), which must wake it: the time from sending
the POST to the GET's answer, the connectors' CPU per wake and, on a cluster,
the pub/sub messages the nodes sent each other over the cluster bus per wake
(``CLUSTER INFO``'s ``cluster_stats_messages_publish_sent`` and
``..._publishshard_sent``, summed over every node).

Everything binds to 127.0.0.1. Exit status 1 when an event was lost,
duplicated or misdelivered, or a desktop was disconnected.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import httpx
import redis as redis_sync

from benchmarks.servers import process_usage
from benchmarks.socketio_delivery import (
    Desktop,
    connect_all,
    disconnect_all,
    expected_deliveries,
    latency_figures,
    push_all,
    suspicious_lines,
    tally,
    wait_for_deliveries,
)
from testing import processes
from testing.engineio_polling import session_url
from testing.nginx_proxy import round_robin
from testing.tokens import mint_tokens

TRANSPORTS = ("polling", "websocket")


def transport_of(index: int, conversations: int) -> str:
    """Desktop ``index`` joins conversation ``index % conversations``: alternate the transport per round."""
    return TRANSPORTS[(index // conversations) % 2]


def report(args: argparse.Namespace, desktops: list[Desktop], started: dict[str, float],
           logs: dict[str, list[str]], connector_cpu: float) -> bool:
    counted = tally(desktops, started, args.conversations)
    latencies: dict[str, list[float]] = {transport: [] for transport in TRANSPORTS}
    for desktop, latency, _ in counted.first:
        latencies[transport_of(desktop.index, args.conversations)].append(latency)
    print(f"desktops={args.desktops} (half polling, half websocket) conversations={args.conversations} "
          f"pushes={args.pushes} concurrency={args.concurrency}, 2 connectors behind nginx round-robin, "
          f"{args.redis} Redis")
    print(f"delivered / expected   {counted.delivered} / {counted.expected}")
    print(f"duplicates             {counted.duplicates}")
    print(f"misdelivered           {counted.misdelivered}")
    print(f"unexpected disconnects {counted.disconnects}")
    for transport, values in latencies.items():
        print(f"{transport:<10} push-to-desktop ms  {latency_figures(values)}  ({len(values)} deliveries)")
    print(f"connectors' CPU        {connector_cpu:.2f} s (both, from the first push to the last delivery)")
    for role, lines in logs.items():
        print(f"{role} log: {len(lines)} warning/error lines")
        for line in lines[:5]:
            print(f"    {line}")
    return counted.clean


def cluster_bus_publishes(store: processes.RedisAddress | processes.RedisClusterAddress) -> int:
    """Pub/sub messages the cluster's nodes have sent each other over the cluster bus (0 on a standalone Redis)."""
    total = 0
    for node in getattr(store, "nodes", ()):
        with redis_sync.Redis(host=store.host, port=node.port) as client:
            fields = client.cluster("INFO")  # parsed by redis-py into a dict
        total += sum(int(fields.get(name, 0)) for name in ("cluster_stats_messages_publish_sent",
                                                             "cluster_stats_messages_publishshard_sent"))
    return total


async def wake_phase(args: argparse.Namespace, waiting_on: processes.Server, posting_to: processes.Server,
                     token: str, store) -> list[str]:
    """One session's GET waits on ``waiting_on`` while a POST to ``posting_to`` queues an answer, ``args.wakes``
    times: the report's lines."""
    latencies: list[float] = []
    async with httpx.AsyncClient(timeout=args.timeout) as client:
        opened = await client.get(f"{waiting_on.http_url}/socket.io/", params={"EIO": "4", "transport": "polling"})
        sid = json.loads(opened.text[1:])["sid"]
        await client.post(session_url(waiting_on.http_url, sid), content=f'40{{"token":"{token}"}}'.encode())
        assert (await client.get(session_url(waiting_on.http_url, sid))).text.startswith("40{")
        cpu_before = sum(process_usage(server.process.pid)[1] for server in (waiting_on, posting_to))
        bus_before = cluster_bus_publishes(store)
        for number in range(args.wakes):
            waiting = asyncio.create_task(client.get(session_url(waiting_on.http_url, sid)))
            await asyncio.sleep(0.02)  # the GET waits by then (one that came later would answer at once)
            started = time.perf_counter()
            await client.post(session_url(posting_to.http_url, sid), content=f'42{number}["wake"]'.encode())
            frames = (await waiting).text.split("\x1e")
            while not any(frame.startswith(f"43{number}[") for frame in frames):  # a ping came first
                if "2" in frames:
                    await client.post(session_url(posting_to.http_url, sid), content=b"3")
                frames = (await client.get(session_url(waiting_on.http_url, sid))).text.split("\x1e")
            latencies.append((time.perf_counter() - started) * 1000)
        cpu = sum(process_usage(server.process.pid)[1] for server in (waiting_on, posting_to)) - cpu_before
        bus = cluster_bus_publishes(store) - bus_before
        await client.post(session_url(posting_to.http_url, sid), content=b"1")
    return [f"wakes                  {args.wakes}: POST on one connector to the answer of the GET waiting on the "
            f"other, ms  {latency_figures(latencies)}",
            f"wake CPU               {cpu / max(args.wakes, 1) * 1000:.2f} ms per wake (both connectors, the "
            f"POST's and the GET's requests included)",
            f"cluster-bus pub/sub    {bus / max(args.wakes, 1):.1f} messages per wake "
            f"({'cluster' if getattr(store, 'nodes', ()) else 'none on a standalone Redis'})"]


async def run(args: argparse.Namespace) -> bool:
    tokens = mint_tokens([f"bench-agent-{index}" for index in range(args.desktops)])
    store = processes.redis_cluster(private=True) if args.redis == "cluster" else processes.redis_server()
    wakes: list[str] = []
    with store as redis, \
            processes.service_server(role="interceptor", redis=redis) as interceptor, \
            processes.service_server(role="connector", redis=redis) as first, \
            processes.service_server(role="connector", redis=redis) as second, \
            round_robin([first.port, second.port]) as proxy:
        desktops = await connect_all(args, proxy.http_url, tokens, lambda index: (transport_of(index, args.conversations),))
        try:
            # Let every polling desktop settle into its long-poll before measuring.
            await asyncio.sleep(1.0)
            cpu_before = sum(process_usage(server.process.pid)[1] for server in (first, second))
            pushes = await push_all(args, interceptor.http_url)
            wanted = len(expected_deliveries(desktops, pushes.started, args.conversations))
            await wait_for_deliveries(desktops, wanted, settle=args.settle, deadline=args.deadline)
            connector_cpu = sum(process_usage(server.process.pid)[1] for server in (first, second)) - cpu_before
            if args.wakes:
                wakes = await wake_phase(args, first, second, tokens[0], redis)
        finally:
            await disconnect_all(desktops, timeout=args.timeout)
        await asyncio.sleep(0.5)
        logs = {name: suspicious_lines(server)[1]
                for name, server in (("interceptor", interceptor), ("connector 1", first), ("connector 2", second))}
    clean = report(args, desktops, pushes.started, logs, connector_cpu)
    for line in wakes:
        print(line)
    return clean


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--desktops", type=int, default=40, help="Socket.IO clients, half of them polling (40)")
    parser.add_argument("--conversations", type=int, default=10,
                        help="conversations; desktop i joins conversation i mod this (10)")
    parser.add_argument("--pushes", type=int, default=1000, help="push envelopes to POST (1000)")
    parser.add_argument("--concurrency", type=int, default=8, help="POSTs in flight at once (8)")
    parser.add_argument("--timeout", type=float, default=15.0, help="per connect/join/POST timeout, s")
    parser.add_argument("--settle", type=float, default=5.0, help="stop waiting after this long with no delivery, s")
    parser.add_argument("--wakes", type=int, default=200, help="long-poll wakes to time after the pushes (200)")
    parser.add_argument("--redis", choices=("standalone", "cluster"), default="standalone",
                        help="the kind of Redis the servers share (standalone)")
    parser.add_argument("--deadline", type=float, default=300.0, help="cap on the push phase and on the wait, s")
    args = parser.parse_args(argv)
    args.http_client = "httpx"
    if min(args.desktops, args.conversations, args.pushes, args.concurrency) < 1:
        parser.error("counts must be at least 1")
    if 2 * args.conversations > args.desktops:
        parser.error("every conversation needs a desktop of each transport: --desktops >= 2 * --conversations")
    return args


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    ok = asyncio.run(run(parse_arguments(argv)))
    print(f"wall time              {time.perf_counter() - started:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
