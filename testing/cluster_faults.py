"""The fault scenarios on a private local Redis Cluster (three primaries, a replica each), at any size.

Each starts its own cluster (``processes.redis_cluster(private=True)``), an interceptor and two connectors on it
(``REDIS_CLUSTER=true``), pushes as Pub/Sub does (retried with backoff until acknowledged, ``rate`` a second,
each push in flight on its own) to conversations spread over every shard, and counts what desktops connected
through a connector received: Socket.IO desktops (python-socketio) and ``/ws/`` desktops, each in conversations
on several shards, every one cut once near the end and back on the other connector (Socket.IO recovering its
session with its pid and offset, ``/ws/`` joining again ``after`` its last offset of each conversation).

- ``cluster_primary_killed``: the primary owning the busiest conversations is killed (SIGKILL) mid-stream; its
  replica takes over after the cluster's node timeout; the interceptor answers 503 meanwhile for that shard,
  the connectors subscribe again at the new primary and catch up from the history.
- ``cluster_reshard``: the slots of the busiest conversations move to another primary while pushes go on, their
  keys one ``MIGRATE`` at a time; appends to a slot half moved are refused (``TRYAGAIN``: 503, retried), the
  connectors are told ``SUNSUBSCRIBE`` and subscribe again at the new owner.

``benchmarks/faults.py`` runs them at full size, ``tests/test_faults.py`` small.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import aiohttp

from testing import clients, processes
from testing.cluster_layout import Layout, slot_of
from testing.fault_scenarios import WAIT, PubSub, Tally, settle, token
from testing.tcp_proxy import TcpProxy, tcp_proxy

#: A takeover's new epoch continues the one it ends (``events.history``): a desktop or a connector catching up
#: from an offset of the old epoch reads on from it, and gets nothing twice. Without it, duplicates are let pass.
EPOCH_CONTINUITY = True
#: How long the desktops get to receive every acknowledged event after a fault, and at the end.
CATCH_UP_SECONDS = 10.0
#: Pushes POSTed at once at most.
POSTS_IN_FLIGHT = 100
#: How long a desktop's attempt to connect (and join, or recover) may take before it tries again.
ATTEMPT_SECONDS = 10.0


@dataclass
class ClusterTally(Tally):
    """A cluster scenario's tally, with what the fault did and what was let pass."""

    fault: str = ""  # what was done to the cluster, and how long it took
    losses_allowed: bool = False  # acknowledged events may be lost: a primary killed before it replicated them
    duplicates_allowed: bool = False
    lost_in_redis: int = 0  # acknowledged pushes missing from their conversation's history at the end
    reconnections: str = ""  # how often desktops came back, and how
    # A primary killed: when (time.monotonic), and when its replica served; the moments POSTs of pushes to the
    # other shards' conversations were answered without acknowledging them.
    outage: tuple[float, float] | None = None
    others_refused_at: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # losses and duplicates let pass

    @property
    def ok(self) -> bool:
        return ((self.lost == 0 and self.lost_in_redis == 0 or self.losses_allowed)
                and (self.duplicated == 0 or self.duplicates_allowed)
                and not self.problems and self.acknowledged == self.pushed)

    def line(self) -> str:
        allowed = [what for what, allowed in (("losses", self.losses_allowed),
                                             ("duplicates", self.duplicates_allowed)) if allowed]
        shown = self.notes[:3] + ([f"{len(self.notes) - 3} more"] if len(self.notes) > 3 else [])
        notes = f"; let pass: {'; '.join(shown)}" if self.notes else ""
        return (f"{super().line()}\n{'':<18} {self.fault}; {self.reconnections}; acknowledged but missing from "
                f"Redis {self.lost_in_redis}{self.others_refused()}"
                f"{'; allowed: ' + ', '.join(allowed) if allowed else ''}{notes}")


    def others_refused(self) -> str:
        """How many POSTs to the other shards were refused while the primary was down: in its first node timeout
        (the cluster still serving every other slot), and in all until its replica served (``CLUSTERDOWN``
        after the node timeout included)."""
        if self.outage is None:
            return ""
        killed, served = self.outage
        early = sum(killed <= at < killed + processes.CLUSTER_NODE_TIMEOUT_MS / 1000 for at in self.others_refused_at)
        outage = sum(killed <= at <= served for at in self.others_refused_at)
        return (f"; POSTs to the other shards refused while the primary was down: {early} in the first "
                f"{processes.CLUSTER_NODE_TIMEOUT_MS / 1000:g} s (the node timeout), {outage} until the replica "
                f"served, {len(self.others_refused_at)} in the whole run")


