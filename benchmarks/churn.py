"""Desktops that come and go, round after round: does the connector give back what they made it hold?

    .venv/bin/python -m benchmarks.churn [--rounds 10] [--desktops 60] [--pushes 2] [--warm-up 3]
    .venv/bin/python -m benchmarks.churn --tracemalloc     # and where the Python heap grew, by line

What runs, on 127.0.0.1: a private redis-server, one interceptor (the image's server command) and one
connector (the same command through ``benchmarks.churn_server``, which adds a heap report on SIGUSR1),
production settings but ``TRUSTED_PROXY_HOPS=1``: every desktop sends ``X-Forwarded-For`` with an address
of its own, new each round, as Cloud Run's front end would write it. Each round, ``--desktops`` desktops
(two fifths python-socketio on the websocket transport, one fifth python-socketio long-polling, two fifths
the plain ``/ws/`` protocol on aiohttp), each with a token of its own, new each round:

1. connect and join two conversations: one of the round's own (a new name each round, two desktops to a
   conversation) and one of a few shared by every round;
2. ``--pushes`` events to each of those conversations through the interceptor, which every desktop must
   receive;
3. a quarter of each kind, connected through a loopback TCP proxy, lose their connection abruptly (the
   proxy aborts it: no close frame, no DISCONNECT); ``--pushes`` more events are pushed while they are
   away; they come back on a new connection and recover what they missed (Socket.IO: connection state
   recovery with the ``pid`` and offset; ``/ws/``: a join ``after`` the last offset);
4. ``--pushes`` more events that every desktop must receive;
5. all leave: half with ``leave-conversation`` / ``leave`` first, then every one disconnects.

After each round, once the connector holds nothing of the desktops (or after ``SETTLE`` seconds),
one line: the connector's RSS, what tracemalloc traces (with ``--tracemalloc``), the objects its collector
tracks after a full collection, its asyncio tasks, and every per-process container
(``benchmarks.churn_server``) that is not empty although no desktop is connected. After the last round: the
RSS and object count from the end of the warm-up to the end, the types whose count grew most, and with
``--tracemalloc`` the lines whose allocations grew most.

Exit status 1 when an event was lost or doubled, a client failed, or a server logged an ERROR. Growth is
printed, not judged: the figures in docs/performance.md ("Connect and leave, round after round") say what
flat looks like.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import socketio

from testing import processes
from testing.push_bodies import push_body
from testing.tcp_proxy import TcpProxy
from testing.tokens import mint_tokens

MIB = 2**20
PROJECT = processes.TEST_PROJECT
SHARED_CONVERSATIONS = 5
WAIT = 20.0  # for anything that must come: generous, the machine is shared
SETTLE = 10.0  # after a round, at most this long for the connector to see every desktop go
# Production settings but for the client address (one trusted proxy hop, as on Cloud Run) and heartbeats of
# seconds, so that a round sees its vanished desktops' connections ended by them.
# (A pong timeout of a second or two closes live desktops now and then on a busy machine.)
PING_INTERVAL, PING_TIMEOUT = 1, 3
SERVER_ENV = {**processes.IMAGE_ENV, "TRUSTED_PROXY_HOPS": "1", "SOCKETIO_PING_INTERVAL": str(PING_INTERVAL),
              "SOCKETIO_PING_TIMEOUT": str(PING_TIMEOUT), "WEBSOCKET_KEEPALIVE_SECONDS": str(PING_TIMEOUT)}
# From a stall to the connector closing the connection: the ping's interval and timeout (the keepalive's two
# timeouts), and a second.
VANISHED_DETECTION = max(PING_INTERVAL + PING_TIMEOUT, 2 * PING_TIMEOUT) + 1.0
KINDS = ("websocket", "websocket", "polling", "plain", "plain")  # desktop i is KINDS[i % 5]
EVENT = "new-message-event"
# Containers of a fixed size whatever the desktops do: a subscription's wanted channels by kind (the kinds), and
# redis-py's health check answers.
FIXED = ("._wanted", ".health_check_response")


def conversation(name: str) -> str:
    return f"projects/{PROJECT}/conversations/{name}"


@dataclass
class Tally:
    expected: int = 0
    received: int = 0
    lost: int = 0
    duplicated: int = 0
    failures: list[str] = field(default_factory=list)


class Desktop:
    """One desktop of a round: its kind, its two conversations, and the message ids it received per
    conversation (a recovered desktop keeps counting on its new connection)."""

    def __init__(self, kind: str, token: str, address: str, conversations: list[str], url: str) -> None:
        self.kind, self.token, self.address, self.conversations, self.url = kind, token, address, conversations, url
        self.received: Counter[tuple[str, str]] = Counter()  # (conversation, message id) -> times
        self.offsets: dict[str, str] = {}  # plain: conversation -> last offset
        self.vector: str | None = None  # Socket.IO: the last offset
        self.pid: str | None = None
        self.client: socketio.AsyncClient | None = None
        self.session: aiohttp.ClientSession | None = None
        self.socket: aiohttp.ClientWebSocketResponse | None = None
        self.reader: asyncio.Task | None = None
        self.waiting: asyncio.Future | None = None  # plain: the next answer frame
        self.expected: set[tuple[str, str]] = set()  # (conversation, message id) it must receive
        self.leaving = False
        self.closed_under_it = 0  # connections that ended before it left

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Forwarded-For": self.address}

    def _event(self, payload: dict) -> None:
        self.received[(payload.get("conversation_name"), payload.get("message_id"))] += 1

    # --- Socket.IO ---------------------------------------------------------------------------

    async def connect(self, *, recover: bool = False) -> None:
        self.leaving = False
        if self.kind == "plain":
            await self._connect_plain(recover=recover)
            return
        # A session of its own, closed with it (the client's own is left open when its connection was cut).
        self.session = aiohttp.ClientSession()
        client = socketio.AsyncClient(reconnection=False, http_session=self.session)
        handle_connect = client._handle_connect

        async def keep_pid(namespace: str | None, data: Any) -> None:
            # python-socketio keeps only the answer's sid; connection state recovery needs its pid too.
            if isinstance(data, dict) and isinstance(data.get("pid"), str):
                self.pid = data["pid"]
            await handle_connect(namespace, data)

        client._handle_connect = keep_pid

        async def on_event(payload: dict, offset: str | None = None) -> None:
            self._event(payload)
            if offset is not None:
                self.vector = offset

        client.on(EVENT, on_event)

        async def on_disconnect(*_: Any) -> None:
            if not self.leaving:
                self.closed_under_it += 1

        client.on("disconnect", on_disconnect)
        auth: dict[str, Any] = {"token": self.token}
        if recover and self.pid is not None:
            auth["pid"] = self.pid
            if self.vector is not None:
                auth["offset"] = self.vector
        self.client = client
        pid = self.pid
        await client.connect(self.url, headers=self.headers, auth=auth, transports=[self.kind],
                             wait_timeout=WAIT)
        if recover and self.pid != pid:
            raise RuntimeError("not recovered: the connector began a new session")
        if not recover:
            for name in self.conversations:
                ack = await client.call("join-conversation", name, timeout=WAIT)
                if not (isinstance(ack, (list, tuple)) and ack[0] is True):
                    raise RuntimeError(f"join-conversation refused: {ack!r}")

    # --- /ws/ --------------------------------------------------------------------------------

    async def _connect_plain(self, *, recover: bool) -> None:
        self.session = aiohttp.ClientSession()
        self.socket = await self.session.ws_connect(self.url.replace("http://", "ws://") + "/ws/",
                                                    headers=self.headers)
        self.reader = asyncio.create_task(self._read_plain())
        answer = await self._request({"type": "authenticate", "token": self.token})
        if answer.get("type") != "authenticated":
            raise RuntimeError(f"authenticate refused: {answer!r}")
        for name in self.conversations:
            frame: dict[str, Any] = {"type": "join", "conversation": name}
            if recover and name in self.offsets:
                frame["after"] = self.offsets[name]
            answer = await self._request(frame)
            if answer.get("type") != "joined":
                raise RuntimeError(f"join refused: {answer!r}")

    async def _request(self, frame: dict[str, Any]) -> dict[str, Any]:
        self.waiting = asyncio.get_running_loop().create_future()
        await self.socket.send_json(frame)
        return await asyncio.wait_for(self.waiting, WAIT)

    async def _read_plain(self) -> None:
        socket = self.socket
        async for message in socket:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            frame = json.loads(message.data)
            if frame.get("type") == "event":
                self._event(frame["payload"])
                self.offsets[frame["payload"]["conversation_name"]] = frame["offset"]
            elif self.waiting is not None and not self.waiting.done():
                self.waiting.set_result(frame)
        if not self.leaving:
            self.closed_under_it += 1

    # --- leaving -----------------------------------------------------------------------------

    async def leave(self) -> None:
        for name in self.conversations:
            if self.kind == "plain":
                await self._request({"type": "leave", "conversation": name})
            else:
                await self.client.call("leave-conversation", name, timeout=WAIT)

    async def disconnect(self) -> None:
        self.leaving = True
        if self.client is not None:
            await self.client.disconnect()
            self.client = None
        if self.socket is not None:
            await self.socket.close()
            self.socket = None
        if self.reader is not None:
            with contextlib.suppress(Exception):
                await self.reader
            self.reader = None
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def abandon(self) -> None:
        """Let go of a vanished desktop's client, whose connection was cut under it."""
        try:
            await asyncio.wait_for(self.disconnect(), 5.0)
        except Exception:  # noqa: BLE001 - what is left of a client on a dead connection is of no interest
            if self.session is not None:
                await self.session.close()

    async def dropped(self) -> None:
        """After the proxy cut this desktop's connection: wait until its client has noticed, then let go of it."""
        if self.client is not None and self.session is not None:
            # Long-polling has no connection to lose: a poll that was not in flight when the proxy cut goes on
            # on a new one. Its HTTP session closed, the client can send nothing more (no CLOSE either).
            await self.session.close()
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if self.client is not None and not self.client.connected:
                break
            if self.socket is not None and self.socket.closed:
                break
            if self.reader is not None and self.reader.done():
                break
            await asyncio.sleep(0.05)
        with contextlib.suppress(Exception):  # a client whose session is closed cannot say goodbye
            await self.disconnect()
        self.leaving = False


