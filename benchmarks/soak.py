"""A soak: the fault benchmark's mix for many minutes, with every process's memory and Redis's sampled.

    .venv/bin/python -m benchmarks.soak [--minutes 30] [--rate 40] [--sample 10] [--warm-up 5]
    .venv/bin/python -m benchmarks.soak --quick          # about a minute (tests/test_soak.py runs it)

What runs, all on 127.0.0.1, for ``--minutes``: a private redis-server (empty, no persistence), one
interceptor and two connector processes (the image's server command and ENV, production settings), and

- **pushes** at a steady ``--rate`` through the interceptor, round-robin over the conversations, retried
  until acknowledged as Pub/Sub does (``benchmarks.faults.PubSub``);
- **steady desktops** that stay the whole run, python-socketio, half on the websocket transport and half
  on long-polling, on both connectors; each must get every push of its conversation exactly once;
- **recovering desktops**: the npm socket.io-client (one per transport) through a loopback TCP proxy
  whose connections are cut every ``RECOVER_EVERY`` seconds; socket.io-client reconnects by itself and
  recovers what it missed (connection state recovery): every push exactly once;
- **churn**: python-socketio desktops that connect, join, stay a few seconds and leave, on both
  transports, all run long; none may get an event twice;
- **a slow desktop** that joins the busiest conversation and stops reading (``testing.stalled_desktop``),
  closed as too slow and replaced, all run long;
- **an abuser of each bound**, each from its own client address (``X-Forwarded-For``, the connectors
  trusting one proxy hop as on Cloud Run): long-polling POSTs never polled, without a token and with one;
  Engine.IO handshakes as fast as it can; unauthenticated WebSockets held open; unauthenticated long-polls
  held waiting; a desktop that joins a large history with ``{"history": true}`` and never reads, and a
  long-poll that asks for it; large pushes (``BIG_PUSH_BYTES``) into one conversation, filling its
  history; ``/conversation-name`` writes and lookups; ``/register`` attempts; wrong admin passwords.

Every ``--sample`` seconds one line: minutes in, the resident set (VmRSS) of the interceptor and of each
connector, Redis's ``used_memory`` and key count, pushes acknowledged. After the run: pushes, deliveries,
losses and duplicates per kind of desktop, what each abuser was answered, and the growth of every sampled
figure from the end of ``--warm-up`` minutes (histories filled, pools warm) to its highest after it.

Exit status 1 when an event was lost or doubled, a server logged an ERROR or a traceback, or a figure grew
after the warm-up by more than ``FLAT_TOLERANCE`` (``FLAT_SLACK_BYTES`` at least): memory that keeps
growing under abuse is what this is for.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
import redis.asyncio as redis
import socketio

from testing import clients, processes
from testing.fault_scenarios import PubSub, Tally, resident_bytes
from testing.stalled_desktop import Ended, StalledDesktop
from testing.tcp_proxy import tcp_proxy
from testing.tokens import mint_tokens

PROJECT = processes.TEST_PROJECT
MIB = 2**20
# Growth after the warm-up that still counts as flat: allocator pools, Redis's fragmentation, sampling noise.
FLAT_TOLERANCE = 0.10
FLAT_SLACK_BYTES = 16 * MIB
BIG_PUSH_BYTES = 1_000_000
RECOVER_EVERY = 45.0
ABUSER_ADDRESS = "203.0.113.{}"  # TEST-NET-3: documentation addresses, only ever a header's text here
DESKTOP_ADDRESS = "192.0.2.{}"
# The servers' settings: production defaults except what makes a run of minutes reach its steady state
# (histories that fill within the warm-up) and what the abusers need (one trusted proxy hop, an admin).
SERVER_ENV = {
    **processes.IMAGE_ENV,
    "TRUSTED_PROXY_HOPS": "1",
    "EVENT_HISTORY_MAX_EVENTS": "200",
    "SOCKETIO_RECOVERY_SECONDS": "120",
    "ADMIN_SECURE_COOKIES": "false",
}
ADMIN_USER, ADMIN_PASSWORD = "soak-admin", "soak-admin-password-5d41402abc4b2a76"


def address(template: str, number: int) -> dict[str, str]:
    return {"X-Forwarded-For": template.format(number)}


@dataclass
class Sample:
    seconds: float
    rss: dict[str, int]  # process name -> VmRSS bytes
    redis_memory: int
    redis_keys: int
    acknowledged: int

    def line(self) -> str:
        processes_ = "  ".join(f"{name} {value / MIB:7.1f}" for name, value in self.rss.items())
        return (f"{self.seconds / 60:6.1f} min  RSS MiB: {processes_}  redis used_memory {self.redis_memory / MIB:7.1f} "
                f"MiB  keys {self.redis_keys:>6}  pushes acknowledged {self.acknowledged:>7}")


@dataclass
class Run:
    """Everything the actors share: the servers, the deadline, and what each actor counted."""

    interceptor: processes.Server
    connectors: list[processes.Server]
    store: processes.RedisAddress
    conversations: list[str]
    ends_at: float
    pubsub: PubSub
    tally: Tally
    # conversation -> message ids acknowledged, in order
    acknowledged: dict[str, list[str]] = field(default_factory=dict)
    answers: dict[str, Counter] = field(default_factory=dict)  # abuser -> status (or outcome) -> count
    problems: list[str] = field(default_factory=list)

    def running(self) -> bool:
        return asyncio.get_running_loop().time() < self.ends_at

    def answered(self, abuser: str, outcome: object) -> None:
        self.answers.setdefault(abuser, Counter())[str(outcome)] += 1

    def connector(self, number: int) -> processes.Server:
        return self.connectors[number % len(self.connectors)]


def token(user: str = "agent") -> str:
    (minted,) = mint_tokens([user])
    return minted


# --- pushes -------------------------------------------------------------------------------------


async def push_steadily(run: Run, rate: float) -> None:
    """``rate`` pushes a second, round-robin over the conversations but the big one; each retried until
    acknowledged (several in flight when the interceptor is slow, as Pub/Sub pushes concurrently)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    in_flight: set[asyncio.Task] = set()
    names = run.conversations[1:]

    async def one(conversation: str, message_id: str) -> None:
        await run.pubsub.deliver(conversation, message_id)
        run.acknowledged.setdefault(conversation, []).append(message_id)

    for number in itertools.count():
        at = started + number / rate
        if at >= run.ends_at:
            break
        await asyncio.sleep(max(0.0, at - loop.time()))
        task = asyncio.ensure_future(one(names[number % len(names)], f"soak-{number}"))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    await asyncio.gather(*in_flight)


