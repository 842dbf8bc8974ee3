"""Where a conversation's keys live on a private local Redis Cluster (``processes.redis_cluster``), and the faults
a scenario makes to it: a primary killed (then its replica promoted), a slot moved to another primary.

Every key of a conversation carries its name as hash tag (``events.history.conversation_key``), so its slot is
the slot of the name itself: no Django settings are needed to place one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from testing import processes

HOST = "127.0.0.1"


def slot_of(conversation: str) -> int:
    """The slot of every key (and the sharded channel) of ``conversation``."""
    return key_slot(conversation.encode())


@dataclass(frozen=True)
class SlotRange:
    start: int
    end: int
    primary: int  # port
    replicas: tuple[int, ...]


class Layout:
    """A private cluster's shape as its live nodes report it, and the changes a fault scenario makes."""

    def __init__(self, cluster: processes.RedisClusterAddress) -> None:
        self.cluster = cluster

    def live_ports(self) -> list[int]:
        return [node.port for node in self.cluster.nodes if node.process is not None and node.process.poll() is None]

    def command(self, port: int, *arguments: object) -> object:
        with redis.Redis(host=HOST, port=port, socket_timeout=5, decode_responses=True) as client:
            return client.execute_command(*arguments)

    def ranges(self) -> list[SlotRange]:
        """``CLUSTER SLOTS`` as the first live node sees it."""
        answer = self.command(self.live_ports()[0], "CLUSTER SLOTS")
        return [SlotRange(int(start), int(end), int(primary[1]), tuple(int(node[1]) for node in replicas))
                for start, end, primary, *replicas in answer]

    def owner(self, slot: int) -> int:
        """The port of the primary serving ``slot``."""
        return next(r.primary for r in self.ranges() if r.start <= slot <= r.end)

    def primaries(self) -> list[int]:
        return sorted({r.primary for r in self.ranges()})

    def node_id(self, port: int) -> str:
        return str(self.command(port, "CLUSTER MYID"))

    def on_each_shard(self, per_shard: int, label: str) -> dict[int, list[str]]:
        """``per_shard`` new conversation names whose keys live on each primary (by port)."""
        found: dict[int, list[str]] = {port: [] for port in self.primaries()}
        ranges = self.ranges()
        run = uuid.uuid4().hex[:6]
        number = 0
        while any(len(names) < per_shard for names in found.values()):
            name = f"projects/{processes.TEST_PROJECT}/conversations/{label}-{run}-{number}"
            number += 1
            slot = slot_of(name)
            primary = next(r.primary for r in ranges if r.start <= slot <= r.end)
            if len(found[primary]) < per_shard:
                found[primary].append(name)
        return found

    def kill_primary(self, port: int) -> int:
        """SIGKILL the primary on ``port``; the port of its replica (which takes over after the node timeout)."""
        (replica, *_) = next(r.replicas for r in self.ranges() if r.primary == port)
        self.cluster.node(port).kill()
        return replica

    def wait_for_failover(self, dead: int, replica: int, *, timeout: float = 60.0) -> None:
        """Block until every live node says ``cluster_state:ok`` and names ``replica`` as primary, ``dead`` as
        none (clients learn the new layout from any of them)."""
        deadline = time.monotonic() + timeout
        while not self._failed_over(dead, replica):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the replica on {replica} did not take over from {dead} after {timeout}s")
            time.sleep(0.05)

    def restart_as_replica(self, port: int, *, timeout: float = 60.0) -> None:
        """Start the killed node on ``port`` again and block until it is its successor's replica, in sync (as a
        replaced node rejoins a managed cluster)."""
        self.cluster.node(port).start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                role = self.command(port, "ROLE")
                if role[0] == "slave" and role[3] == "connected":
                    return
            except (redis.RedisError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the node on {port} did not come back as a replica after {timeout}s")
            time.sleep(0.05)

    def _failed_over(self, dead: int, replica: int) -> bool:
        try:
            for port in self.live_ports():
                if self.command(port, "CLUSTER INFO").get("cluster_state") != "ok":
                    return False
                primaries = {int(primary[1]) for _, _, primary, *_ in self.command(port, "CLUSTER SLOTS")}
                if dead in primaries or replica not in primaries:
                    return False
        except (redis.RedisError, OSError):
            return False
        return True

    def move_slot(self, slot: int, target: int, *, pause: float = 0.0,
                  between: Callable[[], None] | None = None) -> int:
        """Move ``slot`` to the primary on ``target`` as ``redis-cli --cluster reshard`` does: importing there,
        migrating at its owner, its keys moved one ``MIGRATE`` at a time (``pause`` seconds between them: the
        slot stays half-moved meanwhile), then the new owner announced to the target first (it bumps its
        configuration epoch, so every node learns of it), the source, and every other primary. How many keys moved.
        """
        source = self.owner(slot)
        source_id, target_id = self.node_id(source), self.node_id(target)
        self.command(target, "CLUSTER SETSLOT", slot, "IMPORTING", source_id)
        self.command(source, "CLUSTER SETSLOT", slot, "MIGRATING", target_id)
        moved = 0
        while keys := self.command(source, "CLUSTER GETKEYSINSLOT", slot, 1):
            self.command(source, "MIGRATE", HOST, target, "", 0, 5000, "KEYS", *keys)
            moved += len(keys)
            if between is not None:
                between()
            time.sleep(pause)
        for port in (target, source, *(p for p in self.primaries() if p not in (source, target))):
            self.command(port, "CLUSTER SETSLOT", slot, "NODE", target_id)
        return moved


async def move_keyless_slot(client: RedisCluster, key: str) -> str:
    """Move the slot of ``key``, which holds no keys, to another primary of the cluster ``client`` knows, as
    ``Layout.move_slot`` does (no ``MIGRATE``): its owner ends the sharded subscriptions of its channels. The
    new owner's name (host:port)."""
    slot = client.keyslot(key)
    owner = client.get_node_from_key(key)
    target = next(node for node in client.get_primaries() if node.name != owner.name)
    target_id = await client.execute_command("CLUSTER MYID", target_nodes=target)
    owner_id = await client.execute_command("CLUSTER MYID", target_nodes=owner)
    await client.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", owner_id, target_nodes=target)
    await client.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id, target_nodes=owner)
    for node in (target, owner, *(n for n in client.get_primaries() if n.name not in (owner.name, target.name))):
        await client.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id, target_nodes=node)
    return target.name
