"""The capacity model's arithmetic (``deployment/capacity.py``): from costs per unit to shards and instances."""

from __future__ import annotations

import math

import pytest

from deployment import capacity

COSTS = capacity.UnitCosts(redis_us_per_push=100.0, redis_us_per_lone_push=200.0, interceptor_ms_per_push=0.46,
                           interceptor_pushes_per_process=1000, connector_us_per_event=190.0,
                           connector_us_per_desktop_second=6.0, desktops_per_connector=1000)


def test_a_load_counts_its_conversations_desktops_and_deliveries() -> None:
    load = capacity.Load(10_000, pushes_per_conversation=5, desktops_per_conversation=2)
    assert (load.conversations, load.desktops, load.deliveries_per_second) == (2000, 4000, 20_000)
    assert capacity.Load(7, pushes_per_conversation=5).conversations == 2  # a part-busy conversation is one


def test_the_busiest_shard_is_three_standard_deviations_above_the_mean() -> None:
    assert capacity.busiest_share(200, 1) == 1.0
    assert capacity.busiest_share(100, 5) == pytest.approx(1 + 3 * math.sqrt(4 / 100))  # 1.6
    assert capacity.busiest_share(10_000, 3) < capacity.busiest_share(100, 3)  # more conversations: more even


def test_shards_grow_until_the_busiest_primary_is_within_its_headroom() -> None:
    headroom = capacity.Headroom(redis_primary=0.5)
    # 1,000/s x 100 us = 0.1 of a core: one primary.
    assert capacity.shards_needed(capacity.Load(1000), 100.0, headroom) == (1, pytest.approx(0.1))
    # 10,000/s = one core: two shards would hold 0.5 each on average, but the busier of them is above it
    # (0.5 x (1 + 3 sqrt(1/2000)) = 0.534); three hold 1/3 x (1 + 3 sqrt(2/2000)) = 0.365.
    shards, busiest = capacity.shards_needed(capacity.Load(10_000), 100.0, headroom)
    assert shards == 3 and busiest == pytest.approx(1 / 3 * (1 + 3 * math.sqrt(2 / 2000)))


def test_interceptors_by_rate_and_by_cpu_whichever_needs_more() -> None:
    headroom = capacity.Headroom(instance=0.6)
    assert capacity.interceptors_needed(capacity.Load(10_000), COSTS, headroom) == 10  # by rate; CPU needs 7.67
    heavy = capacity.UnitCosts(interceptor_ms_per_push=1.2, interceptor_pushes_per_process=1000)
    assert capacity.interceptors_needed(capacity.Load(10_000), heavy, headroom) == 20  # 12 CPUs at 60%
    assert capacity.interceptors_needed(capacity.Load(10), COSTS, headroom) == 1


def test_connectors_by_desktops_and_by_cpu_plus_one() -> None:
    headroom = capacity.Headroom(instance=0.6)
    # 4,000 desktops: 4 by count; (20,000 x 190 us + 4,000 x 6 us) = 3.824 CPUs, 6.37 at 60%: 7; one more: 8.
    assert capacity.connectors_needed(capacity.Load(10_000), COSTS, headroom) == 8
    # 100 pushes/s: 40 desktops, 0.038 CPUs: one instance, and one spare.
    assert capacity.connectors_needed(capacity.Load(100), COSTS, headroom) == 2


def test_plan_and_its_table() -> None:
    found = capacity.plan(capacity.Load(10_000), COSTS)
    # At 200 us a push: two cores, 0.5 x (1 + 3 sqrt(3/2000)) = 0.558 on the busiest of four; five.
    assert (found.shards, found.shards_if_alone, found.interceptors, found.connectors) == (3, 5, 10, 8)
    lines = capacity.table([capacity.Load(1000), capacity.Load(10_000)], COSTS)
    assert len(lines) == 3 and lines[0].split()[0] == "pushes/s"
    assert lines[2].split() == ["10,000", "2,000", "4,000", "20,000", "3", "36%", "5", "10", "8"]
