"""Push-to-desktop delivery through real processes: Pub/Sub push -> interceptor -> Redis -> connector -> Socket.IO.

Starts a private redis-server (or uses ``AA_TEST_REDIS``), one connector and
one interceptor server process (production-like environment, from
``testing.processes``), connects python-socketio desktops over the websocket
transport, has each join one conversation, then POSTs Pub/Sub push envelopes
to the interceptor at bounded concurrency. For every message it records when
its POST started and when each desktop received it, on this process's
``time.perf_counter`` clock, and prints delivery counts and latencies.

    .venv/bin/python -m benchmarks.socketio_delivery [--desktops 50 --conversations 50 --pushes 2000
                                                       --concurrency 16 --http-client httpx]

Everything binds to 127.0.0.1; every loop is bounded in count and in time.
Exit status 1 when an event was lost, duplicated, misdelivered, refused, or a
server logged an error.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import json
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import aiohttp
import httpx
import socketio

from testing import processes
from testing.percentiles import percentile
from testing.tokens import mint_tokens

EVENT = "new-message-event"
PROJECT = "bench-cx"
# Log lines that mean something went wrong in a server (startup INFO lines are expected).
SUSPICIOUS = ("ERROR", "CRITICAL", "Traceback", "Exception", "WARNING")
# System-check warnings printed once at start-up (e.g. auth_providers.W001: no AUTH_OPTION, which this
# benchmark does not need); shown, but not counted as failures.
STARTUP_CHECK_WARNING = re.compile(r" WARNING aa_site [a-z_]+\.W\d{3}: ")


@dataclass
class Desktop:
    """One Socket.IO client and what it received: (message_id, conversation_name, perf_counter)."""

    index: int
    conversation: str  # normalised, as the server acknowledges and delivers it
    client: socketio.AsyncClient
    received: list[tuple[str, str, float]] = field(default_factory=list)
    disconnects: int = 0  # before we closed it ourselves
    closing: bool = False


@dataclass
class PushResults:
    """What the push phase did: start time per message, status counts, transport errors."""

    started: dict[str, float] = field(default_factory=dict)
    statuses: collections.Counter = field(default_factory=collections.Counter)
    errors: collections.Counter = field(default_factory=collections.Counter)
    round_trips: list[float] = field(default_factory=list)  # ms from POST start to its response
    not_sent: int = 0  # left when --deadline passed
    first_start: float = 0.0
    last_end: float = 0.0


def conversation_id(index: int) -> str:
    """The conversation id (last path segment) of benchmark conversation ``index``."""
    return f"BENCH-{index:04d}"


def conversation_name(index: int, *, with_location: bool) -> str:
    """Desktops join with the location form; Dialogflow publishes it too. The server normalises both."""
    location = "locations/global/" if with_location else ""
    return f"projects/{PROJECT}/{location}conversations/{conversation_id(index)}"


def push_envelope(*, sequence: int, conversation: int, message_id: str) -> bytes:
    """A push body shaped like ``fixtures/pubsub/new-message-event.json``, for one conversation."""
    name = conversation_name(conversation, with_location=True)
    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    notification = {
        "conversation": name,
        "type": "NEW_MESSAGE",
        "newMessagePayload": {
            "name": f"{name}/messages/M-{sequence:06d}",
            "content": f"Benchmark message {sequence}: I was charged twice for my order.",
            "languageCode": "en-US",
            "participant": f"{name}/participants/P-END",
            "participantRole": "END_USER",
            "createTime": now,
            "sendTime": now,
        },
    }
    data = base64.b64encode(json.dumps(notification).encode()).decode()
    envelope = {
        "message": {
            "data": data,
            "messageId": message_id,
            "message_id": message_id,
            "publishTime": now,
            "publish_time": now,
        },
        "subscription": f"projects/{PROJECT}/subscriptions/aa-bench",
    }
    return json.dumps(envelope).encode()


async def connect_desktop(index: int, *, url: str, token: str, conversation: int, timeout: float,
                          transports: tuple[str, ...] = ("websocket",)) -> Desktop:
    """Connect (over the websocket transport unless told otherwise), join one conversation, and record every
    event received."""
    client = socketio.AsyncClient(reconnection=False)
    desktop = Desktop(index=index, conversation="", client=client)

    @client.on(EVENT)
    async def on_event(payload: dict, offset: str | None = None) -> None:  # the offset: connection state recovery
        received_at = time.perf_counter()  # first, so handler work is not counted
        desktop.received.append((str(payload.get("message_id")), str(payload.get("conversation_name")), received_at))

    @client.event
    async def disconnect(*_args) -> None:
        if not desktop.closing:
            desktop.disconnects += 1

    await asyncio.wait_for(
        client.connect(url, auth={"token": token}, transports=list(transports), wait_timeout=timeout), timeout
    )
    ack = await client.call("join-conversation", conversation_name(conversation, with_location=True), timeout=timeout)
    if not (isinstance(ack, tuple) and ack[0] is True):
        raise RuntimeError(f"desktop {index}: join-conversation was refused: {ack!r}")
    desktop.conversation = ack[1]
    return desktop


async def connect_all(args: argparse.Namespace, url: str, tokens: list[str],
                      transports: Callable[[int], tuple[str, ...]] = lambda index: ("websocket",)) -> list[Desktop]:
    """Connect the desktops a few at a time (a burst of handshakes is not what is measured); desktop ``i``
    on ``transports(i)``."""
    gate = asyncio.Semaphore(10)

    async def one(index: int) -> Desktop:
        async with gate:
            return await connect_desktop(
                index, url=url, token=tokens[index], conversation=index % args.conversations, timeout=args.timeout,
                transports=transports(index),
            )

    outcomes = await asyncio.gather(*(one(index) for index in range(args.desktops)), return_exceptions=True)
    desktops = [outcome for outcome in outcomes if isinstance(outcome, Desktop)]
    failures = [outcome for outcome in outcomes if not isinstance(outcome, Desktop)]
    if failures:
        await disconnect_all(desktops, timeout=args.timeout)
        raise RuntimeError(f"{len(failures)} of {args.desktops} desktops could not connect and join: {failures[0]!r}")
    return desktops


async def disconnect_all(desktops: list[Desktop], *, timeout: float) -> None:
    """Close every desktop; disconnects from here on are ours, not the server's."""
    for desktop in desktops:
        desktop.closing = True
    await asyncio.gather(
        *(asyncio.wait_for(desktop.client.disconnect(), timeout) for desktop in desktops), return_exceptions=True
    )