class ReconnectingDesktop:
    """A desktop that, like socket.io-client and a careful ``/ws/`` client, comes back whenever its connection
    ends (the scheduled cut, or the connector closing it while Redis fails), each time through the other proxy
    (connector), trying again every ``RETRY_SECONDS`` while it cannot."""

    RETRY_SECONDS = 0.3

    def __init__(self, conversations: list[str], proxies: list[TcpProxy], first: int, token: str) -> None:
        self.conversations = conversations
        self.proxies = proxies
        self.turn = first
        self.token = token
        self.closing = False
        self.connections = 0  # made so far
        self.recovered: list[bool] = []  # per reconnection: back whole (Socket.IO: its session recovered)
        self.failed_attempts = 0
        self.last_error = ""
        self._coming_back: asyncio.Task | None = None

    @property
    def proxy(self) -> TcpProxy:
        return self.proxies[self.turn % len(self.proxies)]

    def ended(self) -> None:
        """Its connection ended: come back, unless the scenario is closing it."""
        if not self.closing and (self._coming_back is None or self._coming_back.done()):
            self._coming_back = asyncio.ensure_future(self._come_back())

    async def _come_back(self) -> None:
        while not self.closing:
            self.turn += 1
            try:
                self.recovered.append(await asyncio.wait_for(self.reconnect(), ATTEMPT_SECONDS))
                self.connections += 1
                return
            except Exception as error:  # refused, failed or timed out: as a client would, again a little later
                self.failed_attempts += 1
                self.last_error = f"{type(error).__name__}: {error}"[:200]
                await asyncio.sleep(self.RETRY_SECONDS)

    async def reconnect(self) -> bool:
        raise NotImplementedError

    async def back(self, connections: int) -> bool:
        """Until it has made ``connections`` connections; False when it has not after ``WAIT`` seconds."""
        with contextlib.suppress(AssertionError):
            await clients.wait_until(lambda: self.connections >= connections, what="the desktop back", timeout=WAIT)
        return self.connections >= connections


class SocketIODesktop(ReconnectingDesktop):
    """A python-socketio desktop in some conversations; back after each drop with its session (pid and last
    offset), joining its conversations again when the session was not recovered."""

    def __init__(self, *arguments) -> None:
        super().__init__(*arguments)
        self.sessions: list[clients.SocketIODesktop] = []

    def _new(self) -> clients.SocketIODesktop:
        desktop = clients.SocketIODesktop()

        @desktop.client.on("disconnect")
        async def on_disconnect(*_: object) -> None:
            self.ended()

        return desktop

    async def connect(self) -> None:
        desktop = self._new()
        await desktop.connect(self.proxy, self.token)
        self.sessions.append(desktop)
        self.connections += 1
        for conversation in self.conversations:
            assert (await desktop.join(conversation))[0] is True, "join refused"

    async def reconnect(self) -> bool:
        last = self.sessions[-1]
        offset = next((s.offsets[-1] for s in reversed(self.sessions) if s.offsets), None)
        back = self._new()
        await back.connect(self.proxy, self.token, auth={"pid": last.pid, **({"offset": offset} if offset else {})})
        self.sessions.append(back)
        if back.pid == last.pid:
            return True
        for conversation in self.conversations:  # a new session: in its conversations again, what it missed lost
            await back.join(conversation)
        return False

    def received(self) -> Counter[str]:
        return Counter(payload["message_id"] for session in self.sessions for _, payload in session.events
                       if isinstance(payload, dict) and "message_id" in payload)

    async def close(self) -> None:
        self.closing = True
        for session in self.sessions:
            await session.disconnect()


