"""One connector holding many Socket.IO desktops gets SIGTERM: how long it takes, and what it leaves in Redis.

    .venv/bin/python -m benchmarks.drain [--desktops 10000] [--servers-from PATH]

The desktops (the stock npm socket.io-client, ``tests/node/fleet.mjs``, over the
websocket transport, ten to a conversation) connect straight to one connector
on a private Redis and join. Then the connector gets SIGTERM, and SIGKILL 10 s
later if it is still running, as Cloud Run does. Printed: the seconds until it
exited, its drain line, how many session records end with
their recovery window (``SOCKETIO_RECOVERY_SECONDS``) and how many kept their
connected lifetime (their recovery window never started: they linger until
the token's lifetime ends), and its log lines saying "No connection available"
(the Redis pool ran out) or "Could not start a session's recovery window".
``--servers-from`` runs the connector from another checkout (the same figures before the drain existed).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis.asyncio as redis

from testing import processes
from testing.fault_scenarios import conversations
from testing.rolling_deploy import POOL_EXHAUSTED, connector_on, node_fleet, until
from testing.tokens import mint_tokens

RECOVERY_SECONDS = 120  # the default SOCKETIO_RECOVERY_SECONDS
KILL_AFTER_SECONDS = 10  # Cloud Run's SIGKILL after SIGTERM
WINDOW_NOT_STARTED = "Could not start a session's recovery window"


async def record_lifetimes(store: processes.RedisAddress) -> tuple[int, int]:
    """Session records ending within the recovery window, and those ending later."""
    inspector = redis.Redis(host=store.host, port=store.port)
    try:
        keys = [key async for key in inspector.scan_iter("aa:session:*", count=1000)]
        pipeline = inspector.pipeline(transaction=False)
        for key in keys:
            pipeline.ttl(key)
        ttls = await pipeline.execute() if keys else []
    finally:
        await inspector.aclose()
    return sum(0 < ttl <= RECOVERY_SECONDS for ttl in ttls), sum(ttl > RECOVERY_SECONDS for ttl in ttls)


async def run(desktops: int, tree: Path) -> int:
    names = conversations(max(1, desktops // 10))
    tokens = mint_tokens([f"agent-{number}" for number in range(desktops)])
    log_path = Path(tempfile.mkstemp(prefix="aa-drain-", suffix=".log")[1])
    port = processes.free_port()
    loop = asyncio.get_running_loop()
    with processes.redis_server(private=True) as store, connector_on(port, store, tree, log_path) as connector:
        fleet_desktops = [{"token": tokens[number], "join": names[number % len(names)], "transports": ["websocket"]}
                          for number in range(desktops)]
        async with node_fleet(f"http://127.0.0.1:{port}", fleet_desktops, spacing_ms=2) as fleet:
            started = time.monotonic()
            joined = await until(lambda: len(fleet.of_kind("joined")) >= desktops, timeout=600)
            print(f"{len(fleet.of_kind('joined'))} of {desktops} desktops joined in {time.monotonic() - started:.1f} s"
                  f"{'' if joined else ' (gave up waiting)'}", flush=True)
            within, beyond = await record_lifetimes(store)
            print(f"before SIGTERM: {within} records end within the recovery window, {beyond} later")
            stopped_at = time.monotonic()
            connector.send_signal(signal.SIGTERM)
            try:
                await loop.run_in_executor(None, connector.wait, KILL_AFTER_SECONDS)
            except subprocess.TimeoutExpired:
                connector.kill()  # as Cloud Run does: whatever it had not written by now is never written
                await loop.run_in_executor(None, connector.wait)
            exited = time.monotonic() - stopped_at
            within, beyond = await record_lifetimes(store)
    log = log_path.read_text(errors="replace")
    log_path.unlink(missing_ok=True)
    errors = sum(" ERROR " in line or '"ERROR"' in line for line in log.splitlines())
    drain_line = next((line for line in log.splitlines() if "Drained for shutdown" in line), "(no drain line)")
    how = "SIGKILL at 10 s, as Cloud Run" if connector.returncode == -signal.SIGKILL else "exited"
    print(f"exit status {connector.returncode} ({how}), {exited:.2f} s after SIGTERM\n"
          f"after: {within} records end within the recovery window, {beyond} kept their connected lifetime\n"
          f"'{POOL_EXHAUSTED}': {log.count(POOL_EXHAUSTED)} lines; '{WINDOW_NOT_STARTED}': "
          f"{log.count(WINDOW_NOT_STARTED)} lines; ERROR lines: {errors}\n"
          f"{drain_line}")
    return 0 if connector.returncode != -signal.SIGKILL and not beyond and POOL_EXHAUSTED not in log else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--desktops", type=int, default=10_000)
    parser.add_argument("--servers-from", type=Path, default=processes.REPOSITORY)
    args = parser.parse_args(argv)
    return asyncio.run(run(args.desktops, args.servers_from.resolve()))


if __name__ == "__main__":
    sys.exit(main())
