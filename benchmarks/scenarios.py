"""The performance scenarios end to end: Pub/Sub pushes over the four endpoints -> interceptor -> Redis -> connector -> desktops.

For each scenario, from fresh processes and an empty private redis-server:
one connector and one interceptor process started with the image's server
command (``testing.processes``), N python-socketio desktops (websocket
transport) in ``--workers`` separate load-generator processes
(``benchmarks.desktop_fleet``), each joined to one conversation, then M push
envelopes spread round-robin over the four endpoints and the conversations,
POSTed by aiohttp with 32 in flight (or paced), each notification stamped
with ``time.monotonic()`` just before its POST. Prints one line per run:

    scenario  desktops/conversations  pushes  rate | acked/s | expected received lost dup
              | latency p50 p95 p99 max (ms) | interceptor and connector RSS (MiB) and CPU seconds

    .venv/bin/python -m benchmarks.scenarios                      # a b c e, one run each
    .venv/bin/python -m benchmarks.scenarios --runs 3 b e         # interleaved: b e b e b e
    .venv/bin/python -m benchmarks.scenarios capacity --workers 4 # 10,000 desktops on one connector
    .venv/bin/python -m benchmarks.scenarios --runs 3 --workers 2 c1000  # c's load, 1,000 desktops connected
    .venv/bin/python -m benchmarks.scenarios --quick              # tiny runs of a b c e (seconds; CI)

Exit status 1 when an event was lost, duplicated or misrouted, a push was
not answered 204, a desktop failed, or a server logged an error.
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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone

import aiohttp
import orjson
import uvloop

from benchmarks.desktop_fleet import STAMP_FIELD, Fleet, FleetSpec, raise_file_limit
from benchmarks.servers import command_server, process_usage
from benchmarks.socketio_delivery import suspicious_lines
from events.kinds import EventKind
from interceptor import push_samples
from testing import processes
from testing.percentiles import percentile
from testing.tokens import mint_tokens

PROJECT = processes.TEST_PROJECT
KINDS = [str(kind) for kind in EventKind]


@dataclass(frozen=True)
class Scenario:
    """Desktop i joins conversation i mod ``conversations``; push j goes to conversation j mod ``push_conversations``."""

    name: str
    desktops: int
    conversations: int
    pushes: int
    rate: float | None = None  # pushes per second, None: as fast as 32 in flight allow
    push_conversations: int | None = None  # default: every conversation

    @property
    def targets(self) -> int:
        return self.push_conversations or self.conversations


SCENARIOS = {
    "a": Scenario("a", 1, 1, 500),
    "b": Scenario("b", 50, 50, 2000),
    "c": Scenario("c", 200, 100, 2000, rate=200.0),
    "e": Scenario("e", 200, 100, 2000),
    # 10,000 desktops connected (two per conversation, as in c); scenario c's load goes to the first 100 conversations.
    "capacity": Scenario("capacity", 10_000, 5_000, 2000, rate=200.0, push_conversations=100),
    # Scenario c's load at Cloud Run's concurrency (containerConcurrency 1000): 1,000 desktops, two per
    # conversation, pushes paced at 200/s to the first 100 conversations (so to 200 of the desktops).
    "c1000": Scenario("c1000", 1000, 500, 2000, rate=200.0, push_conversations=100),
}
QUICK = {
    "a": Scenario("a", 1, 1, 40),
    "b": Scenario("b", 5, 5, 80),
    "c": Scenario("c", 10, 5, 80, rate=200.0),
    "e": Scenario("e", 10, 5, 80),
    "capacity": Scenario("capacity", 40, 20, 80, rate=200.0, push_conversations=5),
    "c1000": Scenario("c1000", 40, 20, 80, rate=200.0, push_conversations=5),
}


def conversation(index: int) -> str:
    """Benchmark conversation ``index`` in the ``locations/global`` form Dialogflow publishes."""
    return f"projects/{PROJECT}/locations/global/conversations/SCEN-{index:05d}"


def normalised(index: int) -> str:
    """The same conversation as the server acknowledges and delivers it."""
    return f"projects/{PROJECT}/conversations/SCEN-{index:05d}"


@dataclass
class Pushes:
    """What the push phase did."""

    acked: dict[str, int]  # messageId -> conversation index, for every push answered 204
    statuses: collections.Counter
    errors: collections.Counter
    seconds: float


def body(sequence: int, scenario: Scenario, run_id: str, publish_time: str) -> tuple[str, str, int, bytes]:
    """(endpoint, messageId, conversation index, body) of push ``sequence``, stamped now."""
    kind = KINDS[sequence % len(KINDS)]
    target = sequence % scenario.targets
    message_id = f"{run_id}-{sequence:06d}"
    notification = push_samples.sample_notification(kind, conversation(target))
    notification[STAMP_FIELD] = time.monotonic()
    attributes = None
    if kind == push_samples.NEW_RECOGNITION_RESULT_EVENT:
        attributes = {"participant_role": "END_USER", "message_id": f"{message_id}-r"}
    # orjson: the load generator's CPU shares the two cores with the servers (the same JSON as json.dumps).
    data = base64.b64encode(orjson.dumps(notification)).decode("ascii")
    envelope = push_samples.push_envelope(notification, data=data, message_id=message_id,
                                          publish_time=publish_time, attributes=attributes)
    return kind, message_id, target, orjson.dumps(envelope)


async def push_all(scenario: Scenario, url: str, *, concurrency: int, timeout: float) -> Pushes:
    """POST ``scenario.pushes`` envelopes, ``concurrency`` in flight, paced at ``scenario.rate`` when set."""
    run_id = f"{scenario.name}-{time.time_ns()}"
    now = datetime.now(timezone.utc)
    publish_time = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    result = Pushes({}, collections.Counter(), collections.Counter(), 0.0)
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(url, connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:

        async def post(sequence: int) -> None:
            kind, message_id, target, data = body(sequence, scenario, run_id, publish_time)
            try:
                async with session.post(f"/{kind}", data=data, headers=headers) as response:
                    await response.read()
                    result.statuses[response.status] += 1
                    if response.status == 204:
                        result.acked[message_id] = target
            except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                result.errors[error.__class__.__name__] += 1

        started = time.monotonic()
        await run_pushes(post, scenario.pushes, in_flight=concurrency, rate=scenario.rate)
        result.seconds = time.monotonic() - started
    return result


async def run_pushes(post: Callable[[int], Awaitable[None]], count: int, *, in_flight: int,
                     rate: float | None) -> None:
    """``post(0)`` .. ``post(count - 1)``, at most ``in_flight`` at once: as fast as they are answered
    (``rate`` None), or the n-th started ``n / rate`` seconds after the first (paced)."""
    if rate is None:
        sequences = iter(range(count))

        async def worker() -> None:
            for sequence in sequences:
                await post(sequence)

        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return
    gate = asyncio.Semaphore(in_flight)
    tasks = []

    async def gated(sequence: int) -> None:
        try:
            await post(sequence)
        finally:
            gate.release()

    began = time.monotonic()
    for sequence in range(count):
        await asyncio.sleep(max(0.0, began + sequence / rate - time.monotonic()))
        await gate.acquire()
        tasks.append(asyncio.create_task(gated(sequence)))
    await asyncio.gather(*tasks)


async def wait_for(fleet: Fleet, expected: int, *, settle: float, deadline: float) -> None:
    """Until every expected event arrived, nothing arrived for ``settle`` s, or ``deadline`` s passed."""
    give_up = time.monotonic() + deadline
    last, changed = -1, time.monotonic()
    while time.monotonic() < give_up:
        count = fleet.received()
        if count >= expected:
            return
        if count != last:
            last, changed = count, time.monotonic()
        elif time.monotonic() - changed > settle:
            return
        await asyncio.sleep(0.02)


def fleet_specs(scenario: Scenario, url: str, tokens: list[str], workers: int, timeout: float,
                client: str = "socketio") -> list[FleetSpec]:
    """The desktops split into ``workers`` contiguous shares."""
    share = -(-scenario.desktops // workers)
    specs = []
    for first in range(0, scenario.desktops, share):
        indices = range(first, min(first + share, scenario.desktops))
        specs.append(FleetSpec(url=url, first_index=first, tokens=[tokens[i] for i in indices],
                               conversations=[conversation(i % scenario.conversations) for i in indices],
                               timeout=timeout, client=client))
    return specs


def _own_cpu() -> float:
    """This process's CPU seconds (the pusher; its children, the servers and desktop workers, not counted)."""
    times = os.times()
    return times.user + times.system