class PlainDesktop(ReconnectingDesktop):
    """A ``/ws/`` desktop in some conversations (joined with their history); back after each drop joining each
    ``after`` the last offset it received of it."""

    def __init__(self, *arguments) -> None:
        super().__init__(*arguments)
        self.counted: Counter[str] = Counter()
        self.last: dict[str, str] = {}
        self.gaps = 0  # history_gap frames: a replay that could not be whole
        self.desktop: clients.PlainDesktop | None = None
        self.answers: asyncio.Queue[str] = asyncio.Queue()

    async def connect(self) -> None:
        await self._open()
        self.connections += 1

    async def reconnect(self) -> bool:
        if self.desktop is not None:
            await self.desktop.close()
        await self._open()
        return True

    async def _open(self) -> None:
        session = aiohttp.ClientSession()
        try:
            socket = await session.ws_connect(self.proxy.http_url.replace("http://", "ws://") + "/ws/")
            desktop = self.desktop = clients.PlainDesktop(session, socket)
            answer = await desktop.request({"type": "authenticate", "token": self.token})
        except BaseException:
            await session.close()
            raise
        if answer["type"] != "authenticated":
            await desktop.close()
            raise TimeoutError(f"authenticate answered {answer['type']}")
        self.answers = asyncio.Queue()
        asyncio.ensure_future(self._read(desktop))
        for conversation in self.conversations:
            frame = {"type": "join", "conversation": conversation}
            if conversation in self.last:
                frame["after"] = self.last[conversation]
            else:
                frame["history"] = True
            await desktop.socket.send_json(frame)
            answer = await asyncio.wait_for(self.answers.get(), WAIT)
            if answer != "joined":
                # Refused (Redis failing): the connection is closed, and it comes back as after any drop.
                await desktop.close()
                raise TimeoutError(f"join answered {answer}")

    async def _read(self, desktop: clients.PlainDesktop) -> None:
        try:
            async for message in desktop.socket:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                frame = json.loads(message.data)
                kind = frame.get("type")
                if kind == "event":
                    payload = frame["payload"]
                    self.counted[payload["message_id"]] += 1
                    self.last[payload["conversation_name"]] = frame["offset"]
                elif kind in ("joined", "error"):
                    self.answers.put_nowait(kind)  # joins go one at a time
                elif kind == "history_gap":
                    self.gaps += 1
        finally:
            self.answers.put_nowait("closed")
            if desktop is self.desktop:
                self.ended()

    def received(self) -> Counter[str]:
        return self.counted

    async def close(self) -> None:
        self.closing = True
        if self.desktop is not None:
            await self.desktop.close()


