"""How many Redis shards, interceptor instances and connector instances a push rate needs, from measured costs.

Each figure is a cost per unit of work, measured on a 2-core machine: the Redis CPU a push costs the primary
that owns its conversation (``benchmarks/scale_out.py``, docs/redis-cluster.md#scaling-out), the interceptor's
CPU per push and the rate one process acknowledges within its latency target, the connector's CPU per
delivered event and per connected desktop, and the desktops one connector instance takes
(``benchmarks/sizing.py``, docs/cloud-run-sizing.md). Each kind of process is kept below a share of its core
(the headroom), the busiest Redis primary included. Pure arithmetic: no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from deployment.sizing import CONNECTOR


@dataclass(frozen=True)
class UnitCosts:
    """What one unit of work costs; the defaults are the measured figures (docs/redis-cluster.md#scaling-out)."""

    # Redis CPU on the primary owning the conversation, per push, its two desktops on two connector processes
    # (SPUBLISH to two subscribers): the highest of the primaries of a three-primary cluster, over its runs
    # (benchmarks/scale_out.py).
    # Loaded: pushes arriving together (unpaced), as they do at a busy primary, sharing its turns and the
    # interceptors' pipelines; what a primary near its headroom pays. Alone: each push the only one in its turn
    # (200/s), the most a push costs; the shards it would take are shown beside.
    redis_us_per_push: float = 68.0
    redis_us_per_lone_push: float = 183.0
    # One interceptor process: CPU per push at 1,000 pushes/s, and that rate, the highest it acknowledged with a
    # p99 within 10 ms (docs/cloud-run-sizing.md, "One interceptor process").
    interceptor_ms_per_push: float = 0.46
    interceptor_pushes_per_process: float = 1000.0
    # One connector process: CPU per delivered event (paced, heartbeats included), per connected desktop a
    # second, and the desktops an instance takes (containerConcurrency).
    connector_us_per_event: float = 190.0
    connector_us_per_desktop_second: float = 6.0
    desktops_per_connector: int = CONNECTOR.concurrency


@dataclass(frozen=True)
class Headroom:
    """The share of a core each process may use at the planned rate."""

    redis_primary: float = 0.5  # the busiest primary; Redis runs commands on one thread
    instance: float = 0.6  # Cloud Run's CPU target for scaling out


@dataclass(frozen=True)
class Load:
    """A steady push rate, spread over conversations that each get ``pushes_per_conversation`` a second."""

    pushes_per_second: float
    pushes_per_conversation: float = 5.0
    desktops_per_conversation: float = 2.0

    @property
    def conversations(self) -> int:
        return math.ceil(self.pushes_per_second / self.pushes_per_conversation)

    @property
    def desktops(self) -> int:
        return math.ceil(self.conversations * self.desktops_per_conversation)

    @property
    def deliveries_per_second(self) -> float:
        return self.pushes_per_second * self.desktops_per_conversation


@dataclass(frozen=True)
class Capacity:
    """What ``plan`` found for a load."""

    load: Load
    shards: int  # 1: a standalone instance is enough
    busiest_primary: float  # the busiest primary's CPU, share of a core, its expected excess included
    shards_if_alone: int  # as many as every push costing what it does alone would need
    interceptors: int
    connectors: int


def busiest_share(conversations: int, shards: int, *, sigmas: float = 3.0) -> float:
    """The busiest of ``shards`` primaries' load over the mean, when ``conversations`` of equal load hash evenly
    at random to them: the count on one shard is binomial (``conversations``, 1/``shards``), and the busiest is
    taken ``sigmas`` standard deviations above the mean: 1 + ``sigmas`` √((shards − 1) / conversations)."""
    if shards <= 1 or conversations <= 0:
        return 1.0
    return 1.0 + sigmas * math.sqrt((shards - 1) / conversations)


def shards_needed(load: Load, us_per_push: float, headroom: Headroom) -> tuple[int, float]:
    """The fewest shards whose busiest primary, at ``us_per_push`` of Redis CPU a push, stays within the
    headroom, and that primary's share of a core."""
    cores = load.pushes_per_second * us_per_push / 1e6
    shards = max(1, math.ceil(cores / headroom.redis_primary))
    while True:
        busiest = cores / shards * busiest_share(load.conversations, shards)
        if busiest <= headroom.redis_primary:
            return shards, busiest
        shards += 1


def interceptors_needed(load: Load, costs: UnitCosts, headroom: Headroom) -> int:
    """Interceptor instances (one process each): by the rate one acknowledges in time, and by CPU."""
    by_rate = load.pushes_per_second / costs.interceptor_pushes_per_process
    by_cpu = load.pushes_per_second * costs.interceptor_ms_per_push / 1000 / headroom.instance
    return max(1, math.ceil(by_rate), math.ceil(by_cpu))


def connectors_needed(load: Load, costs: UnitCosts, headroom: Headroom) -> int:
    """Connector instances (one process each), as docs/cloud-run-sizing.md counts them: by desktops and by CPU,
    the larger, plus one so that the next desktop does not wait for a new instance."""
    by_desktops = math.ceil(load.desktops / costs.desktops_per_connector)
    cpu = (load.deliveries_per_second * costs.connector_us_per_event
           + load.desktops * costs.connector_us_per_desktop_second) / 1e6
    return max(by_desktops, math.ceil(cpu / headroom.instance)) + 1


def plan(load: Load, costs: UnitCosts = UnitCosts(), headroom: Headroom = Headroom()) -> Capacity:
    """Shards, interceptor instances and connector instances for ``load``."""
    shards, busiest = shards_needed(load, costs.redis_us_per_push, headroom)
    return Capacity(load, shards, busiest, shards_needed(load, costs.redis_us_per_lone_push, headroom)[0],
                    interceptors_needed(load, costs, headroom), connectors_needed(load, costs, headroom))


def table(loads: list[Load], costs: UnitCosts = UnitCosts(), headroom: Headroom = Headroom()) -> list[str]:
    """``plan`` for each load, as the lines of a plain-text table."""
    lines = [f"{'pushes/s':>9} {'conversations':>13} {'desktops':>9} {'deliveries/s':>12} {'shards':>6} "
             f"{'busiest primary':>15} {'shards if alone':>15} {'interceptors':>12} {'connectors':>10}"]
    for load in loads:
        found = plan(load, costs, headroom)
        lines.append(f"{load.pushes_per_second:>9,.0f} {load.conversations:>13,} {load.desktops:>9,} "
                     f"{load.deliveries_per_second:>12,.0f} {found.shards:>6} {found.busiest_primary:>14.0%} "
                     f"{found.shards_if_alone:>15} {found.interceptors:>12} {found.connectors:>10}")
    return lines
