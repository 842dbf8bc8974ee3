"""Sizing for Cloud Run: how many desktops one connector process holds, and how many pushes/s one interceptor
process acknowledges, within the latency targets.

Connector: from a fresh private redis-server, one connector and one interceptor process started with the
image's server command and ENV (``testing.processes``, as ``benchmarks.scenarios`` starts them), the number
of connected python-socketio desktops (websocket) is stepped up (``--steps``, default 250 500 1000 2000
5000). At each step N: N - 250 idle desktops (two per conversation, as the capacity scenario's) plus
scenario c's 200 desktops (100 conversations) and scenario b's 50 (50 conversations), all connected; the
connector's RSS and its idle CPU over ``--idle`` s; then scenario c's load (2,000 pushes at 200/s to its
desktops), then scenario b's (2,000 pushes, unpaced, 32 in flight, to its desktops). Per step and load:
push-to-desktop p50 / p99, the connector's CPU as % of a core over the load and per delivered event
(heartbeats and idle desktops included), the interceptor's CPU per acknowledged push. Then the largest step
at which each load's p99 stays within its target (c: 3 ms, b: 30 ms: ``benchmarks/README.md``), and the
connector's RSS there.

Interceptor: a fresh redis-server and one interceptor process alone; pushes paced at each rate of
``--rates`` (default 250 to 4,000/s) for ``--seconds`` s each, up to 256 in flight. Per rate: the rate
achieved, p50 / p99 acknowledgement (POST to 204), the interceptor's CPU as % of a core and per push,
its RSS. Then the highest rate acknowledged in full (95% of the pace or more) with p99 within
``--ack-target-ms`` (default 10), its CPU and memory.

    flock /work/bench.lock .venv/bin/python -m benchmarks.sizing            # both parts (about 4 minutes)
    .venv/bin/python -m benchmarks.sizing connector --steps 250 1000 5000
    .venv/bin/python -m benchmarks.sizing interceptor --rates 500 1000 2000 --seconds 5
    .venv/bin/python -m benchmarks.sizing --quick                           # seconds: a smoke test

Everything shares this machine's cores with the load generator (the pusher and the desktop processes,
whose CPU each line prints too): the CPU per push and per desktop is the figure to carry to another
machine, the latencies are this machine's. docs/cloud-run-sizing.md turns the figures into the services'
settings. Exit status 1 when a push was refused, an event lost or duplicated, a desktop failed or a server
logged an error.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
import orjson
import uvloop

from benchmarks.desktop_fleet import STAMP_FIELD, Fleet, FleetSpec, raise_file_limit
from benchmarks.scenarios import run_pushes
from benchmarks.servers import process_usage
from benchmarks.socketio_delivery import suspicious_lines
from events.kinds import EventKind
from interceptor import push_samples
from testing import processes
from testing.percentiles import percentile
from testing.tokens import mint_tokens

PROJECT = processes.TEST_PROJECT
KINDS = [str(kind) for kind in EventKind]
IN_FLIGHT = 32  # the scenarios' POSTs in flight
IDLE_PER_PROCESS = 1500  # idle desktops per load-generator process


@dataclass(frozen=True)
class Load:
    """One of the performance scenarios' push loads, aimed at its own desktops."""

    name: str
    desktops: int
    conversations: int
    pushes: int
    rate: float | None  # None: unpaced, IN_FLIGHT at a time
    target_p99_ms: float

    def conversation(self, index: int) -> str:
        """Conversation ``index`` of this load, in the ``locations/global`` form Dialogflow publishes."""
        return f"projects/{PROJECT}/locations/global/conversations/SIZE-{self.name}-{index:05d}"


# benchmarks/scenarios.py's c and b, and their targets (benchmarks/README.md; docs/performance.md, "Where this
# leaves the performance targets").
LOADS = (Load("c", 200, 100, 2000, 200.0, 3.0), Load("b", 50, 50, 2000, None, 30.0))
QUICK_LOADS = (Load("c", 10, 5, 100, 200.0, 3.0), Load("b", 5, 5, 100, None, 30.0))
STEPS = (250, 500, 1000, 2000, 5000)
QUICK_STEPS = (20, 40)
RATES = (250, 500, 1000, 2000, 3000, 4000)
QUICK_RATES = (100, 200)


