"""The fault scenarios against real processes, at any size; each returns what it pushed, what Pub/Sub saw
acknowledged, and what the desktops received (delivered, duplicated, lost) and anything else that went wrong.

``benchmarks/faults.py`` runs them at full size and prints the figures (its docstring says what each scenario
does); ``tests/test_faults.py`` and the tests of stalled sends, paged replay and epoch recovery run them small.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import redis.asyncio as redis
import socketio

from connector.desktops import close_codes, offsets
from testing import clients, processes
from testing.cluster_layout import Layout
from testing.percentiles import percentile
from testing.push_bodies import push_body
from testing.stalled_desktop import Ended, StalledDesktop
from testing.tcp_proxy import tcp_proxy
from testing.tokens import mint_tokens

PROJECT = processes.TEST_PROJECT
EVENT = "new-message-event"
WAIT = 30.0


@dataclass
class Tally:
    """What one scenario did."""

    scenario: str
    pushed: int = 0  # distinct messages
    acknowledged: int = 0  # distinct messages Pub/Sub saw acknowledged (2xx)
    attempts: int = 0  # POSTs, retries and redeliveries included
    expected: int = 0  # (desktop, message) pairs that should arrive
    delivered: int = 0  # distinct (desktop, message) pairs that arrived
    duplicated: int = 0  # arrivals beyond the first of a pair
    problems: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.expected - self.delivered

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and not self.problems and self.acknowledged == self.pushed

    def line(self) -> str:
        extra = f"  problems: {'; '.join(self.problems)}" if self.problems else ""
        return (f"{self.scenario:<18} pushed {self.pushed:>6}  acknowledged {self.acknowledged:>6}  "
                f"POSTs {self.attempts:>6}  delivered {self.delivered:>6}/{self.expected:<6}  "
                f"duplicated {self.duplicated:>4}  lost {self.lost:>4}{extra}")


class PubSub:
    """Pushes as Pub/Sub does: retried with backoff until acknowledged, optionally redelivered."""

    def __init__(self, interceptor: processes.Server, tally: Tally) -> None:
        self.url = f"{interceptor.http_url}/{EVENT}"
        self.tally = tally
        self.client = httpx.AsyncClient(timeout=10)
        self.acknowledged_to: Counter[str] = Counter()  # conversation -> distinct pushes acknowledged

    async def close(self) -> None:
        await self.client.aclose()

    async def post(self, conversation: str, message_id: str, *, padding: int = 0) -> bool:
        self.tally.attempts += 1
        # sentAt: this attempt's time on the machine's one monotonic clock, for the desktops' latencies.
        notification = {"conversation": conversation, "text": message_id, "sentAt": time.monotonic()}
        if padding:
            notification["padding"] = "x" * padding
        body = push_body(notification, messageId=message_id)
        try:
            response = await self.client.post(self.url, content=body, headers={"Content-Type": "application/json"})
        except httpx.HTTPError:
            return False
        return response.status_code in (200, 201, 202, 204)

    async def deliver(self, conversation: str, message_id: str, *, deadline: float = WAIT, padding: int = 0) -> None:
        """Push until acknowledged (Pub/Sub's retry with backoff), at most ``deadline`` seconds."""
        self.tally.pushed += 1
        loop = asyncio.get_running_loop()
        give_up, delay = loop.time() + deadline, 0.1
        while loop.time() < give_up:
            if await self.post(conversation, message_id, padding=padding):
                self.tally.acknowledged += 1
                self.acknowledged_to[conversation] += 1
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


class Desktop:
    """A python-socketio desktop that counts the message ids it receives, and how long each took."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.received: Counter[str] = Counter()
        self.latencies: list[float] = []  # seconds from each push's POST to its arrival here
        self.ended: str | None = None  # why its connection ended, when the test did not end it

        @self.client.on("disconnect")
        async def on_disconnect(reason: str | None = None) -> None:
            self.ended = self.ended or str(reason)

        @self.client.on(EVENT)
        async def on_event(payload: dict, offset: str | None = None) -> None:
            arrived = time.monotonic()
            self.received[payload["message_id"]] += 1
            self.latencies.append(arrived - json.loads(payload["data"])["sentAt"])

    async def connect(self, server, token: str, conversation: str) -> None:
        await self.client.connect(server.http_url, transports=["websocket"], auth={"token": token},
                                  wait_timeout=WAIT)
        ok, _ = await self.client.call("join-conversation", conversation, timeout=WAIT)
        assert ok, "join refused"


def count(tally: Tally, received: list[Counter[str]], expected: list[list[str]], *,
          names: list[str] | None = None) -> None:
    """Add what each desktop received against what it should have; name each that lost or repeated some."""
    for number, (got, wanted) in enumerate(zip(received, expected)):
        delivered = sum(1 for message_id in wanted if got[message_id] > 0)
        duplicated = sum(max(0, times - 1) for times in got.values())
        tally.expected += len(wanted)
        tally.delivered += delivered
        tally.duplicated += duplicated
        if delivered < len(wanted) or duplicated:
            name = names[number] if names else f"desktop {number}"
            first_lost = next((message_id for message_id in wanted if got[message_id] == 0), None)
            tally.problems.append(f"{name}: lost {len(wanted) - delivered} of {len(wanted)} (the first {first_lost}), "
                                  f"duplicated {duplicated}")


async def settle(predicate, *, timeout: float = WAIT) -> None:
    """Wait until ``predicate()`` holds, then one more second for duplicates to show."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout
    while not predicate() and loop.time() < give_up:
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)