def start_server(stack: contextlib.ExitStack, role: str, args: argparse.Namespace,
                 redis: processes.RedisAddress) -> processes.Server:
    """A fresh ``role`` server for one run: ``--<role>-command``'s if given, else the repository's."""
    template = getattr(args, f"{role}_command")
    if template:
        return stack.enter_context(command_server(role=role, template=template, redis=redis))
    extra = dict(processes.IMAGE_ENV if args.server == processes.IMAGE_SERVER else {})
    extra.update(item.split("=", 1) for item in args.server_env)
    return stack.enter_context(processes.service_server(role=role, redis=redis, server=args.server, **extra))


async def run_scenario(scenario: Scenario, args: argparse.Namespace, tokens: list[str]) -> bool:
    """One run from fresh processes; prints its line and returns True when nothing went wrong."""
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(processes.redis_server(private=True))
        connector = start_server(stack, "connector", args, redis)
        interceptor = start_server(stack, "interceptor", args, redis)
        workers = max(1, min(args.workers, scenario.desktops))
        fleet = Fleet(fleet_specs(scenario, connector.http_url, tokens, workers, args.timeout, args.client))
        joined, failures = await fleet.ready(timeout=max(60.0, scenario.desktops / 20))
        idle_connector = process_usage(connector.process.pid)
        idle_cpu = None
        if args.idle:
            await asyncio.sleep(args.idle)
            idle_cpu = (process_usage(connector.process.pid)[1] - idle_connector[1]) / args.idle
        before = {role: process_usage(server.process.pid)[1] for role, server in
                  (("interceptor", interceptor), ("connector", connector))}
        generator_before = _own_cpu(), fleet.cpu()
        pushes = await push_all(scenario, interceptor.http_url, concurrency=args.concurrency, timeout=args.timeout)
        members = collections.Counter(i % scenario.conversations for i in range(scenario.desktops))
        expected = sum(members[target] for target in pushes.acked.values())
        await wait_for(fleet, expected, settle=args.settle, deadline=args.deadline)
        usage = {role: process_usage(server.process.pid) for role, server in
                 (("interceptor", interceptor), ("connector", connector))}
        generator = _own_cpu() - generator_before[0], fleet.cpu() - generator_before[1]
        report = await fleet.stop(timeout=max(30.0, scenario.desktops / 50))
        await asyncio.sleep(0.3)
        logs = {"connector": suspicious_lines(connector)[1], "interceptor": suspicious_lines(interceptor)[1]}

    seen: collections.Counter = collections.Counter()
    latencies, misrouted = [], 0
    for receipt in report.receipts:
        target = pushes.acked.get(receipt.message_id)
        if target is None or receipt.conversation_name != normalised(target) \
                or report.joined.get(receipt.desktop) != receipt.conversation_name:
            misrouted += 1
            continue
        seen[(receipt.desktop, receipt.message_id)] += 1
        if seen[(receipt.desktop, receipt.message_id)] == 1 and receipt.sent_at is not None:
            latencies.append((receipt.received_at - receipt.sent_at) * 1000)
    received = len(seen)
    duplicated = sum(count - 1 for count in seen.values())
    lost = expected - received
    refused = {status: n for status, n in pushes.statuses.items() if status != 204}
    rate = f"{scenario.rate:.0f}/s" if scenario.rate else "unpaced"
    p50, p95, p99 = (percentile(latencies, f) for f in (0.5, 0.95, 0.99))
    cpu = {role: usage[role][1] - before[role] for role in usage}
    idle = f" idle {100 * idle_cpu:.1f}% of a core over {args.idle:.0f} s" if idle_cpu is not None else ""
    print(f"{scenario.name:<8} {scenario.desktops}/{scenario.conversations} {scenario.pushes} {rate} [{args.label}{'' if args.client == 'socketio' else ', raw desktops'}]"
          f" | acked/s {len(pushes.acked) / max(pushes.seconds, 1e-9):.0f}"
          f" | expected {expected} received {received} lost {lost} dup {duplicated}"
          f" | ms p50 {p50:.2f} p95 {p95:.2f} p99 {p99:.2f} max {max(latencies, default=float('nan')):.2f}"
          f" | interceptor {usage['interceptor'][0]:.0f} MiB {cpu['interceptor']:.2f} s"
          f" ({1000 * cpu['interceptor'] / max(len(pushes.acked), 1):.3f} ms/push)"
          f" | connector {usage['connector'][0]:.0f} MiB {cpu['connector']:.2f} s"
          f" ({1e6 * cpu['connector'] / max(received, 1):.0f} us/event)"
          f" (with desktops {idle_connector[0]:.0f} MiB{idle})"
          f" | load generator: pusher {generator[0]:.2f} s, desktops {generator[1]:.2f} s", flush=True)
    problems = []
    if joined < scenario.desktops or failures or report.failures:
        problems.append(f"desktops joined {joined}/{scenario.desktops}: {(failures + report.failures)[:3]}")
    if refused or pushes.errors:
        problems.append(f"non-204 {refused} errors {dict(pushes.errors)}")
    if misrouted or report.unexpected_disconnects:
        problems.append(f"misrouted {misrouted} unexpected disconnects {report.unexpected_disconnects}")
    problems += [f"{role} logged: {lines[:3]}" for role, lines in logs.items() if lines]
    for problem in problems:
        print(f"    {problem}", flush=True)
    return not problems and not lost and not duplicated