def idle_conversation(index: int) -> str:
    return f"projects/{PROJECT}/locations/global/conversations/SIZE-idle-{index:05d}"


def normalised(name: str) -> str:
    """A conversation name as the server acknowledges and delivers it (``locations/global`` dropped)."""
    return name.replace("/locations/global", "")


@dataclass
class Pushed:
    """What one push phase did."""

    acked: dict[str, str] = field(default_factory=dict)  # messageId -> normalised conversation, for each 204
    ack_ms: list[float] = field(default_factory=list)
    statuses: collections.Counter = field(default_factory=collections.Counter)
    errors: collections.Counter = field(default_factory=collections.Counter)
    seconds: float = 0.0
    most_in_flight: int = 0


def envelope(sequence: int, run_id: str, conversation: str, publish_time: str) -> tuple[str, str, bytes]:
    """(endpoint, messageId, body) of push ``sequence``, stamped now (as benchmarks.scenarios builds them)."""
    kind = KINDS[sequence % len(KINDS)]
    message_id = f"{run_id}-{sequence:06d}"
    notification = push_samples.sample_notification(kind, conversation)
    notification[STAMP_FIELD] = time.monotonic()
    attributes = None
    if kind == push_samples.NEW_RECOGNITION_RESULT_EVENT:
        attributes = {"participant_role": "END_USER", "message_id": f"{message_id}-r"}
    data = base64.b64encode(orjson.dumps(notification)).decode("ascii")
    body = push_samples.push_envelope(notification, data=data, message_id=message_id, publish_time=publish_time,
                                      attributes=attributes)
    return kind, message_id, orjson.dumps(body)


