"""``REDIS_ACK_REPLICAS``: an append is answered only once Redis ``WAIT`` saw it reach that many replicas.

Real servers: a private primary with a real replica (``--replicaof``), frozen
with SIGSTOP to make it fall behind; on a Redis Cluster, a private one (three
primaries, a replica each) so that one shard's replica can be frozen.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis

from aa_site import health
from events import redis_client, replica_ack
from events.history import RedisHistory, conversation_key
from events.replica_ack import ReplicasBehind
from testing import clients, cluster_layout, processes, redis_monitor
from testing.push_bodies import push_body
from tests.test_health import get

A = "projects/p/conversations/acked"



@pytest.fixture
def acking(settings):
    settings.REDIS_ACK_REPLICAS = 1
    settings.REDIS_ACK_REPLICAS_TIMEOUT_MS = 200
    return settings


async def append(history: RedisHistory, message_id: str, conversation: str = A):
    return await history.append(conversation=conversation, kind="new-message-event", message_id=message_id,
                                payload_json=json.dumps({"id": message_id}))


async def stored(address, conversation: str = A) -> list[str]:
    """The ids of the events in ``conversation``'s history on the Redis at ``address`` (the test's own, or the
    push's messageId)."""
    client = Redis(host=address.host, port=address.port)
    try:
        entries = await client.xrange(conversation_key(conversation, "history"))
    finally:
        await client.aclose()
    payloads = [json.loads(fields[b"p"]) for _, fields in entries]
    return [payload.get("id", payload.get("message_id")) for payload in payloads]


async def test_an_append_answers_once_the_replica_holds_it(acking, primary, replica) -> None:
    """The WAIT in the append's pipeline returns once the replica acknowledged it: the replica holds the event
    when the append answers, read there straight away."""
    history = RedisHistory(Redis(host=primary.host, port=primary.port))
    for n in range(5):
        appended = await append(history, f"m-{n}")
        assert not appended.duplicate
        assert (await stored(replica.address))[-1] == f"m-{n}"
    # Appends of one turn share one pipeline and its one WAIT.
    together = await asyncio.gather(*(append(history, f"t-{n}") for n in range(20)))
    assert len({a.offset.seq for a in together}) == 20
    assert (await stored(replica.address))[-20:] == [f"t-{n}" for n in range(20)]


async def test_a_frozen_replica_makes_the_append_fail_and_the_redelivery_is_a_confirmed_duplicate(
        acking, primary, replica) -> None:
    """The replica is frozen: the primary stores the event but WAIT counts no replica, and the append raises
    ``ReplicasBehind`` (the push answers 503), and so does a redelivery while it stays frozen (the stored copy is
    still on no replica). Once the replica is back, the redelivery is found a duplicate (not stored or sent
    again) and confirmed: the replica holds the one copy."""
    history = RedisHistory(Redis(host=primary.host, port=primary.port))
    await append(history, "m-0")
    replica.pause()
    try:
        with pytest.raises(ReplicasBehind) as raised:
            await append(history, "m-1")
        assert (raised.value.confirmed, raised.value.wanted) == (0, 1)
        assert await stored(primary) == ["m-0", "m-1"]
        with pytest.raises(ReplicasBehind):  # a redelivery while the replica still lacks the first copy
            await append(history, "m-1")
    finally:
        replica.resume()
    redelivered = await append(history, "m-1")
    assert redelivered.duplicate and redelivered.offset.seq == 2
    assert await stored(replica.address) == ["m-0", "m-1"]


async def test_asking_for_more_replicas_than_there_are_fails_every_append(settings, primary, replica) -> None:
    settings.REDIS_ACK_REPLICAS, settings.REDIS_ACK_REPLICAS_TIMEOUT_MS = 2, 50
    history = RedisHistory(Redis(host=primary.host, port=primary.port))
    with pytest.raises(ReplicasBehind) as raised:
        await append(history, "m-0")
    assert (raised.value.confirmed, raised.value.wanted) == (1, 2)


async def test_the_interceptor_answers_503_until_the_replica_confirms(settings, primary, replica) -> None:
    """Through the interceptor process: 204 with the replica up; 503 (and one ERROR line naming the messageId
    and the replicas, not the content) while it is frozen; the redelivery once it is back: 204, one copy."""
    with processes.service_server(role="interceptor", redis=primary, REDIS_ACK_REPLICAS="1",
                                  REDIS_ACK_REPLICAS_TIMEOUT_MS="200",
                                  EVENT_KEY_PREFIX=settings.EVENT_KEY_PREFIX) as interceptor:
        async with httpx.AsyncClient(timeout=10) as http:

            async def push(message_id: str) -> httpx.Response:
                body = push_body({"conversation": A, "text": "secret words"}, messageId=message_id)
                return await http.post(f"{interceptor.http_url}/new-message-event", content=body,
                                       headers={"Content-Type": "application/json"})

            assert (await push("m-0")).status_code == 204
            replica.pause()
            try:
                refused = await push("m-1")
            finally:
                replica.resume()
            assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
            assert (await push("m-1")).status_code == 204
        log = interceptor.log()
    assert "messageId=m-1" in log and "0 of 1 replicas within 200 ms" in log and "secret words" not in log
    assert await stored(replica.address) == ["m-0", "m-1"]