Post = Callable[[bytes], Awaitable[int]]
HEADERS = {"Content-Type": "application/json"}


@contextlib.asynccontextmanager
async def http_poster(kind: str, url: str, *, concurrency: int, timeout: float) -> AsyncIterator[Post]:
    """A ``post(body) -> status`` on a pool of ``concurrency`` keep-alive connections.

    httpx is the default (what the service itself uses); aiohttp is there because httpx's pool costs
    the load generator enough CPU at high concurrency to dominate the tail (benchmarks/README.md, "Socket.IO delivery").
    """
    path = f"/{EVENT}"
    if kind == "httpx":
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:

            async def post_httpx(body: bytes) -> int:
                return (await client.post(path, content=body, headers=HEADERS)).status_code

            yield post_httpx
    else:
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(url, connector=connector,
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as session:

            async def post_aiohttp(body: bytes) -> int:
                async with session.post(path, data=body, headers=HEADERS) as response:
                    await response.read()
                    return response.status

            yield post_aiohttp


async def push_all(args: argparse.Namespace, url: str) -> PushResults:
    """POST every envelope with at most ``--concurrency`` requests in flight, stopping at ``--deadline``."""
    results = PushResults()
    run = f"{int(time.time())}"
    work: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for sequence in range(args.pushes):
        message_id = f"bench-{run}-{sequence:06d}"
        work.put_nowait((message_id, push_envelope(sequence=sequence, conversation=sequence % args.conversations,
                                                   message_id=message_id)))
    deadline = time.perf_counter() + args.deadline

    async with http_poster(args.http_client, url, concurrency=args.concurrency, timeout=args.timeout) as post:

        async def worker() -> None:
            while not work.empty() and time.perf_counter() < deadline:
                message_id, body = work.get_nowait()
                results.started[message_id] = time.perf_counter()
                try:
                    status = await post(body)
                    results.round_trips.append((time.perf_counter() - results.started[message_id]) * 1000)
                    results.statuses[status] += 1
                except (httpx.HTTPError, aiohttp.ClientError, asyncio.TimeoutError) as error:
                    results.errors[error.__class__.__name__] += 1
                results.last_end = time.perf_counter()

        results.first_start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    results.not_sent = work.qsize()
    return results


def expected_deliveries(desktops: list[Desktop], started: dict[str, float], conversations: int) -> set[tuple[int, str]]:
    """Every (desktop, message) pair that should arrive: each message goes to every desktop in its conversation."""
    members = collections.defaultdict(list)
    for desktop in desktops:
        members[desktop.conversation].append(desktop.index)
    wanted = set()
    for message_id in started:
        sequence = int(message_id.rsplit("-", 1)[1])
        conversation = conversation_name(sequence % conversations, with_location=False)
        wanted.update((index, message_id) for index in members[conversation])
    return wanted


async def wait_for_deliveries(desktops: list[Desktop], expected: int, *, settle: float, deadline: float) -> None:
    """Return when every expected event arrived, nothing arrived for ``settle`` s, or ``deadline`` s passed."""
    give_up = time.perf_counter() + deadline
    last_count, last_change = -1, time.perf_counter()
    while time.perf_counter() < give_up:
        count = sum(len(desktop.received) for desktop in desktops)
        if count >= expected:
            return
        if count != last_count:
            last_count, last_change = count, time.perf_counter()
        elif time.perf_counter() - last_change > settle:
            return
        await asyncio.sleep(0.05)


@dataclass
class Tally:
    """What the desktops received against the ``expected`` (desktop, message) pairs: each first receipt as
    (desktop, push-to-desktop ms, when), the misdelivered, missing and duplicated, and the desktops' unexpected
    disconnects."""

    expected: int
    first: list[tuple[Desktop, float, float]]
    misdelivered: int
    missing: list[tuple[int, str]]
    duplicates: int
    disconnects: int

    @property
    def delivered(self) -> int:
        return self.expected - len(self.missing)

    @property
    def clean(self) -> bool:
        """Every expected event arrived once, at the desktop it was for, and no desktop was disconnected."""
        return not self.missing and not self.duplicates and not self.misdelivered and not self.disconnects


def tally(desktops: list[Desktop], started: dict[str, float], conversations: int) -> Tally:
    """What the desktops received of the messages POSTed at ``started``, desktop ``i`` in conversation ``i mod
    conversations``."""
    wanted = expected_deliveries(desktops, started, conversations)
    seen: collections.Counter = collections.Counter()
    first, misdelivered = [], 0
    for desktop in desktops:
        for message_id, conversation, received_at in desktop.received:
            key = (desktop.index, message_id)
            if key not in wanted or conversation != desktop.conversation:
                misdelivered += 1
                continue
            seen[key] += 1
            if seen[key] == 1:
                first.append((desktop, (received_at - started[message_id]) * 1000, received_at))
    missing = sorted(key for key in wanted if not seen[key])
    duplicates = sum(count - 1 for count in seen.values() if count > 1)
    disconnects = sum(desktop.disconnects for desktop in desktops)
    return Tally(len(wanted), first, misdelivered, missing, duplicates, disconnects)


def latency_figures(values: list[float]) -> str:
    """The p50, p90, p99 and max of ``values`` (ms), as every report line of latencies shows them."""
    return "p50 {:.1f}  p90 {:.1f}  p99 {:.1f}  max {:.1f}".format(
        *(percentile(values, f) for f in (0.5, 0.9, 0.99)), max(values, default=float("nan")))


def suspicious_lines(server: processes.Server) -> tuple[list[str], list[str]]:
    """The server's warning/error lines, split into (start-up check warnings, everything else)."""
    lines = [line for line in server.log().splitlines() if any(word in line for word in SUSPICIOUS)]
    startup = [line for line in lines if STARTUP_CHECK_WARNING.search(line)]
    return startup, [line for line in lines if line not in startup]


def report(args: argparse.Namespace, desktops: list[Desktop], pushes: PushResults,
           logs: dict[str, tuple[list[str], list[str]]], wall: float) -> bool:
    """Print the figures; return True when nothing was lost, duplicated, misdelivered or refused."""
    counted = tally(desktops, pushes.started, args.conversations)
    latencies = [latency for _, latency, _ in counted.first]
    last_receipt = max((received_at for _, _, received_at in counted.first), default=pushes.first_start)
    non_204 = {str(status): n for status, n in pushes.statuses.items() if status != 204}
    posted = sum(pushes.statuses.values())
    push_seconds = max(pushes.last_end - pushes.first_start, 1e-9)

    print(f"desktops={args.desktops} conversations={args.conversations} pushes={args.pushes} "
          f"concurrency={args.concurrency} http-client={args.http_client}")
    print(f"delivered / expected   {counted.delivered} / {counted.expected}"
          f"  (expected counts every push that was sent, times the desktops in its conversation)")
    if counted.missing:
        print(f"  missing, first few (desktop, messageId): {counted.missing[:5]}")
    print(f"duplicates             {counted.duplicates}")
    print(f"misdelivered           {counted.misdelivered}")
    print(f"non-204 responses      {sum(non_204.values())} {non_204 or ''}")
    print(f"not sent (deadline)    {pushes.not_sent}")
    print(f"transport errors       {sum(pushes.errors.values())} {dict(pushes.errors) or ''}")
    print(f"unexpected disconnects {counted.disconnects}")
    print(f"push-to-desktop ms     {latency_figures(latencies)}")
    print(f"POST round trip ms     {latency_figures(pushes.round_trips)}")
    print(f"pushes per second      {posted / push_seconds:.0f}  ({posted} POSTs answered in {push_seconds:.2f} s)")
    print(f"deliveries per second  {len(latencies) / max(last_receipt - pushes.first_start, 1e-9):.0f}"
          f"  (first POST to last delivery)")
    print(f"wall time              {wall:.2f} s (servers up to servers down)")
    for role, (startup, lines) in logs.items():
        print(f"{role} log: {len(lines)} warning/error lines, {len(startup)} start-up check warnings")
        for line in [*startup, *lines][:10]:
            print(f"    {line}")
    return (counted.clean and not non_204 and not pushes.errors and not pushes.not_sent
            and not any(lines for _, lines in logs.values()))


async def run(args: argparse.Namespace) -> bool:
    """Start the servers, connect, push, wait, read the logs, and report; True when nothing went wrong."""
    tokens = mint_tokens([f"bench-agent-{index}" for index in range(args.desktops)])
    started = time.perf_counter()
    with processes.redis_server() as redis, \
            processes.service_server(role="connector", redis=redis) as connector, \
            processes.service_server(role="interceptor", redis=redis) as interceptor:
        desktops = await connect_all(args, connector.http_url, tokens)
        try:
            pushes = await push_all(args, interceptor.http_url)
            wanted = len(expected_deliveries(desktops, pushes.started, args.conversations))
            await wait_for_deliveries(desktops, wanted, settle=args.settle, deadline=args.deadline)
        finally:
            await disconnect_all(desktops, timeout=args.timeout)
        # Give the servers a moment to log anything the disconnects caused, then read the logs.
        await asyncio.sleep(0.5)
        logs = {"connector": suspicious_lines(connector), "interceptor": suspicious_lines(interceptor)}
    return report(args, desktops, pushes, logs, time.perf_counter() - started)


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--desktops", type=int, default=50, help="Socket.IO clients (default 50)")
    parser.add_argument("--conversations", type=int, default=50,
                        help="conversations; desktop i joins conversation i mod this (default 50)")
    parser.add_argument("--pushes", type=int, default=2000, help="push envelopes to POST (default 2000)")
    parser.add_argument("--concurrency", type=int, default=16, help="POSTs in flight at once (default 16)")
    parser.add_argument("--http-client", choices=("httpx", "aiohttp"), default="httpx",
                        help="library that POSTs the pushes (default httpx)")
    parser.add_argument("--timeout", type=float, default=15.0, help="per connect/join/POST timeout, s")
    parser.add_argument("--settle", type=float, default=5.0, help="stop waiting after this long with no delivery, s")
    parser.add_argument("--deadline", type=float, default=300.0, help="cap on the push phase and on the wait, s")
    args = parser.parse_args(argv)
    if min(args.desktops, args.conversations, args.pushes, args.concurrency) < 1:
        parser.error("counts must be at least 1")
    if args.conversations > args.desktops:
        parser.error("every conversation needs a desktop: --conversations must not exceed --desktops")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run once; exit status 0 when every event arrived exactly once and nothing failed."""
    ok = asyncio.run(run(parse_arguments(argv)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
