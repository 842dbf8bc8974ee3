"""Fault scenarios against real processes: each prints pushed, acknowledged, delivered, duplicated, lost.

    .venv/bin/python -m benchmarks.faults [--quick] [--scenario redis-outage|connector-killed|churn|redeliveries]

Every scenario starts its own private redis-server and daphne processes on
127.0.0.1 (``tests.processes``), pushes through the interceptor as Pub/Sub
would (a push that is not acknowledged is retried with backoff until it is),
and counts what the desktops received:

- ``redis-outage``: Redis stopped for a few seconds mid-stream, then started
  again (empty, as after a restart without persistence). The interceptor
  answers 503 meanwhile; the connector re-subscribes by itself and catches up.
- ``connector-killed``: the connector a desktop (the npm socket.io-client,
  through a loopback proxy) is on is killed with SIGKILL mid-stream; the
  desktop reconnects to another connector and recovers what it missed.
- ``churn``: many desktops connect, join, receive one event and leave; then
  no subscription or presence key is left, and every session record expires
  within the recovery window.
- ``redeliveries``: Pub/Sub redelivers 10% of the pushes, half of those
  concurrently with the original.

Exit status 1 when any event was lost or duplicated, or anything was left behind.
``tests/test_faults.py`` runs each scenario small.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx
import redis.asyncio as redis
import socketio

from benchmarks import mint_tokens
from tests import clients, processes
from tests.tcp_proxy import tcp_proxy
from tests.test_envelope import push_body

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
    left_behind: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.expected - self.delivered

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and not self.left_behind and self.acknowledged == self.pushed

    def line(self) -> str:
        extra = f"  left behind: {', '.join(self.left_behind)}" if self.left_behind else ""
        return (f"{self.scenario:<18} pushed {self.pushed:>6}  acknowledged {self.acknowledged:>6}  "
                f"POSTs {self.attempts:>6}  delivered {self.delivered:>6}/{self.expected:<6}  "
                f"duplicated {self.duplicated:>4}  lost {self.lost:>4}{extra}")


class PubSub:
    """Pushes as Pub/Sub does: retried with backoff until acknowledged, optionally redelivered."""

    def __init__(self, interceptor: processes.Server, tally: Tally) -> None:
        self.url = f"{interceptor.http_url}/{EVENT}"
        self.tally = tally
        self.client = httpx.AsyncClient(timeout=10)

    async def close(self) -> None:
        await self.client.aclose()

    async def post(self, conversation: str, message_id: str) -> bool:
        self.tally.attempts += 1
        body = push_body({"conversation": conversation, "text": message_id}, messageId=message_id)
        try:
            response = await self.client.post(self.url, content=body, headers={"Content-Type": "application/json"})
        except httpx.HTTPError:
            return False
        return response.status_code in (200, 201, 202, 204)

    async def deliver(self, conversation: str, message_id: str, *, deadline: float = WAIT) -> None:
        """Push until acknowledged (Pub/Sub's retry with backoff), at most ``deadline`` seconds."""
        self.tally.pushed += 1
        loop = asyncio.get_running_loop()
        give_up, delay = loop.time() + deadline, 0.1
        while loop.time() < give_up:
            if await self.post(conversation, message_id):
                self.tally.acknowledged += 1
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


class Desktop:
    """A python-socketio desktop that counts the message ids it receives."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.received: Counter[str] = Counter()

        @self.client.on(EVENT)
        async def on_event(payload: dict, offset: str | None = None) -> None:
            self.received[payload["message_id"]] += 1

    async def connect(self, server, token: str, conversation: str) -> None:
        await self.client.connect(server.http_url, transports=["websocket"], auth={"token": token},
                                  wait_timeout=WAIT)
        ok, _ = await self.client.call("join-conversation", conversation, timeout=WAIT)
        assert ok, "join refused"


def count(tally: Tally, received: list[Counter[str]], expected: list[list[str]]) -> None:
    """Add what each desktop received against what it should have."""
    for got, wanted in zip(received, expected):
        tally.expected += len(wanted)
        tally.delivered += sum(1 for message_id in wanted if got[message_id] > 0)
        tally.duplicated += sum(max(0, times - 1) for times in got.values())


async def settle(predicate, *, timeout: float = WAIT) -> None:
    """Wait until ``predicate()`` holds, then one more second for duplicates to show."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout
    while not predicate() and loop.time() < give_up:
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)


