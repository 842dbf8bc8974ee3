"""Desktop worker processes for ``benchmarks.scenarios``: python-socketio clients that join and timestamp events.

Each worker process connects its share of the desktops (``AsyncClient``,
websocket transport, one shared aiohttp session per process), has each join
its conversation, reports ``ready``, and records every event it receives
with ``time.monotonic()`` (CLOCK_MONOTONIC is one clock for the whole
machine, so the sender's stamp in another process compares with it). On
``stop`` it disconnects and sends its receipts back. Several processes let
the load generator hold thousands of sockets without being the bottleneck.
"""

from __future__ import annotations

import asyncio
import gc
import json
import multiprocessing
import multiprocessing.connection
import resource
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import socketio
import uvloop

from benchmarks.servers import process_usage
from events.kinds import EventKind

#: The stamp the sender writes into each notification just before its POST (time.monotonic()).
STAMP_FIELD = "benchSentAt"


@dataclass(frozen=True)
class FleetSpec:
    """One worker's share: desktop ``first_index + i`` uses ``tokens[i]`` and joins ``conversations[i]``."""

    url: str
    first_index: int
    tokens: list[str]
    conversations: list[str]
    timeout: float
    connect_concurrency: int = 20
    client: str = "socketio"  # or "raw": see _raw_desktop


@dataclass(frozen=True)
class Receipt:
    """One event as a desktop received it."""

    desktop: int
    event: str
    message_id: str
    conversation_name: str
    received_at: float  # time.monotonic()
    sent_at: float | None  # the sender's stamp from the event's data, None when it had none


@dataclass
class WorkerReport:
    """What a worker sends back on ``stop``."""

    receipts: list[Receipt] = field(default_factory=list)
    joined: dict[int, str] = field(default_factory=dict)  # desktop -> the normalised conversation it joined
    unexpected_disconnects: int = 0
    failures: list[str] = field(default_factory=list)


def raise_file_limit() -> int:
    """Raise this process's open-file soft limit to its hard limit (thousands of sockets); return the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def worker_main(spec: FleetSpec, pipe: multiprocessing.connection.Connection, counter: Any) -> None:
    """The worker process's entry point (``multiprocessing`` spawn target)."""
    raise_file_limit()
    uvloop.run(_run_worker(spec, pipe, counter))


async def _run_worker(spec: FleetSpec, pipe: multiprocessing.connection.Connection, counter: Any) -> None:
    raw: list[tuple[int, str, dict, float]] = []
    report = WorkerReport()
    clients: dict[int, socketio.AsyncClient] = {}
    closing = False
    gate = asyncio.Semaphore(spec.connect_concurrency)
    # limit=0: every open WebSocket holds one of the connector's connections (its default pool is 100).
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    def handler(desktop: int, event: str):
        async def on_event(payload: dict, offset: str | None = None) -> None:  # offset: connection state recovery
            raw.append((desktop, event, payload, time.monotonic()))
            counter.value += 1

        return on_event

    async def connect(position: int) -> None:
        desktop = spec.first_index + position
        client = socketio.AsyncClient(reconnection=False, http_session=session)
        for event in EventKind:
            client.on(str(event), handler(desktop, str(event)))

        @client.event
        async def disconnect(*_args: Any) -> None:
            if not closing:
                report.unexpected_disconnects += 1

        async with gate:
            await asyncio.wait_for(
                client.connect(spec.url, auth={"token": spec.tokens[position]}, transports=["websocket"],
                               wait_timeout=spec.timeout),
                spec.timeout,
            )
            clients[desktop] = client
            ack = await client.call("join-conversation", spec.conversations[position], timeout=spec.timeout)
        if not (isinstance(ack, tuple) and ack[0] is True):
            raise RuntimeError(f"desktop {desktop}: join-conversation refused: {ack!r}")
        report.joined[desktop] = ack[1]

    async def connect_raw(position: int) -> None:
        desktop = spec.first_index + position
        async with gate:
            websocket, joined = await asyncio.wait_for(
                _raw_desktop(session, spec.url, spec.tokens[position], spec.conversations[position]), spec.timeout)
        report.joined[desktop] = joined
        raw_sockets[desktop] = websocket
        readers.append(asyncio.create_task(_raw_reader(websocket, desktop, frames, counter)))

    raw_sockets: dict[int, aiohttp.ClientWebSocketResponse] = {}
    readers: list[asyncio.Task] = []
    frames: list[tuple[int, str, float]] = []
    start = connect_raw if spec.client == "raw" else connect
    outcomes = await asyncio.gather(*(start(i) for i in range(len(spec.tokens))), return_exceptions=True)
    report.failures = [repr(outcome) for outcome in outcomes if isinstance(outcome, BaseException)][:5]
    # The load generator must not pause: a full collection over thousands of clients takes seconds, which
    # would show as the server's latency. Nothing is collected until "stop" (a few MiB of garbage at most).
    gc.collect()
    gc.freeze()
    gc.disable()
    pipe.send(("ready", len(report.joined), report.failures))
    await asyncio.to_thread(pipe.recv)  # "stop"
    gc.enable()
    closing = True
    await asyncio.gather(*(asyncio.wait_for(c.disconnect(), spec.timeout) for c in clients.values()),
                         *(asyncio.wait_for(w.close(), spec.timeout) for w in raw_sockets.values()),
                         return_exceptions=True)
    for reader in readers:
        if not reader.done():
            reader.cancel()
        elif reader.exception() is not None:
            report.unexpected_disconnects += 1
    await session.close()
    for desktop, frame, received_at in frames:
        event, payload = json.loads(frame[2:])[:2]
        raw.append((desktop, event, payload, received_at))
    for desktop, event, payload, received_at in raw:
        report.receipts.append(Receipt(desktop, event, str(payload.get("message_id")),
                                       str(payload.get("conversation_name")), received_at, _stamp(payload)))
    pipe.send(("report", report))