async def test_on_a_cluster_each_shard_waits_for_its_own_replica(settings) -> None:
    """Three conversations on three shards, appended together (one pipeline, one connection to each primary):
    each primary gets a WAIT after its own appends, on that connection. With one shard's replica frozen, only
    that shard's append fails; the others are confirmed."""
    async with acking_cluster(settings) as (cluster, client, history, names):
        primaries = client.get_primaries()
        seen: list[list[dict]] = [[] for _ in primaries]

        def keep(shard: int, command: dict) -> None:
            if command["command"].split(" ")[0] in ("FCALL", "WAIT"):
                seen[shard].append(command)

        async with redis_monitor.monitoring(primaries, keep):
            appended = await asyncio.gather(*(append(history, "m-0", name) for name in names))
            assert not any(a.duplicate for a in appended)
            await clients.wait_until(lambda: all(len(commands) >= 2 for commands in seen),
                                     what="every primary's WAIT")
        for commands in seen:
            assert [c["command"].split(" ")[0] for c in commands] == ["FCALL", "WAIT"], commands
            assert len({(c["client_address"], c["client_port"]) for c in commands}) == 1, commands

        frozen_primary = client.get_node_from_key(conversation_key(names[0], "seq"))
        replica_port = _replica_port(frozen_primary.port)
        cluster.node(replica_port).process.send_signal(processes.signal.SIGSTOP)
        try:
            results = await asyncio.gather(*(append(history, "m-1", name) for name in names),
                                           return_exceptions=True)
        finally:
            cluster.node(replica_port).process.send_signal(processes.signal.SIGCONT)
        assert isinstance(results[0], ReplicasBehind)
        assert not any(isinstance(r, Exception) for r in results[1:]), results
        again = await append(history, "m-1", names[0])
        assert again.duplicate


@contextlib.asynccontextmanager
async def acking_cluster(settings) -> AsyncIterator[tuple]:
    """A private cluster (a replica per primary) with ``REDIS_ACK_REPLICAS=1``: the cluster, the client, a history
    on it, and one conversation per primary, each appended to once (the library is loaded everywhere)."""
    settings.REDIS_ACK_REPLICAS, settings.REDIS_ACK_REPLICAS_TIMEOUT_MS = 1, 200
    with processes.redis_cluster(private=True) as cluster:
        settings.REDISHOST, settings.REDISPORT, settings.REDIS_CLUSTER = cluster.host, cluster.port, True
        client = redis_client.get_redis()
        history = RedisHistory(client)
        await client.initialize()
        names = _on_each_shard(client)
        await asyncio.gather(*(append(history, "warm-up", name) for name in names))
        try:
            yield cluster, client, history, names
        finally:
            await client.aclose()


def _on_each_shard(client) -> list[str]:
    """One conversation name per primary, the first on the first primary."""
    names: dict[str, str] = {}
    n = 0
    while len(names) < len(client.get_primaries()):
        name = f"projects/p/conversations/acked-{n}"
        names.setdefault(client.get_node_from_key(conversation_key(name, "seq")).name, name)
        n += 1
    return list(names.values())


def _replica_port(primary_port: int) -> int:
    info = processes._redis_cli("-h", "127.0.0.1", "-p", str(primary_port), "info", "replication")
    line = next(line for line in info.splitlines() if line.startswith("slave0:"))
    return int(dict(part.split("=") for part in line.split(":", 1)[1].split(","))["port"])