def token() -> str:
    """A desktop JWT the servers of ``testing.processes`` accept."""
    (minted,) = mint_tokens(["agent"])
    return minted


def conversations(count: int) -> list[str]:
    run = uuid.uuid4().hex[:6]
    return [f"projects/{PROJECT}/conversations/fault-{run}-{number}" for number in range(count)]


async def redis_outage(*, pushes: int, outage: float = 3.0) -> Tally:
    tally = Tally("redis-outage")
    names = conversations(2)
    with processes.restartable_redis() as store, \
            processes.service_server(role="connector", redis=store.address) as connector, \
            processes.service_server(role="interceptor", redis=store.address) as interceptor:
        desktops = [Desktop() for _ in range(4)]
        for number, desktop in enumerate(desktops):
            await desktop.connect(connector, token(), names[number % 2])
        pubsub = PubSub(interceptor, tally)
        sent: list[list[str]] = [[], []]
        retrying: list[asyncio.Future] = []
        try:
            for number in range(pushes):
                if number == pushes // 3:
                    store.stop()
                    outage_over = asyncio.get_running_loop().time() + outage
                if number > pushes // 3 and store.process is None and asyncio.get_running_loop().time() > outage_over:
                    store.start()
                message_id = f"outage-{number}"
                conversation = number % 2
                if store.process is None:
                    # During the outage Pub/Sub keeps retrying; fire the retries off and go on.
                    retrying.append(asyncio.ensure_future(
                        pubsub.deliver(names[conversation], message_id, deadline=outage * 4)
                    ))
                else:
                    await pubsub.deliver(names[conversation], message_id)
                sent[conversation].append(message_id)
                await asyncio.sleep(outage * 2 / pushes)
            if store.process is None:
                store.start()
            await asyncio.gather(*retrying)
            expected = [sent[number % 2] for number in range(len(desktops))]
            await settle(lambda: all(len(d.received) >= len(e) for d, e in zip(desktops, expected)),
                         timeout=outage * 5)
            count(tally, [d.received for d in desktops], expected)
        finally:
            await pubsub.close()
            for desktop in desktops:
                await desktop.client.disconnect()
    return tally