class Fleet:
    """Desktops alternately Socket.IO and ``/ws/``, each in ``per_desktop`` conversations (consecutive in
    ``names``, which alternate between shards), alternately through each of two proxies (one per connector)."""

    def __init__(self, names: list[str], proxies: list[TcpProxy], token: str, *, desktops: int,
                 per_desktop: int) -> None:
        self.desktops: list[SocketIODesktop | PlainDesktop] = []
        for number in range(desktops):
            joined = [names[(number * per_desktop + i) % len(names)] for i in range(per_desktop)]
            kind = SocketIODesktop if number % 2 == 0 else PlainDesktop
            self.desktops.append(kind(joined, proxies, number // 2, token))
        self.proxies = proxies

    async def connect(self) -> None:
        await asyncio.gather(*(desktop.connect() for desktop in self.desktops))

    async def cut(self) -> list[str]:
        """Cut every connection; wait until every desktop is back; those that are not, and why."""
        made = [desktop.connections for desktop in self.desktops]
        for proxy in self.proxies:
            proxy.cut()
        back = await asyncio.gather(*(desktop.back(count + 1) for desktop, count in zip(self.desktops, made)))
        return [f"{name} not back after the cut ({desktop.failed_attempts} failed attempts, the last "
                f"{desktop.last_error or 'still under way'})"
                for name, desktop, ok in zip(self.names(), self.desktops, back) if not ok]

    def expected(self, acknowledged: dict[str, list[str]]) -> list[list[str]]:
        return [[m for c in desktop.conversations for m in acknowledged[c]] for desktop in self.desktops]

    def caught_up(self, acknowledged: dict[str, list[str]]) -> bool:
        """Whether every desktop has every event acknowledged so far of its conversations."""
        return all(all(desktop.received()[m] for m in wanted)
                   for desktop, wanted in zip(self.desktops, self.expected(acknowledged)))

    def names(self) -> list[str]:
        return [f"{type(desktop).__name__} {number}" for number, desktop in enumerate(self.desktops)]

    def reconnections(self) -> str:
        sio = [r for d in self.desktops if isinstance(d, SocketIODesktop) for r in d.recovered]
        ws = sum(len(d.recovered) for d in self.desktops if isinstance(d, PlainDesktop))
        failed = sum(d.failed_attempts for d in self.desktops)
        return (f"reconnections: Socket.IO {len(sio)} ({sum(sio)} recovered), /ws/ {ws}; "
                f"{failed} failed attempts")

    async def close(self) -> None:
        for desktop in self.desktops:
            with contextlib.suppress(Exception):
                await desktop.close()


class Pusher:
    """Pushes started ``rate`` a second, each retried until acknowledged (``PubSub.deliver``) on its own."""

    def __init__(self, interceptor: processes.Server, tally: ClusterTally, watched: list[str]) -> None:
        self.pubsub = PubSub(interceptor, tally)
        self.tally = tally
        self.watched = set(watched)  # the faulty shard's conversations; a refusal of another's is noted
        self.acknowledged: dict[str, list[str]] = defaultdict(list)
        self.started = 0
        # POSTs in flight at once, as Pub/Sub's flow control holds them back (and as many as httpx's pool has
        # connections: thousands of requests queued in its pool took this process's CPU while a shard was down).
        self.in_flight = asyncio.Semaphore(POSTS_IN_FLIGHT)

    async def run(self, pushes: list[tuple[str, str]], rate: float) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()

        async def one(number: int, conversation: str, message_id: str) -> None:
            await asyncio.sleep(max(0.0, began + number / rate - loop.time()))
            self.started += 1
            if await self.deliver(conversation, message_id):
                self.acknowledged[conversation].append(message_id)

        await asyncio.gather(*(one(number, *push) for number, push in enumerate(pushes)))

    async def deliver(self, conversation: str, message_id: str) -> bool:
        """``PubSub.deliver``, saying whether this push was acknowledged (others in flight meanwhile)."""
        tally = self.pubsub.tally
        tally.pushed += 1
        loop = asyncio.get_running_loop()
        give_up, delay = loop.time() + WAIT, 0.1
        while loop.time() < give_up:
            async with self.in_flight:
                acknowledged = await self.pubsub.post(conversation, message_id)
            if acknowledged:
                tally.acknowledged += 1
                return True
            if conversation not in self.watched:
                self.tally.others_refused_at.append(time.monotonic())
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        return False

    async def reached(self, started: int) -> None:
        while self.started < started:
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        await self.pubsub.close()


def spread(shards: dict[int, list[str]]) -> list[str]:
    """The conversations of every shard, alternating between shards."""
    return [name for row in zip(*shards.values()) for name in row]


def schedule(names: list[str], busy: list[str], pushes: int, label: str) -> list[tuple[str, str]]:
    """``pushes`` (conversation, message id) pairs: every other one to a busy conversation, the rest round-robin."""
    plan = []
    for number in range(pushes):
        pool = busy if number % 2 == 0 else names
        plan.append((pool[(number // 2) % len(pool)], f"{label}-{number}"))
    return plan


def missing_from_redis(layout: Layout, acknowledged: dict[str, list[str]]) -> int:
    """Acknowledged pushes not in their conversation's history now (the service's default key prefix)."""
    missing = 0
    for conversation, message_ids in acknowledged.items():
        entries = layout.command(layout.owner(slot_of(conversation)), "XRANGE", f"aa:{{{conversation}}}:history",
                                 "-", "+")
        stored = {json.loads(fields["p"]).get("message_id") for _, fields in entries}
        missing += sum(1 for message_id in message_ids if message_id not in stored)
    return missing


def tally_desktops(tally: ClusterTally, fleet: Fleet, expected: list[list[str]]) -> None:
    """As ``fault_scenarios.count``, each desktop's losses and duplicates a problem unless the tally lets them
    pass (then a note)."""
    for name, desktop, wanted in zip(fleet.names(), fleet.desktops, expected):
        got = desktop.received()
        lost = sum(1 for message_id in wanted if got[message_id] == 0)
        duplicated = sum(max(0, times - 1) for times in got.values())
        tally.expected += len(wanted)
        tally.delivered += len(wanted) - lost
        tally.duplicated += duplicated
        if lost or duplicated:
            passes = (not lost or tally.losses_allowed) and (not duplicated or tally.duplicates_allowed)
            (tally.notes if passes else tally.problems).append(
                f"{name}: lost {lost} of {len(wanted)}, duplicated {duplicated}")


def logged_tracebacks(servers: list[processes.Server]) -> list[str]:
    return [f"the {server.role} logged a traceback" for server in servers if "Traceback" in server.log()]


@contextlib.asynccontextmanager
async def cluster_servers(interceptor_env: dict[str, str]):
    """A private cluster, an interceptor and two connectors on it, a proxy in front of each connector."""
    history = {"EVENT_HISTORY_MAX_EVENTS": "100000"}  # nothing trimmed: the end's check reads every event
    with processes.redis_cluster(private=True) as cluster, \
            processes.service_server(role="interceptor", redis=cluster, **history, **interceptor_env) as interceptor, \
            processes.service_server(role="connector", redis=cluster) as first, \
            processes.service_server(role="connector", redis=cluster) as second:
        async with tcp_proxy(first.port) as a, tcp_proxy(second.port) as b:
            yield Layout(cluster), interceptor, [first, second], [a, b]


async def run_with_fault(tally: ClusterTally, *, label: str, per_shard: int, desktops: int, per_desktop: int,
                         pushes: int, rate: float, interceptor_env: dict[str, str], fault) -> ClusterTally:
    """Desktops connected, pushes flowing; at a third of them ``fault(layout, busy)`` (in a thread: it blocks),
    which says what it did; at two thirds every desktop cut and back on the other connector; then the count."""
    async with cluster_servers(interceptor_env) as (layout, interceptor, connectors, proxies):
        shards = await asyncio.to_thread(layout.on_each_shard, per_shard, label)
        busy = shards[layout.primaries()[0]]
        names = spread(shards)
        fleet = Fleet(names, proxies, token(), desktops=desktops, per_desktop=per_desktop)
        pusher = Pusher(interceptor, tally, busy)
        try:
            await fleet.connect()
            pushing = asyncio.create_task(pusher.run(schedule(names, busy, pushes, label), rate))
            await pusher.reached(pushes // 3)
            tally.fault = await asyncio.to_thread(fault, layout, busy)
            # The cut once the connectors caught up (so that the desktops' positions are past the fault), or
            # gave up doing so.
            with contextlib.suppress(AssertionError):
                await clients.wait_until(lambda: fleet.caught_up(pusher.acknowledged), what="the catch-up",
                                         timeout=CATCH_UP_SECONDS)
            await pusher.reached(2 * pushes // 3)
            tally.problems += await fleet.cut()
            await pushing
            await settle(lambda: fleet.caught_up(pusher.acknowledged), timeout=CATCH_UP_SECONDS)
            expected = fleet.expected(pusher.acknowledged)
            tally_desktops(tally, fleet, expected)
            tally.reconnections = fleet.reconnections()
            tally.lost_in_redis = await asyncio.to_thread(missing_from_redis, layout, pusher.acknowledged)
            gaps = sum(d.gaps for d in fleet.desktops if isinstance(d, PlainDesktop))
            if gaps:
                tally.notes.append(f"{gaps} /ws/ replays said history_gap")
        finally:
            await fleet.close()
            await pusher.close()
        tally.problems += logged_tracebacks([interceptor, *connectors])
    return tally


async def cluster_primary_killed(*, pushes: int, rate: float = 200.0, per_shard: int = 3, desktops: int = 12,
                                 per_desktop: int = 3, ack_replicas: bool = False) -> ClusterTally:
    """Kill the primary owning the busy conversations; without ``ack_replicas`` (``REDIS_ACK_REPLICAS``)
    acknowledged events it had not replicated yet may be lost (printed, let pass)."""
    tally = ClusterTally("cluster-primary-killed" + (" (REDIS_ACK_REPLICAS=1)" if ack_replicas else ""),
                         losses_allowed=not ack_replicas, duplicates_allowed=not EPOCH_CONTINUITY)

    def kill(layout: Layout, busy: list[str]) -> str:
        doomed = layout.owner(slot_of(busy[0]))
        began = time.monotonic()
        replica = layout.kill_primary(doomed)
        layout.wait_for_failover(doomed, replica)
        tally.outage = (began, time.monotonic())
        failed_over = time.monotonic() - began
        # Back as the new primary's replica, as a managed cluster replaces a lost node: with REDIS_ACK_REPLICAS
        # the shard accepts pushes again only then.
        layout.restart_as_replica(doomed)
        return (f"primary killed, its replica serving after {failed_over:.1f} s, the old primary back as its "
                f"replica after {time.monotonic() - began:.1f} s")

    environment = {"REDIS_ACK_REPLICAS": "1"} if ack_replicas else {}
    return await run_with_fault(tally, label="killed", per_shard=per_shard, desktops=desktops,
                                per_desktop=per_desktop, pushes=pushes, rate=rate, interceptor_env=environment,
                                fault=kill)


async def cluster_reshard(*, pushes: int, rate: float = 200.0, per_shard: int = 3, desktops: int = 12,
                          per_desktop: int = 3, pause: float = 0.1) -> ClusterTally:
    """Move the busy conversations' slots to another primary, ``pause`` seconds between two keys' ``MIGRATE``."""
    # The moved keys reach another Redis server process: the conversation's epoch is renewed at its first append
    # there, as after a failover.
    tally = ClusterTally("cluster-reshard", duplicates_allowed=not EPOCH_CONTINUITY)

    def reshard(layout: Layout, busy: list[str]) -> str:
        source = layout.owner(slot_of(busy[0]))
        target = next(port for port in layout.primaries() if port != source)
        slots = sorted({slot_of(name) for name in busy})
        began = time.monotonic()
        moved = sum(layout.move_slot(slot, target, pause=pause) for slot in slots)
        if any(layout.owner(slot) != target for slot in slots):
            raise AssertionError("a slot did not move")
        return f"{len(slots)} slots moved ({moved} keys) in {time.monotonic() - began:.1f} s"

    return await run_with_fault(tally, label="reshard", per_shard=per_shard, desktops=desktops,
                                per_desktop=per_desktop, pushes=pushes, rate=rate, interceptor_env={}, fault=reshard)
