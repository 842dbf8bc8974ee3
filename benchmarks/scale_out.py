"""Scale-out: N interceptor and M connector processes on a standalone Redis and on a three-primary Redis Cluster.

For each Redis (``--redis``: standalone, cluster) and each shape (``--shapes``, NxM: N interceptor and M
connector processes; default 1x1 2x2), from fresh processes: a private redis-server, or a private cluster of
six (three primaries with a replica each, ``testing.processes.redis_cluster``); the servers started with the
image's server command and ENV (``REDIS_CLUSTER=true`` on the cluster); ``--conversations`` conversations with
``--per-conversation`` python-socketio desktops each (two by default), a conversation's desktops on different
connectors when there are several, held by ``--workers`` load-generator processes that freeze their GC once
joined. After a warm-up (pushes to conversations without desktops) and ``--idle`` s of each Redis node idle:

1. unpaced: ``--pushes`` pushes, 32 in flight, round-robin over the interceptors, the four endpoints and the
   conversations: pushes acknowledged (204) per second;
2. paced: ``--paced-pushes`` pushes at ``--rate``/s: push-to-desktop latency (stamped just before the POST,
   read by the desktop as the event arrives);
3. skewed: ``--skewed-pushes`` at ``--skewed-rate``/s to the conversations of one primary only, the other
   primaries quiet (a standalone Redis: every conversation): the latency when the load is uneven.

Per phase and Redis node (``benchmarks/redis_nodes.py``): its CPU per push of its shard with its idle rate
subtracted (``INFO cpu``), and ``FCALL`` / ``SPUBLISH`` µs per call and calls per push (``INFO
commandstats``). Per primary, from Redis itself: the conversations it holds and their appends, and the
max/mean of each over the primaries. Then one summary line per run, and the capacity model
(``deployment/capacity.py``) with the Redis CPU per push of the busiest primary of the cluster runs, unpaced
(loaded) and paced (alone): shards, interceptors and connectors for 1,000, 10,000 and 50,000 pushes/s.

    .venv/bin/python -m benchmarks.scale_out                      # 1x1 2x2 on both, ~4 minutes
    .venv/bin/python -m benchmarks.scale_out --redis cluster --shapes 2x2 --rate 300
    .venv/bin/python -m benchmarks.scale_out --quick              # seconds (tests/test_benchmark_scale_out.py)
    .venv/bin/python -m benchmarks.scale_out --model-only         # the model with its default figures

On this 2-core machine every process shares the same cores, so pushes/s cannot grow with shards or
processes: the figures to carry elsewhere are the CPU per push on each node and the spread. Exit status 1
when a push was refused, an event lost, duplicated or misrouted, a desktop failed or a server logged an error
(its WARNING lines are printed under the run, not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import math
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
import uvloop

from benchmarks import redis_nodes
from benchmarks.desktop_fleet import Fleet, FleetSpec, WorkerReport, raise_file_limit
from benchmarks.scenarios import run_pushes, wait_for
from benchmarks.servers import process_usage
from benchmarks.sizing import envelope, normalised
from benchmarks.socketio_delivery import suspicious_lines
from deployment import capacity
from testing import processes
from testing.percentiles import percentile
from testing.tokens import mint_tokens

PROJECT = processes.TEST_PROJECT
IN_FLIGHT = 32  # the scenarios' POSTs in flight
MODEL_RATES = (1_000, 10_000, 50_000)
SEQUENCE_KEYS = f"*{{projects/{PROJECT}/conversations/SCALE-*}}:seq"  # the benchmark conversations' sequences


@dataclass(frozen=True)
class Shape:
    interceptors: int
    connectors: int

    def __str__(self) -> str:
        return f"{self.interceptors}x{self.connectors}"


def shape(text: str) -> Shape:
    interceptors, _, connectors = text.partition("x")
    if not (interceptors.isdigit() and connectors.isdigit() and int(interceptors) > 0 and int(connectors) > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not NxM (interceptors x connectors), such as 2x2")
    return Shape(int(interceptors), int(connectors))


def conversation(index: int) -> str:
    """Benchmark conversation ``index`` in the ``locations/global`` form Dialogflow publishes."""
    return f"projects/{PROJECT}/locations/global/conversations/SCALE-{index:05d}"


def warm_conversation(index: int) -> str:
    return f"projects/{PROJECT}/locations/global/conversations/WARM-{index:05d}"


@dataclass
class Phase:
    """What one push phase did and measured."""

    name: str
    acked: dict[str, int] = field(default_factory=dict)  # messageId -> conversation index, for every 204
    statuses: collections.Counter = field(default_factory=collections.Counter)
    errors: collections.Counter = field(default_factory=collections.Counter)
    push_seconds: float = 0.0
    expected: int = 0
    received: int = 0
    duplicated: int = 0
    latencies: list[float] = field(default_factory=list)
    interceptor_cpu: float = 0.0
    connector_cpu: float = 0.0
    redis: dict[int, redis_nodes.Counters] = field(default_factory=dict)  # node port -> its counters' change

    @property
    def acked_per_second(self) -> float:
        return len(self.acked) / max(self.push_seconds, 1e-9)


@dataclass
class Run:
    """One Redis kind and shape, from fresh processes."""

    kind: str
    shape: Shape
    nodes: list[redis_nodes.Node]
    phases: list[Phase]
    idle_cpu_per_second: dict[int, float]  # node port -> CPU seconds a second with nothing to do
    held: dict[int, dict[str, int]]  # primary port -> conversation -> appends
    problems: list[str]
    warnings: list[str]  # servers' WARNING lines: shown, not failures (a figure is still a figure)

    def node_us_per_push(self, phase: Phase, node: redis_nodes.Node) -> float:
        """The node's CPU in ``phase``, its idle rate subtracted, per push to a conversation of its shard."""
        change = phase.redis[node.port]
        pushes = self.shard_pushes(phase)[node.shard]
        busy = change.cpu - self.idle_cpu_per_second[node.port] * change.seconds
        return 1e6 * busy / pushes if pushes else math.nan

    def shard_pushes(self, phase: Phase) -> dict[int, int]:
        """Primary port -> the acknowledged pushes of ``phase`` to the conversations it holds."""
        owner = {name: port for port, names in self.held.items() for name in names}
        counts = collections.Counter(owner.get(normalised(conversation(index))) for index in phase.acked.values())
        return {port: counts[port] for port in self.held}

    def primaries(self) -> list[redis_nodes.Node]:
        return [node for node in self.nodes if node.role == "primary"]