async def connector_killed(*, pushes: int, cluster: bool = False) -> Tally:
    """With ``cluster``, on a private Redis Cluster, the desktop in a conversation on each of its shards."""
    tally = Tally("cluster-connector-killed" if cluster else "connector-killed")
    store_context = processes.redis_cluster(private=True) if cluster else processes.redis_server(private=True)
    with store_context as store, \
            processes.service_server(role="interceptor", redis=store) as interceptor, \
            processes.service_server(role="connector", redis=store) as first, \
            processes.service_server(role="connector", redis=store) as second:
        names = ([shard[0] for shard in Layout(store).on_each_shard(1, "killed").values()] if cluster
                 else conversations(1))
        pubsub = PubSub(interceptor, tally)
        sent = []
        try:
            async with tcp_proxy(first.port) as proxy, clients.node_desktop(
                proxy, token=token(), join=tuple(names), reconnect=True, timeout=120
            ) as node:
                await node.wait_for(lambda n: len(n.of_kind("ack")) == len(names), what="the joins")
                for number in range(pushes):
                    if number == pushes // 2:
                        proxy.backend_port = second.port
                        first.process.send_signal(signal.SIGKILL)
                        first.process.wait()
                        proxy.cut()
                    message_id = f"killed-{number}"
                    await pubsub.deliver(names[number % len(names)], message_id)
                    sent.append(message_id)
                    await asyncio.sleep(0.01)
                await settle(lambda: len(node.events) >= len(sent))
                received = Counter(payload["message_id"] for _, payload in node.events)
                count(tally, [received], [sent])
                if [line["recovered"] for line in node.of_kind("connected")] != [False, True]:
                    tally.problems.append("the desktop was not recovered")
        finally:
            await pubsub.close()
    return tally