async def wait_until(condition, *, what: str, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            print(f"  timed out waiting for {what}", flush=True)
            return False
        await asyncio.sleep(0.05)
    return True


class Pusher:
    def __init__(self, interceptor: processes.Server) -> None:
        self.url = f"{interceptor.http_url}/{EVENT}"
        self.client = httpx.AsyncClient(timeout=WAIT)
        self.gate = asyncio.Semaphore(16)

    async def push(self, name: str) -> str:
        message_id = uuid.uuid4().hex
        body = push_body({"conversation": name, "text": message_id}, messageId=message_id)
        async with self.gate:
            response = await self.client.post(self.url, content=body, headers={"Content-Type": "application/json"})
        if response.status_code != 204:
            raise RuntimeError(f"push refused: {response.status_code} {response.text[:200]}")
        return message_id

    async def batch(self, conversations: list[str], count: int) -> dict[str, list[str]]:
        pushed: dict[str, list[str]] = {}
        for name in conversations:
            pushed[name] = list(await asyncio.gather(*(self.push(name) for _ in range(count))))
        return pushed


async def run_round(number: int, args: argparse.Namespace, connector: processes.Server, proxies: Proxies,
                    pusher: Pusher, tokens: list[str], tally: Tally) -> None:
    own = [conversation(f"churn-{args.run_id}-round{number}-{i}") for i in range((args.desktops + 1) // 2)]
    shared = [conversation(f"churn-{args.run_id}-shared-{i}") for i in range(SHARED_CONVERSATIONS)]
    desktops: list[Desktop] = []
    for i in range(args.desktops):
        url = {0: proxies.cut.http_url, 1: proxies.stalled.http_url}.get(i % 4, connector.http_url)
        address = f"10.{number % 250}.{i // 250}.{i % 250 + 1}"
        desktops.append(Desktop(KINDS[i % len(KINDS)], tokens[i], address, [own[i // 2], shared[i % len(shared)]],
                                url))
    cut = desktops[0::4]
    vanishing = desktops[1::4]
    staying = [desktop for desktop in desktops if desktop not in vanishing]

    async def guarded(step, desktop: Desktop) -> None:
        try:
            await step(desktop)
        except Exception as error:  # noqa: BLE001 - a client's failure is a figure, not the benchmark's end
            tally.failures.append(f"round {number}: {desktop.kind} {step.__name__}: {type(error).__name__}: {error}")

    async def connect(desktop: Desktop) -> None:
        await desktop.connect()

    async def recover(desktop: Desktop) -> None:
        await desktop.connect(recover=True)

    async def leave(desktop: Desktop) -> None:
        await desktop.leave()

    gate = asyncio.Semaphore(20)

    async def gated(step, desktop: Desktop) -> None:
        async with gate:
            await guarded(step, desktop)

    bad_tokens = (refused(kind, i, number, connector, tally)
                  for i, kind in enumerate(("websocket", "polling", "plain")))
    await asyncio.gather(*(gated(connect, desktop) for desktop in desktops), *bad_tokens)
    conversations = sorted({name for desktop in desktops for name in desktop.conversations})

    def expect(batch: dict[str, list[str]], group: list[Desktop]) -> None:
        for desktop in group:
            for name in desktop.conversations:
                desktop.expected.update((name, message) for message in batch[name])

    def all_in(group: list[Desktop]):
        return lambda: all(desktop.expected <= desktop.received.keys() for desktop in group)

    expect(await pusher.batch(conversations, args.pushes), desktops)
    await wait_until(all_in(desktops), what="the first events")
    # The vanishing desktops' connections stay open but carry nothing more, from either side: only the
    # connector's heartbeat (Engine.IO's ping, /ws/'s keepalive) can tell they are gone.
    proxies.stall()
    proxies.cut.cut()
    await asyncio.gather(*(desktop.dropped() for desktop in cut))
    expect(await pusher.batch(conversations, args.pushes), staying)  # the cut desktops get these by recovering
    await asyncio.gather(*(gated(recover, desktop) for desktop in cut))
    expect(await pusher.batch(conversations, args.pushes), staying)
    await wait_until(all_in(staying), what="every event, the recovered ones too")
    await asyncio.gather(*(gated(leave, desktop) for desktop in staying[0::2]))
    await asyncio.gather(*(desktop.disconnect() for desktop in staying))

    for index, desktop in enumerate(desktops):
        got = set(desktop.received)
        tally.expected += len(desktop.expected)
        tally.received += len(desktop.expected & got)
        tally.lost += len(desktop.expected - got)
        if desktop.expected - got:
            role = {0: "cut and recovered", 1: "vanished"}.get(index % 4, "stayed")
            tally.failures.append(f"round {number}: desktop {index} ({desktop.kind}, {role}) lost "
                                  f"{len(desktop.expected - got)} of {len(desktop.expected)} events; "
                                  f"{desktop.closed_under_it} connection(s) closed under it")
        tally.duplicated += sum(times - 1 for times in desktop.received.values() if times > 1)
    proxies.vanished.extend(vanishing)


async def refused(kind: str, index: int, number: int, connector: processes.Server, tally: Tally) -> None:
    """A desktop with a token that is no token: the connector must refuse it (and keep nothing of it)."""
    desktop = Desktop(kind, "not-a-token", f"10.{number % 250}.255.{index + 1}", [], connector.http_url)
    try:
        await desktop.connect()
    except (RuntimeError, socketio.exceptions.ConnectionError):
        pass
    else:
        tally.failures.append(f"round {number}: {kind} with a bad token was accepted")
    finally:
        await desktop.disconnect()


@dataclass
class Proxies:
    """Loopback TCP proxies to the connector: one whose connections are cut (the desktops recover), one whose
    connections stall (the desktops vanish); ``vanished`` holds the clients of those until the connector has
    let them go."""

    cut: TcpProxy
    stalled: TcpProxy
    vanished: list[Desktop] = field(default_factory=list)
    stalled_at: float = 0.0

    def stall(self) -> None:
        self.stalled.stall()
        self.stalled_at = time.monotonic()

    async def let_go(self) -> None:
        """Once the connector's heartbeat has found the stalled connections dead (a ping unanswered for
        ``PING_TIMEOUT``) and begun closing them, drop them and the clients on them (the connector's
        closing handshake would otherwise wait up to 4 times websockets' close timeout of 10 s for them), and let
        the next round's connections through."""
        await asyncio.sleep(max(0.0, self.stalled_at + VANISHED_DETECTION - time.monotonic()))
        self.stalled.cut()
        self.stalled.resume()
        vanished, self.vanished = self.vanished, []
        await asyncio.gather(*(desktop.abandon() for desktop in vanished))


# --- the connector's figures --------------------------------------------------------------------


@dataclass
class Report:
    rss: int
    traced: int | None
    objects: int
    tasks: int
    waits: dict[str, int]
    types: dict[str, int]
    holdings: dict[str, int]
    snapshot: Path | None


def heap_report(process: subprocess.Popen, directory: Path, number: int) -> Report:
    process.send_signal(signal.SIGUSR1)
    path = directory / f"report-{number}.json"
    deadline = time.monotonic() + 60
    while not path.exists():
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("the connector wrote no heap report")
        time.sleep(0.05)
    body = json.loads(path.read_text())
    snapshot = directory / f"snapshot-{number}.bin"
    return Report(body["rss"], body["traced"], body["objects"], body["tasks"], body["waits"], body["types"],
                  body["holdings"], snapshot if snapshot.exists() else None)


def held(report: Report) -> dict[str, int]:
    """The containers of the report that hold something (but those of a fixed size)."""
    return {name: size for name, size in report.holdings.items() if size and not name.endswith(FIXED)}


async def settled_report(process: subprocess.Popen, directory: Path, number: int) -> tuple[Report, int]:
    """The heap report once the connector holds nothing of the desktops (or after ``SETTLE`` seconds: what it
    still holds then is printed); the number of the last report taken."""
    deadline = time.monotonic() + SETTLE
    while True:
        await asyncio.sleep(0.5)
        report = await asyncio.to_thread(heap_report, process, directory, number)
        if not held(report) or time.monotonic() > deadline:
            return report, number
        number += 1


def line(number: int, report: Report, base: Report | None) -> str:
    traced = "" if report.traced is None else f"  traced {report.traced / MIB:6.1f} MiB"
    grown = "" if base is None else f" ({(report.rss - base.rss) / MIB:+5.1f})"
    holding = held(report)
    return (f"round {number:>3}  RSS {report.rss / MIB:6.1f} MiB{grown}{traced}  objects {report.objects:>7}  "
            f"tasks {report.tasks:>3}  non-empty {holding}" + (f"  tasks wait at {report.waits}" if holding else ""))


def summary(first: Report, last: Report, rounds: int) -> None:
    print(f"from the end of the warm-up to the end ({rounds} rounds): RSS {(last.rss - first.rss) / MIB:+.1f} MiB "
          f"({(last.rss - first.rss) / max(rounds, 1) / 1024:+.0f} KiB a round), objects "
          f"{last.objects - first.objects:+d}", flush=True)
    grown = Counter(last.types)
    grown.subtract(first.types)
    top = [(name, count) for name, count in grown.most_common(12) if count > 0]
    print("types that grew most: " + (", ".join(f"{name} {count:+d}" for name, count in top) or "none"))
    if first.snapshot is not None and last.snapshot is not None:
        before = tracemalloc.Snapshot.load(str(first.snapshot))
        after = tracemalloc.Snapshot.load(str(last.snapshot))
        print("tracemalloc, lines that grew most:")
        for stat in after.compare_to(before, "lineno")[:15]:
            print(f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d}  {stat.traceback}")


# --- servers ------------------------------------------------------------------------------------


@contextlib.contextmanager
def churn_connector(store: processes.RedisAddress, directory: Path, trace: bool):
    port = processes.free_port()
    environment = processes.server_environment(role="connector", redis=store, CHURN_REPORT_DIR=str(directory),
                                               **SERVER_ENV)
    if trace:
        environment["PYTHONTRACEMALLOC"] = "1"
    log_path = directory / "connector.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.churn_server", "--bind", "127.0.0.1", "--port", str(port),
             "aa_site.asgi:application"],
            cwd=processes.REPOSITORY, env=environment, stdout=log_file, stderr=subprocess.STDOUT)
    server = processes.Server(role="connector", port=port, process=process, log_path=log_path)
    try:
        processes.wait_for_port(port, process=process)
        yield server
    finally:
        processes.stop(process)


def server_errors(log: str) -> list[str]:
    return [text for text in log.splitlines() if '"ERROR"' in text or "Traceback" in text
            or '"levelname": "ERROR"' in text]


async def run(args: argparse.Namespace) -> int:
    tokens = mint_tokens([f"churn-{i}" for i in range(args.desktops * args.rounds)])
    # A vanished desktop's client finds its connection dead, and says so at ERROR: expected here.
    logging.getLogger("engineio.client").setLevel(logging.CRITICAL)
    logging.getLogger("socketio.client").setLevel(logging.CRITICAL)
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # the proxies' tasks, cancelled when the run ends
    tally = Tally()
    reports: list[Report] = []
    with tempfile.TemporaryDirectory(prefix="aa-churn-") as temporary, \
            processes.redis_server(private=True) as store, \
            processes.service_server(role="interceptor", redis=store, **SERVER_ENV) as interceptor, \
            churn_connector(store, Path(temporary), args.tracemalloc) as connector:
        directory = Path(temporary)
        proxies = Proxies(TcpProxy(connector.port), TcpProxy(connector.port))
        await proxies.cut.start()
        await proxies.stalled.start()
        pusher = Pusher(interceptor)
        number = 1
        try:
            report, number = await settled_report(connector.process, directory, number)
            print(f"{args.rounds} rounds of {args.desktops} desktops, {args.pushes} pushes per conversation a phase"
                  f"{', tracemalloc on' if args.tracemalloc else ''}", flush=True)
            print(line(0, report, None), flush=True)
            for round_number in range(1, args.rounds + 1):
                started = time.monotonic()
                round_tokens = tokens[(round_number - 1) * args.desktops:round_number * args.desktops]
                await run_round(round_number, args, connector, proxies, pusher, round_tokens, tally)
                await proxies.let_go()
                report, number = await settled_report(connector.process, directory, number + 1)
                reports.append(report)
                base = reports[args.warm_up - 1] if round_number > args.warm_up else None
                print(f"{line(round_number, report, base)}  {time.monotonic() - started:4.1f} s", flush=True)
        finally:
            await pusher.client.aclose()
            await proxies.let_go()
            await proxies.cut.close()
            await proxies.stalled.close()
        errors = server_errors(connector.log())
        print(f"events: expected {tally.expected}, received {tally.received}, lost {tally.lost}, "
              f"duplicated {tally.duplicated}; client failures {len(tally.failures)}", flush=True)
        for failure in tally.failures[:10]:
            print(f"  {failure}")
        for error in errors[:10]:
            print(f"  connector: {error[:300]}")
        if len(reports) > args.warm_up:  # while the snapshots are still there
            summary(reports[args.warm_up - 1], reports[-1], len(reports) - args.warm_up)
    return 1 if tally.lost or tally.duplicated or tally.failures or errors else 0


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--desktops", type=int, default=60, help="desktops per round")
    parser.add_argument("--pushes", type=int, default=2, help="pushes per conversation in each of the three phases")
    parser.add_argument("--warm-up", type=int, default=3, help="rounds before the figures count")
    parser.add_argument("--tracemalloc", action="store_true", help="run the connector with PYTHONTRACEMALLOC=1")
    args = parser.parse_args(argv)
    if not 1 <= args.warm_up < args.rounds:
        parser.error("--warm-up must be at least 1 and less than --rounds")
    args.run_id = uuid.uuid4().hex[:6]
    return args


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(run(parse_arguments(argv)))


if __name__ == "__main__":
    sys.exit(main())
