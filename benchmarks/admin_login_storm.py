"""Push-to-desktop latency while the admin's login is stormed with wrong passwords, with and without its bounds.

Per phase, fresh servers: a private redis-server (or ``AA_TEST_REDIS``), one interceptor and one connector
(the image's server, the real PBKDF2 hasher, a migrated SQLite admin database), ``--desktops`` Socket.IO
desktops on the connector, and pushes POSTed to the interceptor one at a time at ``--rate`` per second for
``--seconds``. Meanwhile ``--logins`` clients each POST wrong passwords to ``/admin/login/`` in a loop. Phases:

- ``quiet``: no storm (the reference);
- ``unbounded``: the storm against a connector whose limits are off (``ADMIN_LOGIN_CONCURRENCY=64``, lockout
  limits out of reach): every login's password is checked, eight at once, as before the throttle;
- ``one address``: the defaults, the storm from one address: locked out after ``ADMIN_LOGIN_FAILURES_PER_ADDRESS``;
- ``rotating``: the defaults, each login from a new address and name (``TRUSTED_PROXY_HOPS=1``): no lockout
  applies, so only the one-check-at-a-time bound protects the pushes.

    .venv/bin/python -m benchmarks.admin_login_storm [--desktops 4 --rate 20 --seconds 10 --logins 8]

Prints per phase the latency figures (ms, POST start to the desktop's receipt), the logins answered by
status, and the password checks per second. Everything binds to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from benchmarks.socketio_delivery import connect_desktop, disconnect_all, latency_figures, push_envelope
from testing import processes
from testing.tokens import mint_tokens

CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
UNBOUNDED = {"ADMIN_LOGIN_CONCURRENCY": "64", "ADMIN_LOGIN_FAILURES_PER_USER": "1000",
             "ADMIN_LOGIN_FAILURES_PER_ADDRESS": "100000"}
PHASES = {"quiet": (0, {}, False), "unbounded": (None, UNBOUNDED, False), "one address": (None, {}, False),
          "rotating": (None, {}, True)}


async def storm(url: str, *, logins: int, rotate: bool, stop: asyncio.Event) -> collections.Counter:
    """``logins`` clients posting wrong passwords until ``stop``; the answers by status."""
    answered: collections.Counter = collections.Counter()
    numbers = itertools.count(1)

    async def one() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            form = await client.get("/admin/login/")
            token = CSRF_FIELD.search(form.text).group(1)
            while not stop.is_set():
                number = next(numbers)
                address = f"198.18.{number // 250 % 250}.{number % 250 + 1}" if rotate else "198.18.0.1"
                answer = await client.post("/admin/login/", headers={"X-Forwarded-For": address}, data={
                    "username": f"guess-{number}" if rotate else "operator", "password": "wrong",
                    "csrfmiddlewaretoken": token})
                answered[answer.status_code] += 1

    await asyncio.gather(*(one() for _ in range(logins)))
    return answered


async def phase(args: argparse.Namespace, token: str, *, logins: int, settings: dict[str, str],
                rotate: bool) -> tuple[list[float], collections.Counter, float]:
    """One phase on fresh servers: (push latencies in ms, logins answered by status, seconds it lasted)."""
    with tempfile.TemporaryDirectory(prefix="aa-login-storm-") as directory, processes.redis_server() as redis:
        prefix = {"EVENT_KEY_PREFIX": f"storm-{uuid.uuid4().hex[:6]}:"}
        extra = {"SQLITE_PATH": str(Path(directory) / "admin.sqlite3"), "ADMIN_SECURE_COOKIES": "false",
                 "TRUSTED_PROXY_HOPS": "1", **prefix, **settings}
        migrate = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=processes.REPOSITORY,
                                 env=processes.server_environment(role="connector", redis=redis, **extra),
                                 capture_output=True, text=True, timeout=180)
        if migrate.returncode:
            raise RuntimeError(migrate.stderr)
        with processes.service_server(role="interceptor", redis=redis, **prefix) as interceptor, \
                processes.service_server(role="connector", redis=redis, **extra) as connector:
            desktops = [await connect_desktop(index, url=connector.http_url, token=token, conversation=0,
                                              timeout=args.timeout) for index in range(args.desktops)]
            stop = asyncio.Event()
            stormed = asyncio.create_task(storm(connector.http_url, logins=logins, rotate=rotate, stop=stop))
            started: dict[str, float] = {}
            began = time.perf_counter()
            try:
                await asyncio.sleep(1.0)  # the storm under way before the first push
                async with httpx.AsyncClient(timeout=args.timeout) as client:
                    for sequence in range(int(args.rate * args.seconds)):
                        message_id = f"storm-{uuid.uuid4().hex[:12]}"
                        started[message_id] = time.perf_counter()
                        body = push_envelope(sequence=sequence, conversation=0, message_id=message_id)
                        await client.post(f"{interceptor.http_url}/new-message-event", content=body,
                                          headers={"Content-Type": "application/json"})
                        await asyncio.sleep(max(0.0, started[message_id] + 1 / args.rate - time.perf_counter()))
                await asyncio.sleep(1.0)  # the last deliveries
            finally:
                stop.set()
                answered = await stormed if logins else collections.Counter()
                lasted = time.perf_counter() - began
                await disconnect_all(desktops, timeout=args.timeout)
    latencies = [(received - started[message_id]) * 1000 for desktop in desktops
                 for message_id, _, received in desktop.received if message_id in started]
    return latencies, answered, lasted


async def run(args: argparse.Namespace) -> None:
    (token,) = mint_tokens(["storm-agent"])
    print(f"desktops={args.desktops} pushes={args.rate}/s for {args.seconds} s, storm of {args.logins} clients")
    for name in args.phases:
        logins, settings, rotate = PHASES[name]
        latencies, answered, lasted = await phase(args, token, logins=args.logins if logins is None else logins,
                                                  settings=settings, rotate=rotate)
        checked = answered.get(200, 0)
        statuses = " ".join(f"{status}:{count}" for status, count in sorted(answered.items())) or "-"
        print(f"{name:<12} push-to-desktop ms  {latency_figures(latencies)}  ({len(latencies)} deliveries) | "
              f"logins answered {statuses} ({checked / lasted:.1f} password checks/s)")


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--desktops", type=int, default=4, help="Socket.IO desktops in the conversation (4)")
    parser.add_argument("--rate", type=float, default=20.0, help="pushes per second (20)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long pushes go on per phase (10)")
    parser.add_argument("--logins", type=int, default=8, help="clients posting wrong passwords at once (8)")
    parser.add_argument("--timeout", type=float, default=15.0, help="per connect/join/POST timeout, s")
    parser.add_argument("--phases", nargs="+", default=list(PHASES), choices=list(PHASES), metavar="PHASE",
                        help=f"which phases, in order ({', '.join(PHASES)})")
    args = parser.parse_args(argv)
    if min(args.desktops, args.logins) < 1 or args.rate <= 0 or args.seconds <= 0:
        parser.error("counts, rate and seconds must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(parse_arguments(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