async def _raw_desktop(session: aiohttp.ClientSession, url: str, token: str,
                       conversation: str) -> tuple[aiohttp.ClientWebSocketResponse, str]:
    """A lean desktop: Engine.IO 4 and Socket.IO frames written and read by hand on an aiohttp WebSocket,
    events timed on arrival and parsed only after the run (the python-socketio client decodes every frame
    and runs a task per event first). Returns the socket and the conversation name the join answered."""
    websocket = await session.ws_connect(f"{url}/socket.io/?EIO=4&transport=websocket", autoping=True)
    opened = await websocket.receive_str()
    if not opened.startswith("0"):
        raise RuntimeError(f"not an Engine.IO OPEN: {opened[:80]!r}")
    await websocket.send_str("40" + json.dumps({"token": token}))
    connected = await websocket.receive_str()
    if not connected.startswith("40"):
        raise RuntimeError(f"CONNECT refused: {connected[:200]!r}")
    await websocket.send_str("421" + json.dumps(["join-conversation", conversation]))
    while True:
        frame = await websocket.receive_str()
        if frame == "2":
            await websocket.send_str("3")
        elif frame.startswith("431"):
            answer = json.loads(frame[3:])
            if answer[0] is not True:
                raise RuntimeError(f"join-conversation refused: {answer!r}")
            return websocket, answer[1]


async def _raw_reader(websocket: aiohttp.ClientWebSocketResponse, desktop: int,
                      frames: list[tuple[int, str, float]], counter: Any) -> None:
    """Answer pings and keep each event frame with its arrival time, until the socket closes."""
    async for message in websocket:
        received_at = time.monotonic()
        text = message.data
        if message.type != aiohttp.WSMsgType.TEXT:
            break
        if text.startswith("42"):
            frames.append((desktop, text, received_at))
            counter.value += 1
        elif text == "2":
            await websocket.send_str("3")


def _stamp(payload: dict) -> float | None:
    """The sender's stamp inside the event's ``data`` (a JSON string), parsed after the run, not in the handler."""
    try:
        value = json.loads(payload.get("data") or "{}").get(STAMP_FIELD)
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, float) else None


class Fleet:
    """The worker processes of one scenario, started together and stopped together."""

    def __init__(self, specs: list[FleetSpec]) -> None:
        context = multiprocessing.get_context("spawn")
        self.counters = [context.Value("q", 0, lock=False) for _ in specs]
        self.pipes = []
        self.processes = []
        for spec, counter in zip(specs, self.counters):
            parent, child = context.Pipe()
            process = context.Process(target=worker_main, args=(spec, child, counter), daemon=True)
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)

    def cpu(self) -> float:
        """CPU seconds the worker processes have used so far."""
        return sum(process_usage(process.pid)[1] for process in self.processes)

    def received(self) -> int:
        """Events received so far by every desktop of every worker."""
        return sum(counter.value for counter in self.counters)

    async def ready(self, timeout: float) -> tuple[int, list[str]]:
        """Wait until every worker connected its desktops; (desktops joined, first failures)."""
        joined, failures = 0, []
        for pipe in self.pipes:
            if not await asyncio.to_thread(pipe.poll, timeout):
                raise TimeoutError(f"a desktop worker was not ready within {timeout} s")
            _, count, errors = pipe.recv()
            joined += count
            failures += errors
        return joined, failures

    async def stop(self, timeout: float) -> WorkerReport:
        """Disconnect every desktop and merge the workers' reports."""
        merged = WorkerReport()
        for pipe in self.pipes:
            pipe.send("stop")
        for pipe, process in zip(self.pipes, self.processes):
            if await asyncio.to_thread(pipe.poll, timeout):
                _, report = pipe.recv()
                merged.receipts += report.receipts
                merged.joined.update(report.joined)
                merged.unexpected_disconnects += report.unexpected_disconnects
                merged.failures += report.failures
            else:
                merged.failures.append("a desktop worker sent no report")
            process.join(timeout)
            if process.is_alive():
                process.kill()
        return merged
