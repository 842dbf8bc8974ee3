"""The fault scenarios of ``benchmarks/faults.py``, each run small against real processes.

Redis stopped and started again mid-stream, a connector killed with SIGKILL
under a recovering npm socket.io-client, churn of many desktops, and Pub/Sub
redeliveries (some concurrent with the original): nothing lost, nothing
duplicated, nothing left behind in Redis beyond its expiry.
"""

from __future__ import annotations

import pytest

from benchmarks import faults

pytestmark = pytest.mark.faults


def assert_clean(tally: faults.Tally) -> None:
    assert tally.pushed > 0 and tally.expected > 0, tally.line()
    assert tally.ok, tally.line()


async def test_a_redis_outage_mid_stream_loses_and_repeats_nothing() -> None:
    tally = await faults.redis_outage(pushes=60)
    assert tally.attempts > tally.pushed, "the outage should have made the interceptor answer 503"
    assert_clean(tally)


async def test_a_killed_connector_s_desktop_recovers_everything_on_another() -> None:
    assert_clean(await faults.connector_killed(pushes=40))


async def test_churn_leaves_nothing_behind() -> None:
    assert_clean(await faults.churn(desktops=100))


async def test_redeliveries_never_reach_a_desktop_twice() -> None:
    tally = await faults.redeliveries(pushes=200)
    assert tally.attempts > tally.pushed
    assert_clean(tally)