async def push_big(run: Run) -> None:
    """One push of ``BIG_PUSH_BYTES`` a second into the first conversation: its history is held by bytes."""
    for number in itertools.count():
        if not run.running():
            break
        await run.pubsub.deliver(run.conversations[0], f"big-{number}", padding=BIG_PUSH_BYTES)
        await asyncio.sleep(1.0)


# --- desktops that must get everything ------------------------------------------------------------


class CountingDesktop:
    """A python-socketio desktop counting the message ids of its conversation's events."""

    def __init__(self, transport: str, number: int) -> None:
        self.transport = transport
        self.number = number
        self.client = socketio.AsyncClient(reconnection=False)
        self.received: Counter[str] = Counter()
        self.dropped: str | None = None

        @self.client.on("disconnect")
        async def on_disconnect(reason: object = None) -> None:
            self.dropped = self.dropped or str(reason)

        for kind in clients.CONVERSATION_EVENTS:
            self.client.on(kind, self._on_event)

    async def _on_event(self, payload: dict, offset: str | None = None) -> None:
        self.received[payload["message_id"]] += 1

    async def connect(self, server: processes.Server, conversation: str) -> None:
        await self.client.connect(server.http_url, transports=[self.transport], auth={"token": token()},
                                  headers=address(DESKTOP_ADDRESS, self.number), wait_timeout=30)
        ok, _ = await self.client.call("join-conversation", conversation, timeout=30)
        if not ok:
            raise RuntimeError(f"a {self.transport} desktop could not join")

    async def leave(self) -> None:
        self.dropped = self.dropped or "left"
        with contextlib.suppress(Exception):
            await self.client.disconnect()


