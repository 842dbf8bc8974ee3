"""``POST /register`` throughput of one real connector process against the Skip provider.

Starts a private redis-server (or ``AA_TEST_REDIS``) and one connector server
process (``testing/processes.py``) in development mode with ``AUTH_OPTION=Skip``
(which judges no token, so the figure is the service's own cost: routing,
authentication, the Redis rate-limit window, the body, signing the JWT) and a
rate limit far above the load, so every request still runs the limiter's Lua
script in Redis. After ``--warm-up`` requests it sends ``--requests``
registrations with at most ``--concurrency`` in flight from one aiohttp
session and prints requests per second, the p50/p99 round trip and the
server process's CPU time per request (from ``/proc``; on a machine shared
with other work it varies far less than the wall-clock figures).

    .venv/bin/python -m benchmarks.register_rate [--requests 3000 --concurrency 16]

Everything binds to 127.0.0.1. Exit status 1 when a request did not answer
200 with a token or the server logged an error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import aiohttp

from testing import processes
from testing.percentiles import percentile

SUSPICIOUS = ("ERROR", "CRITICAL", "Traceback")
# Far above what one process can answer in a minute: the limiter runs but never refuses.
RATE_LIMIT = "100000000/minute"


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` so far (Linux ``/proc``); NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    # After the command name: state is field 3, utime 14 and stime 15 (1-based), so indexes 11 and 12 here.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def register(session: aiohttp.ClientSession, url: str, index: int) -> tuple[float, int | str]:
    """One registration; its round trip in seconds and its status (or the error's name, or "no token")."""
    started = time.perf_counter()
    try:
        async with session.post(
            url, headers={"Authorization": "any-token"}, json={"gcp_agent_assist_user": f"bench-{index}"}
        ) as response:
            body = await response.json(content_type=None)
            status: int | str = response.status
            if status == 200 and not (isinstance(body, dict) and body.get("token")):
                status = "no token"
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as error:
        status = type(error).__name__
    return time.perf_counter() - started, status


async def hammer(url: str, requests: int, concurrency: int) -> tuple[float, list[float], dict[int | str, int]]:
    """``requests`` registrations, ``concurrency`` in flight; wall time, round trips, count per status."""
    timings: list[float] = []
    counts: dict[int | str, int] = {}
    next_index = iter(range(requests))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def worker() -> None:
            for index in next_index:
                elapsed, status = await register(session, url, index)
                timings.append(elapsed)
                counts[status] = counts.get(status, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return wall, timings, counts


async def run(server: processes.Server, args: argparse.Namespace) -> bool:
    """Warm up, then measure; True when every request answered 200 with a token."""
    url = f"{server.http_url}/register"
    _, _, warm = await hammer(url, args.warm_up, args.concurrency)
    cpu_before = cpu_seconds(server.process.pid)
    wall, timings, counts = await hammer(url, args.requests, args.concurrency)
    cpu = cpu_seconds(server.process.pid) - cpu_before
    print(f"warm-up: {args.warm_up} requests, statuses {warm}")
    print(f"{args.requests} POST /register, {args.concurrency} in flight: {wall:.2f} s, "
          f"{args.requests / wall:.0f} requests/s; statuses {counts}")
    print(f"round trip p50 {percentile(timings, 0.50) * 1000:.1f} ms, p99 {percentile(timings, 0.99) * 1000:.1f} ms; "
          f"server CPU {cpu * 1000 / args.requests:.2f} ms per request")
    return warm == {200: args.warm_up} and counts == {200: args.requests}


def main() -> int:
    """Parse arguments, start Redis and the connector, run, report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000, help="measured registrations")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--warm-up", type=int, default=200, help="registrations before measuring")
    args = parser.parse_args()
    with processes.redis_server() as redis, processes.service_server(
        role="connector", redis=redis, DEVELOPMENT_MODE="true", AUTH_OPTION="Skip", REGISTER_RATE_LIMIT=RATE_LIMIT,
    ) as server:
        ok = asyncio.run(run(server, args))
        log = server.log()
    problems = [line for line in log.splitlines() if any(word in line for word in SUSPICIOUS)]
    for line in problems[:20]:
        print(f"server log: {line}")
    return 0 if ok and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
