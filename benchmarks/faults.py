"""Fault scenarios against real processes: each prints pushed, acknowledged, delivered, duplicated, lost.

    .venv/bin/python -m benchmarks.faults [--quick]
        [--scenario redis-outage|connector-killed|churn|redeliveries|slow-desktop|rolling-deploy|cluster-primary-killed
                    |cluster-reshard|cluster-connector-killed]
        [--servers-from PATH]

Every scenario starts its own private redis-server and server processes on
127.0.0.1 (``testing.processes``), pushes through the interceptor as Pub/Sub
would (a push that is not acknowledged is retried with backoff until it is),
and counts what the desktops received:

- ``redis-outage``: Redis stopped for a few seconds mid-stream, then started
  again (empty, as after a restart without persistence). The interceptor
  answers 503 meanwhile; the connector re-subscribes by itself and catches up.
- ``connector-killed``: the connector a desktop (the npm socket.io-client,
  through a loopback proxy) is on is killed with SIGKILL mid-stream; the
  desktop reconnects to another connector and recovers what it missed.
- ``churn``: many desktops connect, join, receive one event and leave; then
  no subscription or presence key is left, and every session record expires
  within the recovery window.
- ``redeliveries``: Pub/Sub redelivers 10% of the pushes, half of those
  concurrently with the original.
- ``slow-desktop``: a desktop (``testing.stalled_desktop``: a small receive
  buffer, then no reading at all) stops reading while 10,000 events go to its
  conversation, five python-socketio desktops reading in it and another. The
  connector's VmRSS must stay within a bound made of the send queue limit;
  the stalled desktop must be closed as too slow (4429), then reconnect with
  its pid and last offset and recover every event it missed, once, in order.
  The other desktops' latency is printed for the same pushes before it
  stalled, while it stalls, and after it left. Pushes wait while a reading
  desktop is half a send queue behind, so that the limits close only the
  stalled one, however loaded the machine.
- ``cluster-primary-killed``, ``cluster-reshard``: on a private Redis Cluster (three primaries, a replica each),
  pushes to conversations on every shard, Socket.IO and ``/ws/`` desktops on two connectors, each cut once near
  the end and back on the other connector (recovery, resume ``after``); mid-stream the primary owning the busy
  conversations is killed (SIGKILL; its replica takes over), or their slots move to another primary key by key
  (``testing.cluster_faults``). ``cluster-primary-killed`` runs twice: without ``REDIS_ACK_REPLICAS``, where a
  killed primary may lose acknowledged events it had not replicated (printed, let pass), then with it (1).
- ``cluster-connector-killed``: ``connector-killed`` on a private Redis Cluster, the desktop in a conversation
  on each shard.
- ``rolling-deploy``: two connectors behind round-robin nginx, 1,000 desktops (Socket.IO over WebSocket and
  long-polling on the npm socket.io-client, and ``/ws/``), pushes at a steady 20 a second; one connector gets
  SIGTERM and, once it has exited, a new one starts on its port. Every desktop must end connected, nothing
  lost or repeated, no "No connection available" in any log; prints the reconnections' p50/p99
  (``testing.rolling_deploy``). ``--servers-from`` runs the servers from another checkout (before and after).

Exit status 1 when any event was lost or duplicated, or anything was left behind or went wrong.
``tests/test_faults.py`` runs each scenario small.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from testing import cluster_faults, processes
from testing.fault_scenarios import Tally, churn, connector_killed, redeliveries, redis_outage, slow_desktop
from testing.rolling_deploy import rolling_deploy

SCENARIOS = {
    "redis-outage": lambda quick: redis_outage(pushes=60 if quick else 600),
    "connector-killed": lambda quick: connector_killed(pushes=40 if quick else 400),
    "churn": lambda quick: churn(desktops=100 if quick else 1000),
    "redeliveries": lambda quick: redeliveries(pushes=200 if quick else 2000),
    "slow-desktop": lambda quick: slow_desktop(pushes=2000, limit=100, padding=8000) if quick
    else slow_desktop(pushes=10_000, limit=1000, rate=200),
    "rolling-deploy": lambda quick: rolling_deploy(desktops=150 if quick else 1000, tree=SERVERS_FROM[0]),
    "cluster-primary-killed": lambda quick: both_variants(**CLUSTER_SIZES[quick]),
    "cluster-reshard": lambda quick: cluster_faults.cluster_reshard(**CLUSTER_SIZES[quick]),
    "cluster-connector-killed": lambda quick: connector_killed(pushes=40 if quick else 400, cluster=True),
}
CLUSTER_SIZES = {True: {"pushes": 120, "rate": 60.0, "per_shard": 1, "desktops": 4},
                 False: {"pushes": 3000, "rate": 200.0, "per_shard": 4, "desktops": 24}}
SERVERS_FROM = [processes.REPOSITORY]


async def both_variants(**sizes) -> list[Tally]:
    """``cluster-primary-killed`` without ``REDIS_ACK_REPLICAS``, then with it (1)."""
    return [await cluster_faults.cluster_primary_killed(**sizes, ack_replicas=ack_replicas)
            for ack_replicas in (False, True)]


async def run(names: list[str], quick: bool) -> list[Tally]:
    tallies = []
    for name in names:
        result = await SCENARIOS[name](quick)
        for tally in result if isinstance(result, list) else [result]:
            print(tally.line(), flush=True)
            tallies.append(tally)
    return tallies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    parser.add_argument("--quick", action="store_true", help="small runs (what the test suite does)")
    parser.add_argument("--servers-from", type=Path, default=processes.REPOSITORY,
                        help="the checkout whose servers rolling-deploy runs (default: this one)")
    args = parser.parse_args(argv)
    SERVERS_FROM[0] = args.servers_from.resolve()
    tallies = asyncio.run(run(args.scenario or list(SCENARIOS), args.quick))
    return 0 if all(tally.ok for tally in tallies) else 1


if __name__ == "__main__":
    sys.exit(main())