async def steady_desktops(run: Run, count: int) -> list[tuple[CountingDesktop, str]]:
    desktops = []
    for number in range(count):
        desktop = CountingDesktop("polling" if number % 2 else "websocket", number)
        conversation = run.conversations[1 + number % (len(run.conversations) - 1)]
        await desktop.connect(run.connector(number // 2), conversation)
        desktops.append((desktop, conversation))
    return desktops


@contextlib.asynccontextmanager
async def recovering_desktops(run: Run):
    """Two npm desktops (websocket, polling) through proxies cut every ``RECOVER_EVERY`` seconds."""
    conversation = run.conversations[1]
    async with contextlib.AsyncExitStack() as stack:
        desktops = []
        for number, transports in enumerate(("websocket", "polling")):
            proxy = await stack.enter_async_context(tcp_proxy(run.connector(number).port))
            node = await stack.enter_async_context(clients.node_desktop(
                proxy, token=token(), join=(conversation,), reconnect=True,
                timeout=(run.ends_at - asyncio.get_running_loop().time()) + 300, transports=transports))
            await node.wait_for(lambda n: len(n.of_kind("ack")) == 1, what="the join")
            desktops.append((transports, proxy, node))
        yield conversation, desktops


async def cut_now_and_then(run: Run, desktops: list) -> None:
    while run.running():
        await asyncio.sleep(min(RECOVER_EVERY, max(0.0, run.ends_at - asyncio.get_running_loop().time())))
        if run.running():
            for _, proxy, _ in desktops:
                proxy.cut()


async def churn(run: Run) -> None:
    """Desktops that come and go, on both transports and connectors: none may get an event twice."""
    rng = random.Random(11)
    number = 1000

    async def visit(number: int) -> None:
        desktop = CountingDesktop(rng.choice(("websocket", "polling")), number % 250)
        try:
            await desktop.connect(run.connector(number), rng.choice(run.conversations[1:]))
            run.answered("churn", "joined")
            await asyncio.sleep(rng.uniform(2.0, 15.0))
        except Exception as error:  # a refused desktop is a finding; the soak goes on
            run.answered("churn", f"failed: {type(error).__name__}")
        finally:
            await desktop.leave()
        if doubled := sum(1 for times in desktop.received.values() if times > 1):
            run.problems.append(f"a churning {desktop.transport} desktop got {doubled} events twice")

    visits: set[asyncio.Task] = set()
    while run.running():
        number += 1
        task = asyncio.ensure_future(visit(number))
        visits.add(task)
        task.add_done_callback(visits.discard)
        await asyncio.sleep(0.5)
    await asyncio.gather(*visits)


async def slow_desktop(run: Run) -> None:
    """A desktop that joins the busiest conversation and never reads; replaced once it is closed."""
    while run.running():
        stalled = StalledDesktop(run.connector(0).port)
        try:
            await stalled.connect(token())
            await stalled.call("join-conversation", run.conversations[1])
            with contextlib.suppress(TimeoutError, Ended):
                # Not reading: the server closes it once its send queue is over the bound (or the run ends).
                await asyncio.sleep(min(60.0, max(0.0, run.ends_at - asyncio.get_running_loop().time())))
                await stalled.read_until(lambda d: d.ended is not None, timeout=5)
            run.answered("slow desktop", stalled.ended[0] if stalled.ended else "still open")
        except Exception as error:
            run.answered("slow desktop", f"failed: {type(error).__name__}")
        finally:
            stalled.close()


# --- abusers -------------------------------------------------------------------------------------


def polling_url(server: processes.Server, sid: str | None = None) -> str:
    return f"{server.http_url}/socket.io/?EIO=4&transport=polling" + (f"&sid={sid}" if sid else "")


async def handshake(http: aiohttp.ClientSession, server: processes.Server, headers: dict) -> str | None:
    async with http.get(polling_url(server), headers=headers) as response:
        body = await response.text()
        if response.status != 200:
            return None
    return json.loads(body[1:])["sid"]


async def abuse_polling_queue(run: Run, http: aiohttp.ClientSession, *, with_token: bool) -> None:
    """Sessions that POST answers into their queue and never GET them: CONNECTs to a long namespace without a
    token; with one, pings and events of unknown names."""
    name = "polling queue, token" if with_token else "polling queue, no token"
    headers = address(ABUSER_ADDRESS, 2 if with_token else 1)
    namespace = "/" + "n" * 100_000
    while run.running():
        try:
            sid = await handshake(http, run.connector(0), headers)
            if sid is None:
                run.answered(name, "handshake refused")
                await asyncio.sleep(0.5)
                continue
            if with_token:
                async with http.post(polling_url(run.connector(0), sid), headers=headers,
                                     data=f'40{json.dumps({"token": token("abuser")})}') as response:
                    run.answered(name, response.status)
            body = (f"40{namespace}," if not with_token
                    else "\x1e".join(["2", f'421["{"e" * 50_000}"]'] * 8))
            for _ in range(200):
                if not run.running():
                    break
                async with http.post(polling_url(run.connector(0), sid), headers=headers, data=body) as response:
                    run.answered(name, response.status)
                    if response.status != 200:
                        break
                await asyncio.sleep(0.02)
        except aiohttp.ClientError as error:
            run.answered(name, type(error).__name__)
            await asyncio.sleep(0.5)


async def abuse_handshakes(run: Run, http: aiohttp.ClientSession) -> None:
    """Engine.IO handshakes from one address as fast as one connection gets them answered."""
    headers = address(ABUSER_ADDRESS, 3)
    while run.running():
        try:
            async with http.get(polling_url(run.connector(1)), headers=headers) as response:
                await response.read()
                run.answered("handshakes", response.status)
        except aiohttp.ClientError as error:
            run.answered("handshakes", type(error).__name__)
            await asyncio.sleep(0.1)


async def abuse_unauthenticated_websockets(run: Run, http: aiohttp.ClientSession, *, hold: int = 300) -> None:
    """Up to ``hold`` WebSockets open at once from one address, never connecting to the namespace."""
    headers = address(ABUSER_ADDRESS, 4)
    url = run.connector(1).http_url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    slots = asyncio.Semaphore(hold)

    async def one() -> None:
        async with slots:
            try:
                async with http.ws_connect(url, headers=headers) as socket_:
                    run.answered("unauthenticated websockets", "opened")
                    async for _ in socket_:  # the OPEN packet, then nothing until the auth timeout closes it
                        pass
                    run.answered("unauthenticated websockets", f"closed {socket_.close_code}")
            except aiohttp.WSServerHandshakeError as error:
                run.answered("unauthenticated websockets", f"refused {error.status}")
                await asyncio.sleep(0.2)
            except aiohttp.ClientError as error:
                run.answered("unauthenticated websockets", type(error).__name__)
                await asyncio.sleep(0.2)

    tasks: set[asyncio.Task] = set()
    while run.running():
        await slots.acquire()
        slots.release()
        task = asyncio.ensure_future(one())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        await asyncio.sleep(0.005)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def abuse_waiting_polls(run: Run, http: aiohttp.ClientSession, *, hold: int = 300) -> None:
    """Up to ``hold`` unauthenticated sessions each with a GET waiting, from one address."""
    headers = address(ABUSER_ADDRESS, 5)

    async def one() -> None:
        while run.running():
            try:
                sid = await handshake(http, run.connector(0), headers)
                if sid is None:
                    run.answered("waiting polls", "handshake refused")
                    await asyncio.sleep(1.0)
                    continue
                for _ in range(3):
                    async with http.get(polling_url(run.connector(0), sid), headers=headers) as response:
                        await response.read()
                        run.answered("waiting polls", response.status)
                        if response.status != 200:
                            await asyncio.sleep(1.0)
                            break
            except aiohttp.ClientError as error:
                run.answered("waiting polls", type(error).__name__)
                await asyncio.sleep(1.0)

    await asyncio.gather(*(one() for _ in range(hold)))


async def abuse_replays(run: Run, http: aiohttp.ClientSession) -> None:
    """A desktop that asks for the big conversation's whole history and never reads it, and a long-poll
    that asks for it too, over and over."""
    big = run.conversations[0]
    while run.running():
        stalled = StalledDesktop(run.connector(1).port)
        try:
            await stalled.connect(token("replayer"))
            await stalled.request("join-conversation", big, {"history": True})
            await asyncio.sleep(10.0)
            run.answered("replays", "websocket join, not read")
        except Exception as error:
            run.answered("replays", f"websocket failed: {type(error).__name__}")
        finally:
            stalled.close()
        headers = address(ABUSER_ADDRESS, 6)
        try:
            sid = await handshake(http, run.connector(0), headers)
            if sid is not None:
                url = polling_url(run.connector(0), sid)
                join = json.dumps(["join-conversation", big, {"history": True}])
                async with http.post(url, headers=headers,
                                     data=f'40{json.dumps({"token": token("replayer")})}\x1e421{join}') as response:
                    await response.read()
                for _ in range(3):
                    async with http.get(url, headers=headers) as response:
                        body = await response.read()
                        run.answered("replays", f"poll answered {len(body) // MIB} MiB")
        except aiohttp.ClientError as error:
            run.answered("replays", f"poll failed: {type(error).__name__}")


async def abuse_http_api(run: Run) -> None:
    """``/conversation-name`` writes and lookups with a token, ``/register`` attempts, wrong admin passwords."""
    tokens = [token(f"walker-{number}") for number in range(5)]
    headers = address(ABUSER_ADDRESS, 7)
    async with httpx.AsyncClient(base_url=run.connector(0).http_url, timeout=10) as http:
        for number in itertools.count():
            if not run.running():
                break
            auth = {"Authorization": tokens[number % len(tokens)], **headers}
            key = f"+1555{number:07d}"
            calls = [
                ("conversation-name write", http.post("/conversation-name", headers=auth, json={
                    "conversationIntegrationKey": key, "conversationName": f"projects/{PROJECT}/conversations/c{number}"})),
                ("conversation-name lookup", http.get("/conversation-name", headers=auth,
                                                      params={"conversationIntegrationKey": key})),
                ("register", http.post("/register", headers={"Authorization": "not-a-token", **headers})),
            ]
            if number % 5 == 0:
                calls.append(("admin login", admin_login(http, headers)))
            for name, call in calls:
                try:
                    response = await call
                    run.answered(name, response.status_code)
                except httpx.HTTPError as error:
                    run.answered(name, type(error).__name__)
            await asyncio.sleep(0.01)


async def admin_login(http: httpx.AsyncClient, headers: dict) -> httpx.Response:
    page = await http.get("/admin/login/", headers=headers)
    csrf = page.cookies.get("csrftoken", "")
    return await http.post("/admin/login/", headers={**headers, "Referer": f"{http.base_url}/admin/login/"},
                           cookies={"csrftoken": csrf},
                           data={"username": ADMIN_USER, "password": "wrong", "csrfmiddlewaretoken": csrf})


# --- sampling ------------------------------------------------------------------------------------


async def sample_every(run: Run, seconds: float, started: float, samples: list[Sample]) -> None:
    inspector = redis.Redis(host=run.store.host, port=run.store.port)
    named = {"interceptor": run.interceptor, **{f"connector {n}": c for n, c in enumerate(run.connectors)}}
    try:
        while True:
            info = await inspector.info("memory")
            sample = Sample(
                seconds=time.monotonic() - started,
                rss={name: resident_bytes(server.process.pid) for name, server in named.items()},
                redis_memory=int(info["used_memory"]),
                redis_keys=await inspector.dbsize(),
                acknowledged=run.tally.acknowledged,
            )
            samples.append(sample)
            print(sample.line(), flush=True)
            if not run.running():
                break
            await asyncio.sleep(min(seconds, max(0.0, run.ends_at - asyncio.get_running_loop().time())))
    finally:
        await inspector.aclose()


def growth(samples: list[Sample], warm_up: float) -> dict[str, tuple[int, int]]:
    """Per figure: (its value at the end of the warm-up, its highest after)."""
    after = [sample for sample in samples if sample.seconds >= warm_up]
    if len(after) < 2:
        return {}
    first, rest = after[0], after[1:]
    figures = {name: (first.rss[name], max(s.rss[name] for s in rest)) for name in first.rss}
    figures["redis used_memory"] = (first.redis_memory, max(s.redis_memory for s in rest))
    return figures


def flat(start: int, peak: int) -> bool:
    return peak - start <= max(FLAT_SLACK_BYTES, FLAT_TOLERANCE * start)


# --- the run -------------------------------------------------------------------------------------


def prepare_admin(sqlite_path: Path, store: processes.RedisAddress) -> None:
    """Migrate the admin's database and create its operator, as the deployment's jobs do."""
    environment = processes.server_environment(role="connector", redis=store, SQLITE_PATH=str(sqlite_path),
                                               DJANGO_SUPERUSER_PASSWORD=ADMIN_PASSWORD)
    for command in (["migrate", "--no-input"], ["ensure_superuser", "--username", ADMIN_USER]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=processes.REPOSITORY, env=environment,
                       check=True, capture_output=True, timeout=120)


async def soak(*, minutes: float, rate: float, sample: float, warm_up: float, steady: int,
               conversations: int) -> tuple[Tally, list[Sample], Run, float]:
    tally = Tally("soak")
    run_id = uuid.uuid4().hex[:6]
    names = [f"projects/{PROJECT}/conversations/soak-{run_id}-{number}" for number in range(conversations)]
    with tempfile.TemporaryDirectory(prefix="aa-soak-") as directory, \
            processes.redis_server(private=True) as store:
        sqlite_path = Path(directory) / "admin.sqlite3"
        prepare_admin(sqlite_path, store)
        env = {**SERVER_ENV, "SQLITE_PATH": str(sqlite_path)}
        with processes.service_server(role="interceptor", redis=store, **env) as interceptor, \
                processes.service_server(role="connector", redis=store, **env) as first, \
                processes.service_server(role="connector", redis=store, **env) as second:
            loop = asyncio.get_running_loop()
            pubsub = PubSub(interceptor, tally)
            run = Run(interceptor, [first, second], store, names, loop.time() + minutes * 60, pubsub, tally)
            samples: list[Sample] = []
            started = time.monotonic()
            connector_limit = aiohttp.TCPConnector(limit=0)
            http = aiohttp.ClientSession(connector=connector_limit, timeout=aiohttp.ClientTimeout(total=60))
            desktops = await steady_desktops(run, steady)
            try:
                async with recovering_desktops(run) as (recovering_conversation, recovering):
                    actors = [
                        sample_every(run, sample, started, samples),
                        push_steadily(run, rate),
                        push_big(run),
                        cut_now_and_then(run, recovering),
                        churn(run),
                        slow_desktop(run),
                        abuse_polling_queue(run, http, with_token=False),
                        abuse_polling_queue(run, http, with_token=True),
                        abuse_handshakes(run, http),
                        abuse_unauthenticated_websockets(run, http),
                        abuse_waiting_polls(run, http),
                        abuse_replays(run, http),
                        abuse_http_api(run),
                    ]
                    results = await asyncio.gather(*actors, return_exceptions=True)
                    for result in results:
                        if isinstance(result, BaseException):
                            run.problems.append(f"an actor failed: {type(result).__name__}: {result}")
                    await settle(run, desktops, recovering, recovering_conversation)
                    count_deliveries(run, desktops, recovering, recovering_conversation)
            finally:
                await pubsub.close()
                await http.close()
                for desktop, _ in desktops:
                    await desktop.leave()
            for server in (interceptor, first, second):
                log = server.log()
                errors = [line for line in log.splitlines() if '"severity": "ERROR"' in line or "Traceback" in line]
                if errors:
                    run.problems.append(f"{server.role} on {server.port} logged {len(errors)} ERROR lines, "
                                        f"the first: {errors[0][:300]}")
                run.answers.setdefault("server log lines", Counter())[f"{server.role}:{server.port}"] = \
                    len(log.splitlines())
    return tally, samples, run, warm_up * 60


async def settle(run: Run, desktops: list, recovering: list, recovering_conversation: str) -> None:
    loop = asyncio.get_running_loop()
    give_up = loop.time() + 60

    def done() -> bool:
        return (all(len(d.received) >= len(run.acknowledged.get(c, [])) for d, c in desktops)
                and all(len({p["message_id"] for _, p in node.events})
                        >= len(run.acknowledged.get(recovering_conversation, [])) for _, _, node in recovering))

    while not done() and loop.time() < give_up:
        await asyncio.sleep(0.2)
    await asyncio.sleep(2.0)  # for duplicates to show


def count_deliveries(run: Run, desktops: list, recovering: list, recovering_conversation: str) -> None:
    tally = run.tally
    for desktop, conversation in desktops:
        wanted = run.acknowledged.get(conversation, [])
        got = desktop.received
        delivered = sum(1 for message_id in wanted if got[message_id])
        duplicated = sum(times - 1 for times in got.values() if times > 1)
        tally.expected += len(wanted)
        tally.delivered += delivered
        tally.duplicated += duplicated
        if delivered < len(wanted) or duplicated or desktop.dropped:
            run.problems.append(f"steady {desktop.transport} desktop {desktop.number}: lost {len(wanted) - delivered}"
                                f", duplicated {duplicated}, dropped: {desktop.dropped}")
    for transports, _, node in recovering:
        wanted = run.acknowledged.get(recovering_conversation, [])
        got = Counter(payload["message_id"] for _, payload in node.events)
        delivered = sum(1 for message_id in wanted if got[message_id])
        duplicated = sum(times - 1 for times in got.values() if times > 1)
        tally.expected += len(wanted)
        tally.delivered += delivered
        tally.duplicated += duplicated
        connections = [line["recovered"] for line in node.of_kind("connected")]
        run.answered(f"recovering desktop ({transports})",
                     f"{len(connections) - 1} reconnections, {connections[1:].count(True)} recovered")
        if delivered < len(wanted) or duplicated or not all(connections[1:]):
            run.problems.append(f"recovering {transports} desktop: lost {len(wanted) - delivered}, duplicated "
                                f"{duplicated}, reconnections recovered: {connections[1:]}")


def report(tally: Tally, samples: list[Sample], run: Run, warm_up: float) -> bool:
    print(tally.line())
    for abuser, answers in run.answers.items():
        print(f"  {abuser}: " + ", ".join(f"{outcome} x{times}" for outcome, times in answers.most_common(8)))
    figures = growth(samples, warm_up)
    all_flat = bool(figures)
    print(f"  growth from {warm_up / 60:.1f} min (end of warm-up) to the highest after it:")
    for name, (start, peak) in figures.items():
        ok = flat(start, peak)
        all_flat &= ok
        print(f"    {name:<20} {start / MIB:8.1f} -> {peak / MIB:8.1f} MiB  "
              f"({(peak - start) / MIB:+.1f} MiB){'' if ok else '  NOT FLAT'}")
    if not figures:
        run.problems.append("the run was too short to sample after the warm-up")
    for problem in run.problems:
        print(f"  problem: {problem}")
    return tally.lost == 0 and tally.duplicated == 0 and not run.problems and all_flat


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=40.0, help="steady pushes a second")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--warm-up", type=float, default=5.0, help="minutes before memory must stay flat")
    parser.add_argument("--steady", type=int, default=20, help="desktops that stay the whole run")
    parser.add_argument("--conversations", type=int, default=21, help="the first takes the big pushes")
    parser.add_argument("--quick", action="store_true", help="about a minute, small (what the test suite runs)")
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes, args.rate, args.sample, args.warm_up, args.steady, args.conversations = 1.0, 10, 5, 0.5, 4, 5
    if args.minutes * 60 + 300 > 60 * 55:
        parser.error("at most 50 minutes: the desktops' tokens live an hour")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    tally, samples, run, warm_up = asyncio.run(soak(
        minutes=args.minutes, rate=args.rate, sample=args.sample, warm_up=args.warm_up, steady=args.steady,
        conversations=args.conversations))
    return 0 if report(tally, samples, run, warm_up) else 1


if __name__ == "__main__":
    sys.exit(main())