async def push(url: str, run_id: str, conversations: list[str], count: int, rate: float | None,
               in_flight: int, timeout: float = 30.0) -> Pushed:
    """POST ``count`` pushes round-robin over ``conversations``, paced at ``rate`` (or unpaced), at most
    ``in_flight`` at once; each acknowledgement timed from just before its POST."""
    now = datetime.now(UTC)
    publish_time = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    result = Pushed()
    headers = {"Content-Type": "application/json"}
    flying = 0
    connector = aiohttp.TCPConnector(limit=in_flight)
    async with aiohttp.ClientSession(url, connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:

        async def post(sequence: int) -> None:
            nonlocal flying
            conversation = conversations[sequence % len(conversations)]
            kind, message_id, data = envelope(sequence, run_id, conversation, publish_time)
            flying += 1
            result.most_in_flight = max(result.most_in_flight, flying)
            started = time.monotonic()
            try:
                async with session.post(f"/{kind}", data=data, headers=headers) as response:
                    await response.read()
                    result.statuses[response.status] += 1
                    if response.status == 204:
                        result.ack_ms.append((time.monotonic() - started) * 1000)
                        result.acked[message_id] = normalised(conversation)
            except (TimeoutError, aiohttp.ClientError) as error:
                result.errors[error.__class__.__name__] += 1
            finally:
                flying -= 1

        began = time.monotonic()
        await run_pushes(post, count, in_flight=in_flight, rate=rate)
        result.seconds = time.monotonic() - began
    return result


def own_cpu() -> float:
    """This process's CPU seconds (the pusher)."""
    times = os.times()
    return times.user + times.system


def specs(url: str, tokens: list[str], conversations: list[str], first: int, per_process: int,
          timeout: float) -> list[FleetSpec]:
    """Desktops ``first``... with ``tokens`` joining ``conversations``, ``per_process`` to a load-generator process."""
    return [FleetSpec(url=url, first_index=first + start, tokens=tokens[start:start + per_process],
                      conversations=conversations[start:start + per_process], timeout=timeout)
            for start in range(0, len(tokens), per_process)]


@dataclass
class LoadFigures:
    load: Load
    p50: float
    p99: float
    connector_cpu_percent: float
    connector_us_per_event: float
    interceptor_ms_per_push: float
    acked_per_second: float
    lost: int
    duplicated: int
    pusher_cpu: float
    desktops_cpu: float

    @property
    def within(self) -> bool:
        return self.p99 <= self.load.target_p99_ms and not self.lost and not self.duplicated


@dataclass
class Step:
    desktops: int
    rss_mib: float
    idle_percent: float
    loads: list[LoadFigures]


def wait_until(fleets: list[Fleet], expected: int, *, settle: float, deadline: float) -> None:
    """Until the fleets received ``expected`` events, nothing arrived for ``settle`` s, or ``deadline`` s passed."""
    give_up, last, changed = time.monotonic() + deadline, -1, time.monotonic()
    while time.monotonic() < give_up:
        count = sum(fleet.received() for fleet in fleets)
        if count >= expected:
            return
        if count != last:
            last, changed = count, time.monotonic()
        elif time.monotonic() - changed > settle:
            return
        time.sleep(0.02)


async def measure_connector(args: argparse.Namespace, problems: list[str]) -> list[Step]:
    """Every desktop step against one connector process; one line per step and load."""
    loads = QUICK_LOADS if args.quick else LOADS
    active = sum(load.desktops for load in loads)
    steps = sorted(step for step in args.steps if step >= active)
    if not steps:
        raise SystemExit(f"every step must hold the loads' own {active} desktops")
    tokens = mint_tokens([f"size-agent-{i}" for i in range(steps[-1])])
    results: list[Step] = []
    print(f"connector: one process, image's server and ENV; loads {', '.join(load.name for load in loads)} "
          f"on their own desktops, the rest idle (two per conversation)", flush=True)
    print(f"{'desktops':>8} {'RSS MiB':>8} {'idle %':>7} | load {'p50 ms':>7} {'p99 ms':>7} target "
          f"{'acked/s':>7} {'conn CPU %':>10} {'us/event':>8} {'int ms/push':>11} lost dup "
          f"| load generator s (pusher, desktops)", flush=True)
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(processes.redis_server(private=True))
        environment = {**processes.IMAGE_ENV, **dict(item.split("=", 1) for item in args.server_env)}
        connector = stack.enter_context(processes.service_server(role="connector", redis=redis, **environment))
        interceptor = stack.enter_context(processes.service_server(role="interceptor", redis=redis, **environment))
        # The first pushes load the interceptor's script into Redis and open its connections (an unpaced burst
        # opens as many as it keeps in flight): not a step's figure.
        for count, rate in ((200, 200.0), (500, None)):
            await push(interceptor.http_url, f"warm-{time.time_ns()}", [idle_conversation(0)], count, rate, IN_FLIGHT)
        idle_fleets: list[Fleet] = []
        try:
            await step_up(args, steps, loads, active, tokens, connector, interceptor, idle_fleets, results, problems)
        finally:
            for fleet in idle_fleets:
                await fleet.stop(timeout=60.0)
        await asyncio.sleep(0.3)
        for role, server in (("connector", connector), ("interceptor", interceptor)):
            lines = suspicious_lines(server)[1]
            if lines:
                problems.append(f"{role} logged: {lines[:3]}")
    summarise(results, loads)
    return results


async def step_up(args: argparse.Namespace, steps: list[int], loads: tuple[Load, ...], active: int,
                  tokens: list[str], connector: processes.Server, interceptor: processes.Server,
                  idle_fleets: list[Fleet], results: list[Step], problems: list[str]) -> None:
    """Each step: idle desktops added up to the step (they stay), then the step measured."""
    idle_connected = 0
    for step in steps:
        wanted = step - active
        if wanted > idle_connected:
            names = [idle_conversation(i // 2) for i in range(idle_connected, wanted)]
            fleet = Fleet(specs(connector.http_url, tokens[active + idle_connected:active + wanted], names,
                                active + idle_connected, IDLE_PER_PROCESS, args.timeout))
            idle_fleets.append(fleet)
            joined, failures = await fleet.ready(timeout=max(60.0, (wanted - idle_connected) / 20))
            if joined < wanted - idle_connected or failures:
                problems.append(f"{step}: idle desktops joined {joined}/{wanted - idle_connected}: {failures[:3]}")
            idle_connected = wanted
        result = await measure_step(args, step, loads, tokens, connector, interceptor, problems)
        results.append(result)
        for index, f in enumerate(result.loads):
            head = f"{step:>8} {result.rss_mib:>8.0f} {result.idle_percent:>7.1f}" if index == 0 else " " * 25
            print(f"{head} | {f.load.name:<4} {f.p50:>7.2f} {f.p99:>7.2f} {'<=' if f.within else '> '}"
                  f"{f.load.target_p99_ms:<4g} {f.acked_per_second:>7.0f} {f.connector_cpu_percent:>10.1f} "
                  f"{f.connector_us_per_event:>8.0f} "
                  f"{f.interceptor_ms_per_push:>11.3f} {f.lost:>4} {f.duplicated:>3} | "
                  f"{f.pusher_cpu:.2f}, {f.desktops_cpu:.2f}", flush=True)


async def measure_step(args: argparse.Namespace, step: int, loads: tuple[Load, ...], tokens: list[str],
                       connector: processes.Server, interceptor: processes.Server, problems: list[str]) -> Step:
    """The loads' desktops connected afresh, the connector's RSS and idle CPU, then each load in turn."""
    fleets, first = {}, 0
    for load in loads:
        names = [load.conversation(i % load.conversations) for i in range(load.desktops)]
        fleets[load.name] = Fleet(specs(connector.http_url, tokens[first:first + load.desktops], names, first,
                                        load.desktops, args.timeout))
        first += load.desktops
    for load in loads:
        joined, failures = await fleets[load.name].ready(timeout=60.0)
        if joined < load.desktops or failures:
            problems.append(f"{step}: {load.name}'s desktops joined {joined}/{load.desktops}: {failures[:3]}")
    rss, idle_before = process_usage(connector.process.pid)
    await asyncio.sleep(args.idle)
    idle_percent = 100 * (process_usage(connector.process.pid)[1] - idle_before) / args.idle
    phases = {}
    for load in loads:
        before = {role: process_usage(server.process.pid)[1] for role, server in
                  (("connector", connector), ("interceptor", interceptor))}
        generator = own_cpu(), fleets[load.name].cpu()
        began = time.monotonic()
        names = [load.conversation(i) for i in range(load.conversations)]
        pushed = await push(interceptor.http_url, f"{load.name}{step}-{time.time_ns()}", names,
                            args.pushes or load.pushes, load.rate, IN_FLIGHT)
        expected = len(pushed.acked) * (load.desktops // load.conversations)
        await asyncio.to_thread(wait_until, [fleets[load.name]], expected, settle=args.settle, deadline=120.0)
        wall = time.monotonic() - began
        cpu = {role: process_usage(server.process.pid)[1] - before[role] for role, server in
               (("connector", connector), ("interceptor", interceptor))}
        phases[load.name] = (pushed, expected, cpu, wall, (own_cpu() - generator[0],
                                                           fleets[load.name].cpu() - generator[1]))
        refused = {status: n for status, n in pushed.statuses.items() if status != 204}
        if refused or pushed.errors:
            problems.append(f"{step} {load.name}: non-204 {refused} errors {dict(pushed.errors)}")
    figures = []
    for load in loads:
        report = await fleets[load.name].stop(timeout=60.0)
        pushed, expected, cpu, wall, generator = phases[load.name]
        seen: collections.Counter = collections.Counter()
        latencies, misrouted = [], 0
        for receipt in report.receipts:
            if pushed.acked.get(receipt.message_id) != receipt.conversation_name:
                misrouted += 1
                continue
            seen[(receipt.desktop, receipt.message_id)] += 1
            if seen[(receipt.desktop, receipt.message_id)] == 1 and receipt.sent_at is not None:
                latencies.append((receipt.received_at - receipt.sent_at) * 1000)
        if report.failures or report.unexpected_disconnects or misrouted:
            problems.append(f"{step} {load.name}: desktops {report.failures[:3]}, unexpected disconnects "
                            f"{report.unexpected_disconnects}, misrouted {misrouted}")
        figures.append(LoadFigures(
            load=load, p50=percentile(latencies, 0.5), p99=percentile(latencies, 0.99),
            connector_cpu_percent=100 * cpu["connector"] / wall,
            connector_us_per_event=1e6 * cpu["connector"] / max(len(seen), 1),
            interceptor_ms_per_push=1000 * cpu["interceptor"] / max(len(pushed.acked), 1),
            acked_per_second=len(pushed.acked) / max(pushed.seconds, 1e-9),
            lost=expected - len(seen), duplicated=sum(n - 1 for n in seen.values()),
            pusher_cpu=generator[0], desktops_cpu=generator[1]))
    return Step(step, rss, idle_percent, figures)


def summarise(results: list[Step], loads: tuple[Load, ...]) -> None:
    """Per load, the largest step within its target and the memory there; the memory per desktop."""
    for load in loads:
        holding = [step for step in results if next(f for f in step.loads if f.load is load).within]
        if holding:
            best = max(holding, key=lambda step: step.desktops)
            print(f"connector, load {load.name} (p99 <= {load.target_p99_ms:g} ms): largest step within target "
                  f"{best.desktops} desktops, RSS {best.rss_mib:.0f} MiB, idle {best.idle_percent:.1f}% of a core "
                  f"(steps within: {', '.join(str(step.desktops) for step in holding)})", flush=True)
        else:
            print(f"connector, load {load.name} (p99 <= {load.target_p99_ms:g} ms): no step within target", flush=True)
    if len(results) >= 2:
        low, high = results[0], results[-1]
        per_desktop = (high.rss_mib - low.rss_mib) / (high.desktops - low.desktops) * 1024
        print(f"connector RSS: {low.rss_mib:.0f} MiB at {low.desktops} desktops, {high.rss_mib:.0f} MiB at "
              f"{high.desktops}: {per_desktop:.0f} KiB per desktop", flush=True)



async def measure_interceptor(args: argparse.Namespace, problems: list[str]) -> None:
    """Paced pushes at each rate against one interceptor process alone."""
    print(f"interceptor: one process alone, image's server and ENV; paced pushes, {args.seconds:g} s per rate, "
          f"up to {args.in_flight} in flight; ack = POST to 204", flush=True)
    print(f"{'rate/s':>7} {'acked/s':>8} {'ack p50':>8} {'ack p99':>8} {'max':>7} {'in flight':>9} "
          f"{'CPU %':>6} {'ms/push':>8} {'RSS MiB':>8} | pusher CPU s", flush=True)
    rows = []
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(processes.redis_server(private=True))
        environment = {**processes.IMAGE_ENV, **dict(item.split("=", 1) for item in args.server_env)}
        interceptor = stack.enter_context(processes.service_server(role="interceptor", redis=redis, **environment))
        names = [idle_conversation(i) for i in range(100)]
        # Warm up: the first requests load the script into Redis and fill the connection pools.
        for count, rate in ((200, 200.0), (500, None)):
            await push(interceptor.http_url, f"warm-{time.time_ns()}", names, count, rate, IN_FLIGHT)
        for rate in args.rates:
            count = max(1, int(rate * args.seconds))
            before, pusher = process_usage(interceptor.process.pid)[1], own_cpu()
            began = time.monotonic()
            pushed = await push(interceptor.http_url, f"i{rate}-{time.time_ns()}", names, count, float(rate),
                                args.in_flight)
            cpu = process_usage(interceptor.process.pid)[1] - before
            wall = time.monotonic() - began
            rss = process_usage(interceptor.process.pid)[0]
            achieved = len(pushed.acked) / max(pushed.seconds, 1e-9)
            p50, p99 = percentile(pushed.ack_ms, 0.5), percentile(pushed.ack_ms, 0.99)
            rows.append((rate, achieved, p99, 100 * cpu / wall, 1000 * cpu / max(len(pushed.acked), 1), rss))
            refused = {status: n for status, n in pushed.statuses.items() if status != 204}
            if refused or pushed.errors:
                problems.append(f"interceptor {rate}/s: non-204 {refused} errors {dict(pushed.errors)}")
            print(f"{rate:>7} {achieved:>8.0f} {p50:>8.2f} {p99:>8.2f} {max(pushed.ack_ms, default=0):>7.1f} "
                  f"{pushed.most_in_flight:>9} {100 * cpu / wall:>6.1f} {1000 * cpu / max(len(pushed.acked), 1):>8.3f}"
                  f" {rss:>8.0f} | {own_cpu() - pusher:.2f}", flush=True)
        await asyncio.sleep(0.3)
        lines = suspicious_lines(interceptor)[1]
        if lines:
            problems.append(f"interceptor logged: {lines[:3]}")
    holding = [row for row in rows if row[1] >= 0.95 * row[0] and row[2] <= args.ack_target_ms]
    if holding:
        rate, achieved, p99, cpu_percent, per_push, rss = max(holding)
        print(f"interceptor (p99 ack <= {args.ack_target_ms:g} ms, >= 95% of the pace acknowledged): highest rate "
              f"{rate}/s, p99 {p99:.2f} ms, CPU {cpu_percent:.0f}% of a core ({per_push:.3f} ms per push), RSS "
              f"{rss:.0f} MiB", flush=True)
    else:
        print(f"interceptor (p99 ack <= {args.ack_target_ms:g} ms): no rate within target", flush=True)


async def run(args: argparse.Namespace) -> bool:
    problems: list[str] = []
    print(f"load average {os.getloadavg()[0]:.2f}; open-file limit {raise_file_limit()}; {os.cpu_count()} CPUs",
          flush=True)
    if "connector" in args.parts:
        await measure_connector(args, problems)
    if "interceptor" in args.parts:
        await measure_interceptor(args, problems)
    print(f"load average {os.getloadavg()[0]:.2f}", flush=True)
    for problem in problems:
        print(f"    problem: {problem}", flush=True)
    return not problems


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("parts", nargs="*", metavar="part", help="connector, interceptor (default: both)")
    parser.add_argument("--quick", action="store_true", help="tiny steps and rates: seconds, a smoke test")
    parser.add_argument("--steps", type=int, nargs="+", help=f"desktops connected per step (default {STEPS})")
    parser.add_argument("--pushes", type=int, help="pushes per load and step (default the scenario's: 2,000)")
    parser.add_argument("--idle", type=float, help="seconds of the connector's idle CPU per step (default 5)")
    parser.add_argument("--rates", type=int, nargs="+", help=f"interceptor pushes/s (default {RATES})")
    parser.add_argument("--seconds", type=float, help="seconds per interceptor rate (default 4)")
    parser.add_argument("--in-flight", type=int, default=256, help="interceptor POSTs in flight at most (256)")
    parser.add_argument("--ack-target-ms", type=float, default=10.0,
                        help="the interceptor's p99 acknowledgement target, ms (default 10)")
    parser.add_argument("--settle", type=float, default=3.0, help="stop waiting after this long with no delivery, s")
    parser.add_argument("--timeout", type=float, default=30.0, help="per connect/join timeout, s")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for the servers; repeatable")
    args = parser.parse_args(argv)
    args.parts = args.parts or ["connector", "interceptor"]
    unknown = set(args.parts) - {"connector", "interceptor"}
    if unknown:
        parser.error(f"unknown part {min(unknown)!r}: connector or interceptor")
    args.steps = args.steps or list(QUICK_STEPS if args.quick else STEPS)
    args.rates = args.rates or list(QUICK_RATES if args.quick else RATES)
    args.idle = args.idle if args.idle is not None else (0.5 if args.quick else 5.0)
    args.seconds = args.seconds if args.seconds is not None else (0.5 if args.quick else 4.0)
    return args


def main(argv: list[str] | None = None) -> int:
    """Exit status 0 when nothing was refused, lost, doubled or logged as an error."""
    with contextlib.suppress(KeyboardInterrupt):
        return 0 if uvloop.run(run(parse_arguments(argv))) else 1
    return 1


if __name__ == "__main__":
    sys.exit(main())
