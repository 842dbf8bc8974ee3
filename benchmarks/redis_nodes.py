"""Each Redis node's own figures for ``benchmarks.scale_out``: its role, its CPU and command counters, and which
of the benchmark's conversations (with how many appends) each primary holds.

CPU is ``INFO cpu``'s ``used_cpu_sys`` + ``used_cpu_user`` (every thread of the redis-server process);
command time is ``INFO commandstats``' ``usec`` and ``calls``, where a command run inside a function counts
under its own name too (an ``SPUBLISH`` inside the append's ``FCALL``), its time also inside the ``FCALL``'s.
Where a conversation lives is read from Redis itself (its ``:seq`` hash, found by ``SCAN`` on each primary),
not computed from the slot map.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis

from testing import processes

COMMANDS = ("fcall", "spublish")


@dataclass(frozen=True)
class Node:
    """One redis-server: its port, ``primary`` or ``replica``, and the port of the primary whose shard it is in."""

    port: int
    role: str
    shard: int


@dataclass(frozen=True)
class Counters:
    """A node's counters at one moment (or the difference between two moments)."""

    seconds: float  # time.monotonic() (a difference: the wall time between)
    cpu: float  # used_cpu_sys + used_cpu_user, seconds
    commands: dict[str, tuple[int, int]]  # command -> (calls, usec)

    def since(self, earlier: Counters) -> Counters:
        return Counters(self.seconds - earlier.seconds, self.cpu - earlier.cpu,
                        {name: (calls - earlier.commands.get(name, (0, 0))[0],
                                usec - earlier.commands.get(name, (0, 0))[1])
                         for name, (calls, usec) in self.commands.items()})


def _client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)


def nodes(address: processes.RedisAddress | processes.RedisClusterAddress) -> list[Node]:
    """Every node of a private standalone Redis (one primary) or a private cluster, primaries first."""
    if not isinstance(address, processes.RedisClusterAddress):
        return [Node(address.port, "primary", address.port)]
    with _client(address.port) as client:
        # redis-py parses the reply: "host:port" -> {"node_id", "flags", "master_id", ...}
        described = client.execute_command("CLUSTER NODES")
    ports = {details["node_id"]: int(endpoint.rsplit(":", 1)[1]) for endpoint, details in described.items()}
    result = []
    for details in described.values():
        port = ports[details["node_id"]]
        if "master" in details["flags"].split(","):
            result.append(Node(port, "primary", port))
        else:
            result.append(Node(port, "replica", ports[details["master_id"]]))
    return sorted(result, key=lambda node: (node.role != "primary", node.shard, node.port))


def snapshot(every: list[Node]) -> dict[int, Counters]:
    """Each node's counters now (port -> counters)."""
    result = {}
    for node in every:
        with _client(node.port) as client:
            cpu = client.info("cpu")
            stats = client.info("commandstats")
        result[node.port] = Counters(
            time.monotonic(), float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]),
            {name: (int(stats[f"cmdstat_{name}"]["calls"]), int(stats[f"cmdstat_{name}"]["usec"]))
             for name in COMMANDS if f"cmdstat_{name}" in stats})
    return result


def changes(after: dict[int, Counters], before: dict[int, Counters]) -> dict[int, Counters]:
    """Per node, what its counters did between two snapshots."""
    return {port: counters.since(before[port]) for port, counters in after.items()}


def conversations_by_primary(every: list[Node], match: str) -> dict[int, dict[str, int]]:
    """Per primary port: each conversation whose sequence key matches ``match`` (a ``SCAN`` pattern) -> its
    sequence number (events appended to it, when one epoch holds them all)."""
    result: dict[int, dict[str, int]] = {}
    for node in every:
        if node.role != "primary":
            continue
        held = result.setdefault(node.port, {})
        with _client(node.port) as client:
            for key in client.scan_iter(match=match, count=1000):
                name = key.decode()
                held[name[name.index("{") + 1:name.rindex("}")]] = int(client.hget(key, "seq") or 0)
    return result