async def run(args: argparse.Namespace) -> bool:
    """Every requested scenario, ``--runs`` times, interleaved."""
    table = QUICK if args.quick else SCENARIOS
    chosen = [table[name] for name in args.scenarios]
    for field_name in ("desktops", "conversations", "pushes"):
        if getattr(args, field_name):
            chosen = [replace(scenario, **{field_name: getattr(args, field_name)}) for scenario in chosen]
    if args.rate is not None:
        chosen = [replace(scenario, rate=args.rate or None) for scenario in chosen]
    print(f"load average {os.getloadavg()[0]:.2f}; open-file limit {raise_file_limit()}; "
          f"{args.concurrency} pushes in flight; servers {args.label}", flush=True)
    most = max(s.desktops for s in chosen)
    if args.tokens_file:
        given = [line.strip() for line in open(args.tokens_file) if line.strip()]
        tokens = [given[i % len(given)] for i in range(most)]
    else:
        tokens = mint_tokens([f"scen-agent-{i}" for i in range(most)])
    ok = True
    for _ in range(args.runs):
        for scenario in chosen:
            ok = await run_scenario(scenario, args, tokens) and ok
    return ok


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", metavar="scenario",
                        help=f"which of {', '.join(SCENARIOS)} (default: a b c e)")
    parser.add_argument("--quick", action="store_true", help="tiny versions of the scenarios: seconds, for CI")
    parser.add_argument("--runs", type=int, default=1, help="run the scenarios this many times, interleaved")
    parser.add_argument("--pushes", type=int, default=0, help="override every scenario's push count")
    parser.add_argument("--desktops", type=int, default=0, help="override every scenario's desktop count")
    parser.add_argument("--conversations", type=int, default=0, help="override every scenario's conversation count")
    parser.add_argument("--rate", type=float, default=None, help="override every scenario's pace, pushes/s (0: unpaced)")
    parser.add_argument("--concurrency", type=int, default=32, help="POSTs in flight (default 32)")
    parser.add_argument("--workers", type=int, default=1, help="desktop processes of the load generator (default 1)")
    parser.add_argument("--client", choices=("socketio", "raw"), default="socketio",
                        help="desktops: python-socketio AsyncClients (default, as the scenarios specify), or lean "
                             "hand-written Socket.IO frames on aiohttp WebSockets (the load generator's own floor)")
    parser.add_argument("--server", choices=processes.SERVERS, default=processes.IMAGE_SERVER,
                        help=f"server command for both roles (default: the image's, {processes.IMAGE_SERVER})")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for both servers (e.g. GC_TUNING=false); repeatable")
    parser.add_argument("--connector-command", metavar="TEMPLATE",
                        help="a shell command starting the connector instead of the repository's, on 127.0.0.1:{port}"
                             " with Redis at {redis_host}:{redis_port}; started afresh for every run")
    parser.add_argument("--interceptor-command", metavar="TEMPLATE", help="likewise for the interceptor")
    parser.add_argument("--tokens-file", metavar="PATH",
                        help="desktop JWTs, one a line, used in turn (default: minted for the repository's servers)")
    parser.add_argument("--label", help="names the servers in each line (default: --server, or 'command')")
    parser.add_argument("--idle", type=float, default=0.0, metavar="SECONDS",
                        help="with the desktops connected, measure the connector's CPU over SECONDS before pushing")
    parser.add_argument("--timeout", type=float, default=30.0, help="per connect/join/POST timeout, s")
    parser.add_argument("--settle", type=float, default=3.0, help="stop waiting after this long with no delivery, s")
    parser.add_argument("--deadline", type=float, default=120.0, help="cap on the wait for deliveries, s")
    args = parser.parse_args(argv)
    args.scenarios = args.scenarios or ["a", "b", "c", "e"]
    if args.label is None:
        args.label = "command" if args.connector_command or args.interceptor_command else args.server
    unknown = [name for name in args.scenarios if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Exit status 0 when every run delivered everything exactly once and nothing failed."""
    with contextlib.suppress(KeyboardInterrupt):
        # uvloop, as the servers: the load generator's CPU shares the two cores with them.
        return 0 if uvloop.run(run(parse_arguments(argv))) else 1
    return 1


if __name__ == "__main__":
    sys.exit(main())
