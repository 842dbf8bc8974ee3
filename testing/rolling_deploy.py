"""The rolling-deploy fault scenario: two connectors behind round-robin nginx, one replaced while pushes flow.

Desktops connect through nginx over the Socket.IO WebSocket transport and over
long-polling (the stock npm socket.io-client, ``tests/node/fleet.mjs``, which
reconnects and recovers by itself) and over ``/ws/`` (``PlainFleetDesktop``:
aiohttp, reconnecting on any close and joining again ``after`` its last
offset), each with a token of its own, ten to a conversation. Pushes go to a
real interceptor at a steady rate, as Pub/Sub sends them (retried until
acknowledged). A few seconds in, the first connector gets SIGTERM; once it
has exited a new connector starts on its port (what a rolling deploy does to
an instance); pushes go on a few seconds more. Then every desktop must be
connected, every acknowledged push must have reached every desktop of its
conversation exactly once, no log may say "No connection available", and the
live instances' records must count every WebSocket desktop and none on the
stopped process. ``tree`` runs the servers from another checkout (the main
branch, for a before-and-after).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import redis.asyncio as redis

from testing import processes
from testing.clients import NODE_DIRECTORY
from testing.fault_scenarios import PubSub, Tally, conversations, count
from testing.nginx_proxy import round_robin
from testing.percentiles import percentile
from testing.tokens import mint_tokens

WAIT = 60.0
#: Settings of every server: clients all come from 127.0.0.1 (through nginx), and the history holds the whole run.
SERVER_ENV = {
    "HANDSHAKE_RATE_LIMIT": "1000000/minute",
    "WEBSOCKET_MAX_UNAUTHENTICATED": "100000",
    "WEBSOCKET_MAX_UNAUTHENTICATED_PER_ADDRESS": "100000",
    "EVENT_HISTORY_MAX_EVENTS": "100000",
    "INSTANCE_REPORT_SECONDS": "1",
    "ACCESS_LOG": "errors",
}
POOL_EXHAUSTED = "No connection available"


@dataclass
class RollingDeployTally(Tally):
    """``rolling deploy``'s tally, with how the desktops came back."""

    desktops: dict[str, int] = field(default_factory=dict)  # by transport
    reconnects: dict[str, list[float]] = field(default_factory=dict)  # transport -> seconds from loss to back
    not_recovered: int = 0  # Socket.IO reconnections that did not get their session back
    close_codes: Counter = field(default_factory=Counter)  # how the WebSocket desktops' connections ended
    failed_attempts: Counter = field(default_factory=Counter)  # reconnection attempts that failed, by why
    drain_line: str = ""  # the stopped connector's drain log line
    stop_seconds: float = 0.0  # from SIGTERM to the stopped connector's exit
    exit_status: int | None = None
    pool_exhausted: int = 0  # log lines saying "No connection available", all servers
    error_lines: int = 0  # ERROR lines in the stopped connector's log

    def line(self) -> str:
        everyone = [seconds for values in self.reconnects.values() for seconds in values]
        figures = "  ".join(
            f"{transport} {len(values)}: p50 {percentile(values, 0.5) * 1000:.0f} p99 {percentile(values, 0.99) * 1000:.0f} ms"
            for transport, values in [("all", everyone), *sorted(self.reconnects.items())])
        desktops = ", ".join(f"{count} {transport}" for transport, count in self.desktops.items())
        return (f"{super().line()}\n"
                f"{'':<18} desktops: {desktops}; reconnects {figures}; not recovered {self.not_recovered}; "
                f"close codes {dict(self.close_codes)}; failed attempts {dict(self.failed_attempts)}\n"
                f"{'':<18} stopped connector: exit {self.exit_status} {self.stop_seconds:.2f} s after SIGTERM, "
                f"{self.error_lines} ERROR lines; '{POOL_EXHAUSTED}' in all logs: {self.pool_exhausted}\n"
                f"{'':<18} {self.drain_line or '(no drain line)'}")