async def test_on_a_cluster_the_wait_rides_each_push_batch_s_own_round_trip(settings, redis_cluster, caplog) -> None:
    """MONITOR on every primary around pushes through an interceptor process with ``REDIS_ACK_REPLICAS=1``, spread
    over three shards, together and one by one: on each connection the commands run as batches of FCALLs each
    closed by one WAIT (sent in the same pipeline write, answered in the same read): no round trip beyond the
    append's own. Pushed one by one, each push is one FCALL and one WAIT. The readiness warning counts each
    primary's own replicas."""
    pushes = 30
    with processes.service_server(role="interceptor", redis=redis_cluster, REDIS_ACK_REPLICAS="1",
                                  EVENT_KEY_PREFIX=settings.EVENT_KEY_PREFIX) as interceptor:
        settings.REDISHOST, settings.REDISPORT, settings.REDIS_CLUSTER = redis_cluster.host, redis_cluster.port, True
        client = redis_client.get_redis()
        await client.initialize()
        names = _on_each_shard(client)
        async with httpx.AsyncClient(timeout=10) as http:

            async def one(name: str, message_id: str) -> None:
                body = push_body({"conversation": name}, messageId=message_id)
                response = await http.post(f"{interceptor.http_url}/new-message-event", content=body,
                                           headers={"Content-Type": "application/json"})
                assert response.status_code == 204

            for name in names:
                await one(name, "warm-up")
            primaries = client.get_primaries()
            seen: list[list[tuple[str, str]]] = [[] for _ in primaries]

            def keep(shard: int, command: dict) -> None:
                verb = command["command"].split(" ")[0].strip('"').upper()
                if verb in ("FCALL", "WAIT"):
                    seen[shard].append((command["client_port"], verb))

            async with redis_monitor.monitoring(primaries, keep):
                await asyncio.gather(*(one(names[n % 3], f"m-{n}") for n in range(pushes)))
                await clients.wait_until(lambda: sum(verb == "FCALL" for commands in seen for _, verb in commands)
                                         == pushes and all(commands[-1][1] == "WAIT" for commands in seen),
                                         what="the pushes' WAITs")
                together = [list(commands) for commands in seen]
                for commands in seen:
                    commands.clear()
                for n in range(pushes):
                    await one(names[n % 3], f"s-{n}")
                await clients.wait_until(lambda: [len(commands) for commands in seen] == [2 * (pushes // 3)] * 3,
                                         what="the pushes' WAITs")
        settings.REDIS_ACK_REPLICAS = 2  # one replica per primary: each primary is short of one
        with caplog.at_level("WARNING", logger="events.replica_ack"):
            await replica_ack.warn_if_short(client)
        assert len([r for r in caplog.records if "has 1 replica(s) connected" in r.getMessage()]) == 3
        await client.aclose()
    for commands in together:
        by_connection: dict[str, str] = {}
        for port, verb in commands:
            by_connection[port] = by_connection.get(port, "") + verb[0]
        assert all(re.fullmatch(r"(F+W)+", sequence) for sequence in by_connection.values()), by_connection
        assert sum(sequence.count("F") for sequence in by_connection.values()) == pushes // 3
    print("together: WAITs (round trips) per shard for", pushes // 3, "pushes each:",
          [sum(verb == "WAIT" for _, verb in commands) for commands in together])
    assert [[verb for _, verb in commands] for commands in seen] == [["FCALL", "WAIT"] * (pushes // 3)] * 3


async def test_readiness_stays_ready_and_warns_when_fewer_replicas_are_connected_than_asked(
        settings, primary, replica, caplog, monkeypatch) -> None:
    """Asking for two replicas of a primary that has one: /readyz still answers 200 (taking instances out of
    service would not bring a replica back) and its first check logs one WARNING saying so."""
    settings.REDISHOST, settings.REDISPORT = primary.host, primary.port
    settings.REDIS_ACK_REPLICAS = 2
    monkeypatch.setattr(health, "_redis_version_ok", False)
    with caplog.at_level("WARNING", logger="events.replica_ack"):
        response = await get("/readyz")
    assert response["status"] == 200, response["body"]
    assert [r.getMessage() for r in caplog.records if r.name == "events.replica_ack"] == [
        "REDIS_ACK_REPLICAS is 2 but the primary has 1 replica(s) connected: every push stored there is answered "
        "503 until enough replicas are back"]


async def test_on_a_cluster_an_append_asked_to_the_importing_primary_is_not_confirmed_by_the_migrating_one_s_wait(
        settings) -> None:
    """A slot half-moved (importing at another primary, its keys moved there, migrating at its owner): the append
    goes to the owner the client knows, is answered ASK and runs at the importing primary, where no WAIT of its
    pipeline followed it. With the importing primary's replica frozen, that append is not confirmed (the owner's
    replica confirming the owner's own writes says nothing of it); once the slot is moved and the client knows it,
    its redelivery is."""
    async with acking_cluster(settings) as (cluster, client, history, names):
        # Trimmed, so that every key an append names exists (an importing primary answers TRYAGAIN to a command
        # naming keys of which some are not there yet, ASKING or not).
        settings.EVENT_HISTORY_MAX_EVENTS = 10
        for n in range(11):
            await append(history, f"trim-{n}", names[0])
        layout = cluster_layout.Layout(cluster)
        slot = cluster_layout.slot_of(names[0])
        source = layout.owner(slot)
        target = layout.owner(cluster_layout.slot_of(names[1]))
        layout.command(target, "CLUSTER SETSLOT", slot, "IMPORTING", layout.node_id(source))
        layout.command(source, "CLUSTER SETSLOT", slot, "MIGRATING", layout.node_id(target))
        while keys := layout.command(source, "CLUSTER GETKEYSINSLOT", slot, 10):
            layout.command(source, "MIGRATE", cluster_layout.HOST, target, "", 0, 5000, "KEYS", *keys)
        replica_port = _replica_port(target)
        cluster.node(replica_port).process.send_signal(processes.signal.SIGSTOP)
        try:
            with pytest.raises(ReplicasBehind):
                await append(history, "m-0", names[0])
        finally:
            cluster.node(replica_port).process.send_signal(processes.signal.SIGCONT)
        for port in (target, source, *(p for p in layout.primaries() if p not in (source, target))):
            layout.command(port, "CLUSTER SETSLOT", slot, "NODE", layout.node_id(target))
        with pytest.raises(ReplicasBehind):  # answered MOVED: the client learns the new owner
            await append(history, "m-0", names[0])
        again = await append(history, "m-0", names[0])
        assert again.duplicate