async def churn(*, desktops: int) -> Tally:
    tally = Tally("churn")
    names = conversations(max(1, desktops // 10))
    with processes.redis_server(private=True) as store, \
            processes.service_server(role="connector", redis=store, SOCKETIO_RECOVERY_SECONDS="2") as connector, \
            processes.service_server(role="interceptor", redis=store) as interceptor:
        pubsub = PubSub(interceptor, tally)
        inspector = redis.Redis(host=store.host, port=store.port, decode_responses=True)
        try:
            for wave in range(0, desktops, 50):
                batch = [Desktop() for _ in range(min(50, desktops - wave))]
                joined = [names[(wave + number) % len(names)] for number in range(len(batch))]
                await asyncio.gather(*(d.connect(connector, token(), c) for d, c in zip(batch, joined)))
                message_ids = {name: f"churn-{wave}-{index}" for index, name in enumerate(set(joined))}
                for name, message_id in message_ids.items():
                    await pubsub.deliver(name, message_id)
                expected = [[message_ids[name]] for name in joined]
                await settle(lambda: all(len(d.received) >= 1 for d in batch), timeout=WAIT)
                count(tally, [d.received for d in batch], expected)
                await asyncio.gather(*(d.client.disconnect() for d in batch))
            await asyncio.sleep(0.5)
            if channels := [*await inspector.pubsub_channels(), *await inspector.pubsub_shardchannels()]:
                tally.problems.append(f"left behind: {len(channels)} subscriptions")
            if present := [name for name in names if await inspector.exists(name)]:
                tally.problems.append(f"left behind: {len(present)} presence keys")
            sessions = [key async for key in inspector.scan_iter("aa:session:*")]
            long_lived = [key for key in sessions if (await inspector.ttl(key)) > 2]
            if long_lived:
                tally.problems.append(f"left behind: {len(long_lived)} session records beyond the recovery window")
            await asyncio.sleep(2.5)
            if remaining := [key async for key in inspector.scan_iter("aa:session:*")]:
                tally.problems.append(f"left behind: {len(remaining)} session records after it")
        finally:
            await pubsub.close()
            await inspector.aclose()
    return tally


async def redeliveries(*, pushes: int, rate: float = 0.1) -> Tally:
    tally = Tally("redeliveries")
    names = conversations(4)
    rng = random.Random(7)
    with processes.redis_server(private=True) as store, \
            processes.service_server(role="connector", redis=store) as connector, \
            processes.service_server(role="interceptor", redis=store) as interceptor:
        desktops = [Desktop() for _ in names]
        for desktop, name in zip(desktops, names):
            await desktop.connect(connector, token(), name)
        pubsub = PubSub(interceptor, tally)
        sent: list[list[str]] = [[] for _ in names]
        try:
            for number in range(pushes):
                conversation, message_id = number % len(names), f"again-{number}"
                sent[conversation].append(message_id)
                draw = rng.random()
                if draw < rate / 2:  # redelivered while the original is still in flight
                    tally.pushed += 1
                    results = await asyncio.gather(*(pubsub.post(names[conversation], message_id) for _ in range(3)))
                    tally.acknowledged += all(results)
                else:
                    await pubsub.deliver(names[conversation], message_id)
                    if draw < rate:  # redelivered later (the acknowledgement was lost)
                        await pubsub.post(names[conversation], message_id)
            await settle(lambda: all(len(d.received) >= len(s) for d, s in zip(desktops, sent)))
            count(tally, [d.received for d in desktops], sent)
        finally:
            await pubsub.close()
            for desktop in desktops:
                await desktop.client.disconnect()
    return tally


@dataclass
class SlowDesktopTally(Tally):
    """``slow-desktop``'s tally, with what the stalled desktop saw and the figures about the others."""

    limit: int = 0
    event_chars: int = 0  # about how long each event's payload JSON is
    closed: tuple[int | None, str] | None = None  # how the stalled desktop's connection ended: (code, reason)
    read_before_close: int = 0  # events it had read when the server closed it
    decided_too_slow: bool = False  # the connector logged its decision to close it as too slow
    closed_as_too_slow: int = 0  # desktops the connector logged it closed as too slow (the stalled one only)
    recovered: bool = False  # its reconnection got its pid back
    replayed: int = 0  # events the recovery replayed
    in_order: bool = False  # every event it got, in offset order, none twice
    baseline_rss: int = 0  # the connector's VmRSS (bytes) before the stall
    peak_rss: int = 0  # its highest VmRSS while the stalled desktop's events were pushed and it was closed
    recovery_peak_rss: int = 0  # its highest VmRSS while the recovery replayed them
    latencies: dict[str, list[float]] = field(default_factory=dict)  # phase -> the others' latencies (s)

    @property
    def rss_growth(self) -> int:
        return self.peak_rss - self.baseline_rss

    @property
    def rss_bound(self) -> int:
        """What the stall may add to the connector's memory: ``RSS_SLACK``, and the stalled desktop's queue of
        at most ``limit`` frames twice over (a frame is about as long as its event's payload)."""
        return RSS_SLACK + 2 * self.limit * self.event_chars

    def line(self) -> str:
        figures = "  ".join(
            f"{phase}: p50 {percentile(values, 0.5) * 1000:.1f} p99 {percentile(values, 0.99) * 1000:.1f} ms"
            for phase, values in self.latencies.items()
        )
        mib = 2**20
        return (f"{super().line()}\n"
                f"{'':<18} stalled desktop: closed {self.closed} after reading {self.read_before_close} events; "
                f"recovered {self.recovered}, {self.replayed} replayed, in order {self.in_order}; "
                f"desktops closed as too slow: {self.closed_as_too_slow}\n"
                f"{'':<18} connector VmRSS {self.baseline_rss / mib:.1f} MiB, peak {self.peak_rss / mib:.1f} MiB "
                f"(+{self.rss_growth / mib:.1f}, bound +{self.rss_bound / mib:.1f}; WEBSOCKET_SEND_QUEUE_LIMIT "
                f"{self.limit}, events of ~{self.event_chars} characters), "
                f"{self.recovery_peak_rss / mib:.1f} MiB during the recovery\n"
                f"{'':<18} the other desktops' latency, {figures}")


# What a run may add to the connector's resident set besides the stalled desktop's queue (the other desktops'
# queues when they lag, the allocator's pools); measured: under 1 MiB in all.
RSS_SLACK = 4 * 2**20
SLOW_PADDING = 2000  # characters of filler per notification: payloads of about 2.4 KB


def resident_bytes(pid: int) -> int:
    """A process's resident set (VmRSS), in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise ValueError(f"no VmRSS for process {pid}")


class PeakRss:
    """The highest VmRSS of a process while ``async with`` runs, sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._sampler: asyncio.Task | None = None

    async def __aenter__(self) -> PeakRss:
        self._sampler = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._sampler is not None
        self._sampler.cancel()
        self.peak = max(self.peak, resident_bytes(self.pid))

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, resident_bytes(self.pid))
            await asyncio.sleep(0.02)


async def push_concurrently(pubsub: PubSub, pushes: list[tuple[str, str]], *, concurrency: int, padding: int,
                            rate: float | None = None, behind: Callable[[], int] | None = None,
                            window: int = 0) -> None:
    """Deliver ``(conversation, message id)`` pairs, ``concurrency`` in flight, starting at most ``rate`` a second,
    and none while ``behind()`` (how many acknowledged events some reader has not received yet) exceeds
    ``window``."""
    slots = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def one(number: int, conversation: str, message_id: str) -> None:
        if rate is not None:
            await asyncio.sleep(max(0.0, started + number / rate - loop.time()))
        async with slots:
            give_up = loop.time() + WAIT
            while behind is not None and behind() > window and loop.time() < give_up:
                await asyncio.sleep(0.005)
            await pubsub.deliver(conversation, message_id, padding=padding)

    await asyncio.gather(*(one(number, *push) for number, push in enumerate(pushes)))


async def slow_desktop(*, pushes: int, limit: int, alone: int | None = None, concurrency: int = 8,
                       rate: float | None = None, padding: int = SLOW_PADDING, **server_env: str) -> SlowDesktopTally:
    """A desktop stops reading its socket while ``pushes`` events go to its conversation (and a tenth as many to
    another; ``rate`` a second, else as fast as ``concurrency`` allows), five others reading; before that and
    after it recovered and left, ``alone`` pushes (as many by default) without it, for comparison.
    ``server_env`` overrides the connector's settings (``WEBSOCKET_SEND_QUEUE_LIMIT`` is ``limit``)."""
    tally = SlowDesktopTally("slow-desktop", limit=limit, event_chars=padding + 500)
    stalled_name, other_name = conversations(2)
    # Enough history for the stalled desktop to recover all it missed (the interceptor trims it).
    history = {"EVENT_HISTORY_MAX_EVENTS": str(max(1000, 2 * pushes))}
    server_env = {"WEBSOCKET_SEND_QUEUE_LIMIT": str(limit), **history, **server_env}
    with processes.redis_server(private=True) as store, \
            processes.service_server(role="connector", redis=store, **server_env) as connector, \
            processes.service_server(role="interceptor", redis=store, **history) as interceptor:
        joined = [stalled_name] * 3 + [other_name] * 2
        desktops = [Desktop() for _ in joined]
        for desktop, name in zip(desktops, joined):
            await desktop.connect(connector, token(), name)
        pubsub = PubSub(interceptor, tally)
        sent: dict[str, list[str]] = {stalled_name: [], other_name: []}

        def readers_behind() -> int:
            # The reading desktops share the send limits the stalled one is held to: pushes wait while one of
            # them is half a queue behind (the load generator in one process, the machine loaded), so that the
            # connector only ever closes the stalled desktop as too slow, however fast this machine reads.
            return max(pubsub.acknowledged_to[name] - len(d.received) for d, name in zip(desktops, joined))

        async def phase(name: str, count: int) -> None:
            batch = []
            for number in range(count):
                batch.append((stalled_name, f"{name}-{number}"))
                if number % 10 == 0:
                    batch.append((other_name, f"{name}-other-{number}"))
            for desktop in desktops:
                desktop.latencies.clear()
            await push_concurrently(pubsub, batch, concurrency=concurrency, padding=padding, rate=rate,
                                    behind=readers_behind, window=max(1, limit // 2))
            for conversation, message_id in batch:
                sent[conversation].append(message_id)
            await settle(lambda: all(len(d.received) >= len(sent[c]) for d, c in zip(desktops, joined)))
            if name != "warm-up":
                tally.latencies[name] = [latency for desktop in desktops for latency in desktop.latencies]

        stalled = StalledDesktop(connector.port)
        try:
            await phase("warm-up", 50)  # connections opened and the script loaded, as they are later
            await phase("alone", pushes if alone is None else alone)
            await stalled.connect(token())
            assert (await stalled.call("join-conversation", stalled_name))[0] is True
            missed_from = len(sent[stalled_name])
            tally.baseline_rss = resident_bytes(connector.process.pid)
            async with PeakRss(connector.process.pid) as stall:
                await phase("stalled", pushes)  # the stalled desktop reads nothing meanwhile
                missed = sent[stalled_name][missed_from:]
                # Now it reads: what the socket buffers held, then the close (or, never closed, everything).
                with contextlib.suppress(Ended, TimeoutError):
                    await stalled.read_until(lambda d: len(d.events) >= len(missed), timeout=WAIT)
            tally.peak_rss = stall.peak
            tally.closed, tally.read_before_close = stalled.ended, len(stalled.events)
            stalled.close()
            async with PeakRss(connector.process.pid) as recovery:
                await recover(stalled, connector, missed, tally)
            tally.recovery_peak_rss = recovery.peak
            await phase("after", pushes if alone is None else alone)  # gone again: a second figure without it
            count(tally, [d.received for d in desktops], [sent[name] for name in joined],
                  names=[f"reading desktop {number} ({'the stalled' if name == stalled_name else 'the other'} "
                         f"conversation{', its connection ended: ' + d.ended if d.ended else ''})"
                         for number, (d, name) in enumerate(zip(desktops, joined))])
        finally:
            stalled.close()
            await pubsub.close()
            for desktop in desktops:
                await desktop.client.disconnect()
        log = connector.log()
        tally.problems += [f"connector logged: {line[:200]}" for line in log.splitlines()
                           if '"severity": "ERROR"' in line or "Traceback" in line]
        tally.closed_as_too_slow = log.count("Disconnecting a desktop")
        decided = tally.decided_too_slow = tally.closed_as_too_slow > 0
    # The close frame waits behind the events the desktop has not read: one that reads again only after the
    # server's close timeouts finds the connection ended without it (the decision is in the log then).
    if tally.closed is None or tally.closed[0] not in (close_codes.TOO_SLOW, None) or not decided:
        tally.problems.append(f"the stalled desktop was not closed as too slow ({close_codes.TOO_SLOW})")
    if tally.closed_as_too_slow > 1:
        tally.problems.append(f"the connector closed {tally.closed_as_too_slow} desktops as too slow, "
                              "not just the stalled one")
    if not (tally.recovered and tally.in_order):
        tally.problems.append("the stalled desktop did not recover everything in order")
    if tally.rss_growth > tally.rss_bound:
        tally.problems.append("the connector's memory grew beyond the bound")
    return tally


async def recover(stalled: StalledDesktop, connector: processes.Server, missed: list[str],
                  tally: SlowDesktopTally) -> None:
    """Reconnect the stalled desktop with its pid and last offset, reading normally; count what it got in all."""
    auth = {"pid": stalled.pid}
    if stalled.events:
        auth["offset"] = stalled.events[-1].offset
    again = StalledDesktop(connector.port, receive_buffer=None)
    try:
        answer = await again.connect(token(), **auth)
        tally.recovered = answer.get("pid") == stalled.pid
        with contextlib.suppress(Ended, TimeoutError):
            await again.read_until(lambda d: len(stalled.events) + len(d.events) >= len(missed), timeout=WAIT)
            await again.read_until(lambda _: False, timeout=1.0)  # for duplicates to show
    finally:
        again.close()
    tally.replayed = len(again.events)
    everything = stalled.events + again.events
    received = Counter(event.payload["message_id"] for event in everything)
    count(tally, [received], [missed], names=["the stalled desktop"])
    # The stalled desktop is in one conversation: its offsets have one position each.
    seqs = [next(iter(offsets.parse(event.offset).positions.values())).seq for event in everything]
    tally.in_order = seqs == sorted(set(seqs))