class PlainFleetDesktop:
    """A ``/ws/`` desktop that reconnects on any close and joins again after the last offset it received."""

    def __init__(self, url: str, token: str, conversation: str, session: aiohttp.ClientSession) -> None:
        self.url, self.token, self.conversation, self.session = url, token, conversation, session
        self.received: Counter[str] = Counter()
        self.last_offset: str | None = None
        self.joined = asyncio.Event()
        self.connected = False
        self.reconnects: list[float] = []
        self.close_codes: Counter = Counter()
        self.failed_attempts: Counter = Counter()
        self.stopping = False
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        self.stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        lost_at: float | None = None
        while not self.stopping:
            try:
                async with self.session.ws_connect(self.url, heartbeat=None) as socket:
                    await socket.send_json({"type": "authenticate", "token": self.token})
                    join = {"type": "join", "conversation": self.conversation}
                    if self.joined.is_set():
                        join.update({"after": self.last_offset} if self.last_offset else {"history": True})
                    await socket.send_json(join)
                    async for message in socket:
                        if message.type != aiohttp.WSMsgType.TEXT:
                            break
                        frame = json.loads(message.data)
                        if frame.get("type") == "joined":
                            self.connected = True
                            if lost_at is not None:
                                self.reconnects.append(time.monotonic() - lost_at)
                                lost_at = None
                            self.joined.set()
                        elif frame.get("type") == "event":
                            self.received[frame["payload"]["message_id"]] += 1
                            self.last_offset = frame["offset"]
                    self.close_codes[socket.close_code] += 1
            except (TimeoutError, aiohttp.ClientError, OSError) as error:
                self.failed_attempts[f"/ws/: {type(error).__name__}: {error}"[:80]] += 1
            self.connected = False
            if lost_at is None:
                lost_at = time.monotonic()
            # As socket.io-client's default: about a second, randomized by half.
            await asyncio.sleep(random.uniform(0.5, 1.5))