def token() -> str:
    """A desktop JWT the servers of ``tests.processes`` accept."""
    (minted,) = mint_tokens(["agent"])
    return minted


def conversations(count: int) -> list[str]:
    run = uuid.uuid4().hex[:6]
    return [f"projects/{PROJECT}/conversations/fault-{run}-{number}" for number in range(count)]


async def redis_outage(*, pushes: int, outage: float = 3.0) -> Tally:
    tally = Tally("redis-outage")
    names = conversations(2)
    with processes.restartable_redis() as store, \
            processes.daphne_server(role="connector", redis=store.address) as connector, \
            processes.daphne_server(role="interceptor", redis=store.address) as interceptor:
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


async def connector_killed(*, pushes: int) -> Tally:
    tally = Tally("connector-killed")
    (name,) = conversations(1)
    with processes.redis_server(private=True) as store, \
            processes.daphne_server(role="interceptor", redis=store) as interceptor, \
            processes.daphne_server(role="connector", redis=store) as first, \
            processes.daphne_server(role="connector", redis=store) as second:
        pubsub = PubSub(interceptor, tally)
        sent = []
        try:
            async with tcp_proxy(first.port) as proxy, clients.node_desktop(
                proxy, token=token(), join=(name,), reconnect=True, timeout=120
            ) as node:
                await node.wait_for(lambda n: len(n.of_kind("ack")) == 1, what="the join")
                for number in range(pushes):
                    if number == pushes // 2:
                        proxy.backend_port = second.port
                        first.process.send_signal(signal.SIGKILL)
                        first.process.wait()
                        proxy.cut()
                    message_id = f"killed-{number}"
                    await pubsub.deliver(name, message_id)
                    sent.append(message_id)
                    await asyncio.sleep(0.01)
                await settle(lambda: len(node.events) >= len(sent))
                received = Counter(payload["message_id"] for _, payload in node.events)
                count(tally, [received], [sent])
                if [line["recovered"] for line in node.of_kind("connected")] != [False, True]:
                    tally.left_behind.append("the desktop was not recovered")
        finally:
            await pubsub.close()
    return tally


async def churn(*, desktops: int) -> Tally:
    tally = Tally("churn")
    names = conversations(max(1, desktops // 10))
    with processes.redis_server(private=True) as store, \
            processes.daphne_server(role="connector", redis=store, SOCKETIO_RECOVERY_SECONDS="2") as connector, \
            processes.daphne_server(role="interceptor", redis=store) as interceptor:
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
            if channels := await inspector.pubsub_channels():
                tally.left_behind.append(f"{len(channels)} subscriptions")
            if present := [name for name in names if await inspector.exists(name)]:
                tally.left_behind.append(f"{len(present)} presence keys")
            sessions = [key async for key in inspector.scan_iter("aa:session:*")]
            long_lived = [key for key in sessions if (await inspector.ttl(key)) > 2]
            if long_lived:
                tally.left_behind.append(f"{len(long_lived)} session records beyond the recovery window")
            await asyncio.sleep(2.5)
            if remaining := [key async for key in inspector.scan_iter("aa:session:*")]:
                tally.left_behind.append(f"{len(remaining)} session records after it")
        finally:
            await pubsub.close()
            await inspector.aclose()
    return tally


async def redeliveries(*, pushes: int, rate: float = 0.1) -> Tally:
    tally = Tally("redeliveries")
    names = conversations(4)
    rng = random.Random(7)
    with processes.redis_server(private=True) as store, \
            processes.daphne_server(role="connector", redis=store) as connector, \
            processes.daphne_server(role="interceptor", redis=store) as interceptor:
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


SCENARIOS = {
    "redis-outage": lambda quick: redis_outage(pushes=60 if quick else 600),
    "connector-killed": lambda quick: connector_killed(pushes=40 if quick else 400),
    "churn": lambda quick: churn(desktops=100 if quick else 1000),
    "redeliveries": lambda quick: redeliveries(pushes=200 if quick else 2000),
}


async def run(names: list[str], quick: bool) -> list[Tally]:
    tallies = []
    for name in names:
        tally = await SCENARIOS[name](quick)
        print(tally.line(), flush=True)
        tallies.append(tally)
    return tallies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    parser.add_argument("--quick", action="store_true", help="small runs (what the test suite does)")
    args = parser.parse_args(argv)
    tallies = asyncio.run(run(args.scenario or list(SCENARIOS), args.quick))
    return 0 if all(tally.ok for tally in tallies) else 1


if __name__ == "__main__":
    sys.exit(main())
