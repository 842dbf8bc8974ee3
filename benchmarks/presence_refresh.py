"""How long a connector's presence-key refresh holds its event loop, with thousands of conversations joined.

Every third of ``PRESENCE_KEY_TTL_SECONDS`` the hub renews the presence keys of
every conversation its desktops are in (``connector.desktops.presence.refresh``): at
10,000 desktops in 5,000 conversations, 5,000 of them. Events the process
should be sending meanwhile wait for the loop, so the figure that matters is
the loop's lag, not the refresh's duration: a probe task sleeps 1 ms over
and over while the refresh runs, and the run prints how late it woke (p50,
p99, max; the 1 ms itself included). Against a private redis-server on
loopback; the first refresh of a run loads the script (printed, not hidden).

    .venv/bin/python -m benchmarks.presence_refresh [--conversations 5000 --rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time


def _lag_line(lags: list[float]) -> str:
    lags = sorted(lags)
    pick = lambda share: lags[min(len(lags) - 1, int(len(lags) * share))] * 1000  # noqa: E731
    return f"loop lag p50 {pick(0.5):.2f} p99 {pick(0.99):.2f} max {lags[-1] * 1000:.2f} ms ({len(lags)} wake-ups)"


async def _measure(conversations: int, rounds: int) -> None:
    from connector.desktops import presence
    from events import redis_client

    names = [f"projects/bench/conversations/presence-{number}" for number in range(conversations)]
    lags: list[float] = []

    async def probe() -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - started)

    prober = asyncio.create_task(probe())
    try:
        await asyncio.sleep(0.05)
        for number in range(1, rounds + 1):
            lags.clear()
            started = time.perf_counter()
            await presence.refresh(names)
            took = (time.perf_counter() - started) * 1000
            print(f"refresh {number} of {conversations} conversations: {took:.1f} ms; {_lag_line(lags)}", flush=True)
    finally:
        prober.cancel()
        client = redis_client.get_redis()
        for start in range(0, len(names), 500):
            await client.delete(*(key for name in names[start:start + 500] for key in presence._keys(name)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from testing import processes

    with processes.redis_server(private=True) as redis:
        os.environ.update(DJANGO_SETTINGS_MODULE="aa_site.settings", DEVELOPMENT_MODE="true",
                          REDISHOST=redis.host, REDISPORT=str(redis.port))
        import django
        import uvloop

        django.setup()
        uvloop.run(_measure(args.conversations, args.rounds))


if __name__ == "__main__":
    main()