class NodeFleet:
    """``tests/node/fleet.mjs``: npm socket.io-client desktops in one node process."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict] = []
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self.lines.append(json.loads(line))

    async def command(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    def of_kind(self, kind: str) -> list[dict]:
        return [line for line in self.lines if line["kind"] == kind]

    async def status(self) -> dict:
        before = len(self.of_kind("status"))
        await self.command("status")
        await until(lambda: len(self.of_kind("status")) > before, timeout=10)
        return self.of_kind("status")[-1]


@contextlib.asynccontextmanager
async def node_fleet(url: str, desktops: list[dict], *, spacing_ms: float = 0):
    node = shutil.which("node")
    if node is None or not (NODE_DIRECTORY / "node_modules" / "socket.io-client").is_dir():
        raise RuntimeError("node and tests/node/node_modules are needed: (cd tests/node && npm ci)")
    process = await asyncio.create_subprocess_exec(
        node, str(NODE_DIRECTORY / "fleet.mjs"), cwd=NODE_DIRECTORY, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, limit=2**20)
    fleet = NodeFleet(process)
    try:
        # The tokens go on standard input, not in the process list.
        await fleet.command(json.dumps({"url": url, "desktops": desktops, "spacingMs": spacing_ms}))
        yield fleet
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        fleet._reader.cancel()


async def until(predicate, *, timeout: float = WAIT) -> bool:
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout
    while not predicate():
        if loop.time() > give_up:
            return False
        await asyncio.sleep(0.05)
    return True


@contextlib.contextmanager
def connector_on(port: int, store: processes.RedisAddress, tree: Path, log_path: Path) -> Iterator[subprocess.Popen]:
    """A connector from ``tree`` on 127.0.0.1:``port`` (so that nginx's list of backends holds its successor too),
    its output appended to ``log_path``; stopped (SIGTERM, then SIGKILL) when the block ends, if still running."""
    environment = processes.server_environment(role="connector", redis=store, PYTHONPATH=str(tree), **SERVER_ENV)
    with log_path.open("ab") as log:
        process = subprocess.Popen(processes.server_command(processes.IMAGE_SERVER, port), cwd=tree, env=environment,
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        processes.wait_for_port(port, process=process)
        yield process
    finally:
        if process.poll() is None:
            processes.stop(process)


async def rolling_deploy(*, desktops: int, rate: float = 20.0, before: float = 4.0, after: float = 5.0,
                         tree: Path = processes.REPOSITORY) -> RollingDeployTally:
    """The scenario with ``desktops`` desktops (two fifths Socket.IO WebSocket, three tenths long-polling, the rest
    ``/ws/``), ``rate`` pushes a second, ``before`` seconds of them before the SIGTERM and ``after`` seconds after the
    new connector is up."""
    tally = RollingDeployTally("rolling deploy")
    websocket, polling = desktops * 4 // 10, desktops * 3 // 10
    plain = desktops - websocket - polling
    tally.desktops = {"websocket": websocket, "polling": polling, "/ws/": plain}
    names = conversations(max(1, desktops // 10))
    tokens = mint_tokens([f"agent-{number}" for number in range(desktops)])
    joined_to = [names[number % len(names)] for number in range(desktops)]
    logs = [Path(tempfile.mkstemp(prefix=f"aa-deploy-{name}-", suffix=".log")[1]) for name in ("a", "b", "a2")]
    port_a, port_b = processes.free_port(), processes.free_port()
    pushes: list[tuple[str, str]] = []
    with processes.redis_server(private=True) as store, \
            processes.service_server(role="interceptor", redis=store, cwd=tree, PYTHONPATH=str(tree),
                                     **SERVER_ENV) as interceptor, \
            connector_on(port_b, store, tree, logs[1]), \
            contextlib.ExitStack() as stack, \
            round_robin([port_a, port_b], retry_refused=True) as proxy:
        first = stack.enter_context(connector_on(port_a, store, tree, logs[0]))
        pubsub = PubSub(interceptor, tally)
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        plain_desktops = [PlainFleetDesktop(f"ws://127.0.0.1:{proxy.port}/ws/", tokens[number], joined_to[number],
                                            session) for number in range(websocket + polling, desktops)]
        node_desktops = [{"token": tokens[number], "join": joined_to[number],
                          "transports": ["websocket"] if number < websocket else ["polling"]}
                         for number in range(websocket + polling)]
        try:
            async with node_fleet(proxy.http_url, node_desktops) as fleet:
                for desktop in plain_desktops:
                    desktop.start()
                everyone_joined = await until(
                    lambda: len({line["d"] for line in fleet.of_kind("joined") if line["ok"]}) == len(node_desktops)
                    and all(desktop.joined.is_set() for desktop in plain_desktops), timeout=WAIT * 2)
                if not everyone_joined:
                    tally.problems.append("not every desktop connected and joined in time")
                    return tally
                node_lines_before = len(fleet.lines)

                loop = asyncio.get_running_loop()
                started = loop.time()
                delivering: list[asyncio.Task] = []

                async def push_steadily(until_done: asyncio.Event) -> None:
                    number = 0
                    while not until_done.is_set():
                        await asyncio.sleep(max(0.0, started + number / rate - loop.time()))
                        name, message_id = names[number % len(names)], f"deploy-{number}"
                        pushes.append((name, message_id))
                        delivering.append(asyncio.ensure_future(deliver(name, message_id)))
                        number += 1

                acknowledged: set[str] = set()

                async def deliver(name: str, message_id: str) -> None:
                    """As Pub/Sub: retried with backoff until acknowledged (``PubSub.deliver``), noting which were."""
                    tally.pushed += 1
                    give_up, delay = loop.time() + WAIT, 0.1
                    while loop.time() < give_up:
                        if await pubsub.post(name, message_id):
                            tally.acknowledged += 1
                            acknowledged.add(message_id)
                            return
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 1.0)

                done = asyncio.Event()
                pusher = asyncio.ensure_future(push_steadily(done))
                await asyncio.sleep(before)
                stopped_at = time.monotonic()
                first.send_signal(signal.SIGTERM)
                await loop.run_in_executor(None, first.wait, 15)
                tally.stop_seconds = time.monotonic() - stopped_at
                tally.exit_status = first.returncode
                # Its successor, on its port (started in a thread: the desktops and pushes here go on meanwhile).
                await loop.run_in_executor(None, stack.enter_context, connector_on(port_a, store, tree, logs[2]))
                await asyncio.sleep(after)
                done.set()
                await pusher
                await asyncio.gather(*delivering)

                expected_of = {name: [m for n, m in pushes if n == name and m in acknowledged] for name in names}
                node_received = [Counter() for _ in node_desktops]

                def node_counts() -> list[Counter]:
                    for counter in node_received:
                        counter.clear()
                    for line in fleet.lines:
                        if line["kind"] == "event":
                            node_received[line["d"]][line["id"]] += 1
                    return node_received

                def all_arrived() -> bool:
                    received = node_counts() + [d.received for d in plain_desktops]
                    return all(len(got) >= len(expected_of[name]) for got, name in zip(received, joined_to))

                await until(all_arrived, timeout=WAIT)
                await asyncio.sleep(1.0)  # for duplicates to show
                count(tally, node_counts() + [d.received for d in plain_desktops],
                      [expected_of[name] for name in joined_to])

                status = await fleet.status()
                unconnected = len(status["disconnected"]) + sum(not d.connected for d in plain_desktops)
                if unconnected:
                    tally.problems.append(f"{unconnected} desktops not connected at the end")
                for line in fleet.lines[node_lines_before:]:
                    if "d" not in line:
                        continue  # the status
                    transport = "websocket" if line["d"] < websocket else "polling"
                    if line["kind"] == "connected" and line["afterMs"] is not None:
                        tally.reconnects.setdefault(transport, []).append(line["afterMs"] / 1000)
                        tally.not_recovered += not line["recovered"]
                    elif line["kind"] == "disconnect" and transport == "websocket":
                        tally.close_codes[line.get("code")] += 1
                    elif line["kind"] == "connect_error":
                        tally.failed_attempts[f"{transport}: {line['message']}"[:80]] += 1
                for desktop in plain_desktops:
                    tally.reconnects.setdefault("/ws/", []).extend(desktop.reconnects)
                    tally.close_codes.update(desktop.close_codes)
                    tally.failed_attempts.update(desktop.failed_attempts)
                await check_instances(tally, store, websocket + plain, stopped_pid=first.pid)
        finally:
            for desktop in plain_desktops:
                await desktop.stop()
            await session.close()
            await pubsub.close()
        interceptor_log = interceptor.log()
    texts = [path.read_text(errors="replace") for path in logs] + [interceptor_log]
    for path in logs:
        path.unlink(missing_ok=True)
    tally.pool_exhausted = sum(text.count(POOL_EXHAUSTED) for text in texts)
    if tally.pool_exhausted:
        tally.problems.append(f"'{POOL_EXHAUSTED}' logged {tally.pool_exhausted} times")
    tally.drain_line = next((line for line in texts[0].splitlines() if "Drained for shutdown" in line), "")
    tally.error_lines = sum('"severity": "ERROR"' in line for line in texts[0].splitlines())
    if tally.not_recovered:
        tally.problems.append(f"{tally.not_recovered} Socket.IO reconnections were not recovered")
    return tally


async def check_instances(tally: RollingDeployTally, store: processes.RedisAddress, expected: int, *,
                          stopped_pid: int) -> None:
    """The live connectors' records (rewritten every second here) count every WebSocket desktop, none on the
    stopped process."""
    inspector = redis.Redis(host=store.host, port=store.port, decode_responses=True)
    counted, stale = 0, 0
    try:
        give_up = time.monotonic() + 10
        while time.monotonic() < give_up:
            records = [json.loads(value) for value in await inspector.mget(
                [key async for key in inspector.scan_iter("aa:instance:*")] or ["-"]) if value]
            counted = sum(sum(record["desktops_by_transport"].values()) for record in records)
            stale = sum(record["pid"] == stopped_pid for record in records)
            if counted == expected and not stale:
                return
            await asyncio.sleep(0.5)
    finally:
        await inspector.aclose()
    tally.problems.append(f"the live instances count {counted} WebSocket desktops of {expected}"
                          f"{', and the stopped one still has a record' if stale else ''}")