def spread(values: list[float]) -> float:
    """max / mean (1.00 is even)."""
    mean = sum(values) / len(values) if values else 0
    return max(values) / mean if mean else math.nan


async def push(urls: list[str], phase: Phase, count: int, targets: list[int], rate: float | None) -> None:
    """POST ``count`` pushes round-robin over ``urls`` (the interceptors) and the conversations ``targets``."""
    now = datetime.now(UTC)
    publish_time = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    run_id = f"{phase.name.split()[0]}-{time.time_ns()}"
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30.0)) as session:

        async def post(sequence: int) -> None:
            target = targets[sequence % len(targets)]
            kind, message_id, data = envelope(sequence, run_id, conversation(target), publish_time)
            try:
                async with session.post(f"{urls[sequence % len(urls)]}/{kind}", data=data,
                                        headers=headers) as response:
                    await response.read()
                    phase.statuses[response.status] += 1
                    if response.status == 204:
                        phase.acked[message_id] = target
            except (TimeoutError, aiohttp.ClientError) as error:
                phase.errors[error.__class__.__name__] += 1

        began = time.monotonic()
        await run_pushes(post, count, in_flight=IN_FLIGHT, rate=rate)
        phase.push_seconds = time.monotonic() - began


def desktop_specs(args: argparse.Namespace, connectors: list[processes.Server],
                  tokens: list[str]) -> tuple[list[FleetSpec], dict[int, int]]:
    """The desktops, numbered connector by connector (a worker's share is contiguous), and desktop -> its
    conversation. Copy j of conversation k is on connector (k + j) mod M: a conversation's desktops on as
    many connectors as there are, up to one each."""
    placed = sorted(((k + j) % len(connectors), k) for k in range(args.conversations)
                    for j in range(args.per_conversation))
    member = {desktop: k for desktop, (_, k) in enumerate(placed)}
    per_connector = max(1, args.workers // len(connectors))
    specs = []
    for index, server in enumerate(connectors):
        mine = [desktop for desktop, (at, _) in enumerate(placed) if at == index]
        share = max(1, -(-len(mine) // per_connector))
        for first in range(0, len(mine), share):
            chunk = mine[first:first + share]
            specs.append(FleetSpec(url=server.http_url, first_index=chunk[0], tokens=[tokens[d] for d in chunk],
                                   conversations=[conversation(member[d]) for d in chunk], timeout=args.timeout))
    return specs, member


async def measure_phase(args: argparse.Namespace, phase: Phase, rate: float | None, count: int, targets: list[int],
                        fleet: Fleet, servers: dict[str, list[processes.Server]],
                        nodes: list[redis_nodes.Node], delivered_before: int) -> None:
    """One push phase: pushes, their deliveries awaited, every process's and Redis node's counters around it."""

    def cpu(role: str) -> float:
        return sum(process_usage(server.process.pid)[1] for server in servers[role])

    before = redis_nodes.snapshot(nodes), cpu("interceptor"), cpu("connector")
    await push([server.http_url for server in servers["interceptor"]], phase, count, targets, rate)
    phase.expected = len(phase.acked) * args.per_conversation
    await wait_for(fleet, delivered_before + phase.expected, settle=args.settle, deadline=args.deadline)
    phase.redis = redis_nodes.changes(redis_nodes.snapshot(nodes), before[0])
    phase.interceptor_cpu = cpu("interceptor") - before[1]
    phase.connector_cpu = cpu("connector") - before[2]


async def run_one(kind: str, layout: Shape, args: argparse.Namespace, tokens: list[str]) -> Run:
    """One run from fresh processes."""
    problems: list[str] = []
    phases = [Phase("unpaced"), Phase(f"paced {args.rate:g}/s"), Phase(f"skewed {args.skewed_rate:g}/s")]
    with contextlib.ExitStack() as stack:
        address = stack.enter_context(processes.redis_cluster(private=True) if kind == "cluster"
                                      else processes.redis_server(private=True))
        nodes = redis_nodes.nodes(address)
        environment = {**processes.IMAGE_ENV, **dict(item.split("=", 1) for item in args.server_env)}
        servers = {role: [stack.enter_context(processes.service_server(role=role, redis=address, **environment))
                          for _ in range(count)]
                   for role, count in (("connector", layout.connectors), ("interceptor", layout.interceptors))}
        specs, member = desktop_specs(args, servers["connector"], tokens)
        fleet = Fleet(specs)
        desktops = args.conversations * args.per_conversation
        joined, failures = await fleet.ready(timeout=max(60.0, desktops / 20))
        if joined < desktops or failures:
            problems.append(f"desktops joined {joined}/{desktops}: {failures[:3]}")
        print(f"== {kind} {layout}: {layout.interceptors} interceptor(s), {layout.connectors} connector(s), "
              f"{desktops} desktops in {args.conversations} conversations, {len(nodes)} Redis node(s) "
              f"({len([n for n in nodes if n.role == 'primary'])} primaries)", flush=True)
        # The first pushes load the function library and open each interceptor's connections: not a figure.
        warm = Phase("warm")
        urls = [server.http_url for server in servers["interceptor"]]
        for count, rate in ((100, 200.0), (300, None)):
            await push_warm(urls, warm, count, rate)
        idle_before = redis_nodes.snapshot(nodes)
        await asyncio.sleep(args.idle)
        idle = redis_nodes.changes(redis_nodes.snapshot(nodes), idle_before)
        gc.collect()
        gc.freeze()
        gc.disable()  # the pusher must not pause mid-phase (its latencies would read as the servers')
        try:
            delivered, every = 0, list(range(args.conversations))
            for phase, rate, count in ((phases[0], None, args.pushes), (phases[1], args.rate, args.paced_pushes),
                                       (phases[2], args.skewed_rate, args.skewed_pushes)):
                # The skewed phase pushes to the conversations of the first primary only, the others quiet.
                targets = every if phase is not phases[2] else sorted(
                    int(name.rsplit("-", 1)[1]) for name in
                    redis_nodes.conversations_by_primary(nodes, SEQUENCE_KEYS)[nodes[0].port])
                await measure_phase(args, phase, rate, count, targets, fleet, servers, nodes, delivered)
                delivered += phase.expected
        finally:
            gc.enable()
        report = await fleet.stop(timeout=max(30.0, desktops / 50))
        held = redis_nodes.conversations_by_primary(nodes, SEQUENCE_KEYS)
        await asyncio.sleep(0.3)
        warnings = []
        for role, running in servers.items():
            for server in running:
                lines = suspicious_lines(server)[1]
                errors = [line for line in lines if " WARNING " not in line]
                if errors:
                    problems.append(f"{role} on {server.port} logged: {errors[:3]}")
                warnings += [f"{role} on {server.port}: {line}" for line in lines if line not in errors]
    tally(phases, report, member, problems)
    for phase in phases:
        refused = {status: n for status, n in phase.statuses.items() if status != 204}
        if refused or phase.errors:
            problems.append(f"{phase.name}: non-204 {refused} errors {dict(phase.errors)}")
    if report.failures or report.unexpected_disconnects:
        problems.append(f"desktops: {report.failures[:3]}, unexpected disconnects {report.unexpected_disconnects}")
    return Run(kind, layout, nodes, phases, {port: change.cpu / change.seconds for port, change in idle.items()},
               held, problems, warnings)


async def push_warm(urls: list[str], phase: Phase, count: int, rate: float | None) -> None:
    """Pushes to conversations no desktop is in, spread over every shard."""
    now = datetime.now(UTC)
    publish_time = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    run_id = f"warm-{time.time_ns()}"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=IN_FLIGHT)) as session:

        async def post(sequence: int) -> None:
            kind, _, data = envelope(sequence, run_id, warm_conversation(sequence % 64), publish_time)
            with contextlib.suppress(TimeoutError, aiohttp.ClientError):
                async with session.post(f"{urls[sequence % len(urls)]}/{kind}", data=data,
                                        headers={"Content-Type": "application/json"}) as response:
                    await response.read()
                    phase.statuses[response.status] += 1

        await run_pushes(post, count, in_flight=IN_FLIGHT, rate=rate)


def tally(phases: list[Phase], report: WorkerReport, member: dict[int, int], problems: list[str]) -> None:
    """Each phase's deliveries: received once, duplicated, misrouted; latencies of the first receipts."""
    by_message = {message_id: (phase, target) for phase in phases for message_id, target in phase.acked.items()}
    seen: collections.Counter = collections.Counter()
    misrouted = 0
    for receipt in report.receipts:
        found = by_message.get(receipt.message_id)
        if found is None or member.get(receipt.desktop) != found[1] \
                or receipt.conversation_name != normalised(conversation(found[1])):
            misrouted += 1
            continue
        phase = found[0]
        seen[(receipt.desktop, receipt.message_id)] += 1
        if seen[(receipt.desktop, receipt.message_id)] == 1:
            phase.received += 1
            if receipt.sent_at is not None:
                phase.latencies.append((receipt.received_at - receipt.sent_at) * 1000)
        else:
            phase.duplicated += 1
    if misrouted:
        problems.append(f"misrouted {misrouted}")


def print_run(run: Run) -> None:
    """The run's lines: one per phase, one per Redis node, the balance over the primaries."""
    for phase in run.phases:
        p50, p99 = percentile(phase.latencies, 0.5), percentile(phase.latencies, 0.99)
        print(f"{phase.name:<13} pushes {sum(phase.statuses.values())} acked {len(phase.acked)} "
              f"acked/s {phase.acked_per_second:.0f} | expected {phase.expected} received {phase.received} "
              f"lost {phase.expected - phase.received} dup {phase.duplicated} | ms p50 {p50:.2f} p99 {p99:.2f} "
              f"| interceptors {1000 * phase.interceptor_cpu / max(len(phase.acked), 1):.3f} ms/push "
              f"| connectors {1e6 * phase.connector_cpu / max(phase.received, 1):.0f} us/event", flush=True)
    for node in run.nodes:
        held = run.held.get(node.port, {})
        head = f"node {node.port} {node.role:<7} shard {node.shard}"
        if node.role == "primary":
            head += f" | conversations {len(held)} appends {sum(held.values())}"
        parts = [head, f"idle {1000 * run.idle_cpu_per_second[node.port]:.2f} ms/s"]
        for phase in run.phases:
            pushes = run.shard_pushes(phase)[node.shard]
            if not pushes:
                parts.append(f"{phase.name.split()[0]}: no pushes")
                continue
            commands = ", ".join(
                f"{name} {usec / calls:.1f} us x {calls / pushes:.2f}"
                for name, (calls, usec) in phase.redis[node.port].commands.items() if calls and pushes)
            parts.append(f"{phase.name.split()[0]}: cpu {run.node_us_per_push(phase, node):.1f} us/push"
                         + (f", {commands}" if commands else ""))
        print(" | ".join(parts), flush=True)
    counts = [len(run.held.get(node.port, {})) for node in run.primaries()]
    appends = [sum(run.held.get(node.port, {}).values()) for node in run.primaries()]
    print(f"balance over {len(counts)} primaries: conversations {' '.join(map(str, counts))} "
          f"(max/mean {spread(counts):.2f}) | pushes {' '.join(map(str, appends))} "
          f"(max/mean {spread(appends):.2f})", flush=True)
    for line in run.warnings[:6]:
        print(f"    server warning: {line}", flush=True)
    if len(run.warnings) > 6:
        print(f"    server warning: ... {len(run.warnings) - 6} more", flush=True)
    for problem in run.problems:
        print(f"    problem: {problem}", flush=True)


def summarise(runs: list[Run]) -> tuple[float, float]:
    """One line per run; returns the Redis CPU per push the model takes, loaded (unpaced) and alone (paced):
    the highest primary of the cluster runs (of every run without one)."""
    print("\nsummary: redis shape | unpaced acked/s | paced p50 / p99 ms | skewed p50 / p99 ms | Redis CPU us/push "
          "on a primary, unpaced / paced (highest primary) | on a replica, paced | conversations, pushes max/mean",
          flush=True)
    for run in runs:
        unpaced, paced, skewed = run.phases
        primary = {phase.name: [run.node_us_per_push(phase, node) for node in run.primaries()]
                   for phase in run.phases}
        replicas = [run.node_us_per_push(paced, node) for node in run.nodes if node.role == "replica"]
        held = [run.held.get(node.port, {}) for node in run.primaries()]
        print(f"{run.kind:<10} {str(run.shape):<5} | {unpaced.acked_per_second:>6.0f} | "
              f"{percentile(paced.latencies, 0.5):>6.2f} / {percentile(paced.latencies, 0.99):>6.2f} | "
              f"{percentile(skewed.latencies, 0.5):>7.2f} / {percentile(skewed.latencies, 0.99):>7.2f} | "
              f"{max(primary[unpaced.name]):>6.1f} / {max(primary[paced.name]):>6.1f} | "
              f"{max(replicas) if replicas else math.nan:>6.1f} | "
              f"{spread([len(h) for h in held]):.2f}, {spread([sum(h.values()) for h in held]):.2f}", flush=True)
    chosen = [run for run in runs if run.kind == "cluster"] or runs
    return tuple(max(run.node_us_per_push(run.phases[index], node) for run in chosen for node in run.primaries())
                 for index in (0, 1))


def print_model(costs: capacity.UnitCosts, source: str) -> None:
    load, headroom = capacity.Load(1), capacity.Headroom()
    print(f"\ncapacity model (deployment/capacity.py): Redis CPU per push on a primary "
          f"{costs.redis_us_per_push:.1f} us loaded, {costs.redis_us_per_lone_push:.1f} us alone ({source}), "
          f"busiest primary <= {headroom.redis_primary:.0%} of a core; interceptor {costs.interceptor_ms_per_push} "
          f"ms/push, <= {costs.interceptor_pushes_per_process:,.0f} pushes/s a process; connector "
          f"{costs.connector_us_per_event:.0f} "
          f"us/event, <= {costs.desktops_per_connector:,} desktops; instances <= {headroom.instance:.0%} of a core; "
          f"{load.pushes_per_conversation:g} pushes/s and {load.desktops_per_conversation:g} desktops a conversation",
          flush=True)
    for line in capacity.table([capacity.Load(rate) for rate in MODEL_RATES], costs):
        print(line, flush=True)


async def run(args: argparse.Namespace) -> bool:
    print(f"load average {os.getloadavg()[0]:.2f}; open-file limit {raise_file_limit()}; {os.cpu_count()} CPUs; "
          f"per run {args.pushes} pushes unpaced, {args.paced_pushes} at {args.rate:g}/s, {args.skewed_pushes} at "
          f"{args.skewed_rate:g}/s to the first primary's conversations only", flush=True)
    tokens = mint_tokens([f"scale-agent-{i}" for i in range(args.conversations * args.per_conversation)])
    runs = []
    for kind in args.redis:
        for layout in args.shapes:
            runs.append(await run_one(kind, layout, args, tokens))
            print_run(runs[-1])
    loaded, alone = summarise(runs)
    print(f"load average {os.getloadavg()[0]:.2f}", flush=True)
    if math.isfinite(loaded) and math.isfinite(alone):
        print_model(capacity.UnitCosts(redis_us_per_push=loaded, redis_us_per_lone_push=alone),
                    "this run's highest primary, unpaced and paced")
    ok = True
    for item in runs:
        ok = ok and not item.problems and all(p.received == p.expected and not p.duplicated for p in item.phases)
    return ok


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", nargs="+", choices=("standalone", "cluster"), default=["standalone", "cluster"])
    parser.add_argument("--shapes", nargs="+", type=shape, help="NxM: interceptors x connectors (default 1x1 2x2)")
    parser.add_argument("--quick", action="store_true", help="2x2 on both, a few pushes: seconds, for a test")
    parser.add_argument("--conversations", type=int, help="conversations with desktops (default 200)")
    parser.add_argument("--per-conversation", type=int, default=2, help="desktops per conversation (default 2)")
    parser.add_argument("--pushes", type=int, help="unpaced pushes per run (default 3000)")
    parser.add_argument("--paced-pushes", type=int, help="paced pushes per run (default 1500)")
    parser.add_argument("--rate", type=float, help="the paced phase's pushes/s (default 200)")
    parser.add_argument("--skewed-pushes", type=int,
                        help="pushes per run to the first primary's conversations only (default 500)")
    parser.add_argument("--skewed-rate", type=float, help="the skewed phase's pushes/s (default 100)")
    parser.add_argument("--idle", type=float, help="seconds of each Redis node's idle CPU (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="desktop processes of the load generator (default 2)")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for every server; repeatable")
    parser.add_argument("--timeout", type=float, default=30.0, help="per connect/join timeout, s")
    parser.add_argument("--settle", type=float, default=3.0, help="stop waiting after this long with no delivery, s")
    parser.add_argument("--deadline", type=float, default=120.0, help="cap on a phase's wait for deliveries, s")
    parser.add_argument("--model-only", action="store_true",
                        help="print the capacity model with its default figures and run nothing")
    args = parser.parse_args(argv)
    quick = args.quick
    args.shapes = args.shapes or ([Shape(2, 2)] if quick else [Shape(1, 1), Shape(2, 2)])
    args.conversations = args.conversations or (6 if quick else 200)
    args.pushes = args.pushes or (60 if quick else 3000)
    args.paced_pushes = args.paced_pushes or (40 if quick else 1500)
    args.rate = args.rate or (100.0 if quick else 200.0)
    args.skewed_pushes = args.skewed_pushes or (40 if quick else 500)
    args.skewed_rate = args.skewed_rate or 100.0
    args.idle = args.idle if args.idle is not None else (0.5 if quick else 3.0)
    return args


def main(argv: list[str] | None = None) -> int:
    """Exit status 0 when every run delivered everything exactly once and nothing failed."""
    args = parse_arguments(argv)
    if args.model_only:
        print_model(capacity.UnitCosts(), "deployment/capacity.py's measured default")
        return 0
    with contextlib.suppress(KeyboardInterrupt):
        return 0 if uvloop.run(run(args)) else 1
    return 1


if __name__ == "__main__":
    sys.exit(main())
