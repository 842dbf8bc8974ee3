"""Concurrent Dialogflow proxy calls through one real connector process.

Starts the fake Dialogflow and token endpoint of ``testing/fake_dialogflow.py``
(each Dialogflow call answered after ``--delay`` seconds), a private
redis-server (or ``AA_TEST_REDIS``) and one connector server process with a
production-like environment whose Application Default Credentials are a
service-account key file for the fake token endpoint. After one warm-up call
(which fetches the Google token), it fires ``--calls`` proxied GETs at once,
``--rounds`` times, and prints the wall time of each round, the statuses,
and how many calls the fake had in flight at the same time.

    .venv/bin/python -m benchmarks.proxy_concurrency [--calls 50 --delay 0.5 --rounds 3 --http-client aiohttp]

The load generator is aiohttp by default, httpx with ``--http-client httpx``;
on this machine both gave the same figures (the switch exists so a slow
round can be checked against the other client).

A proxy that blocked a thread or the event loop per call would take about
calls x delay (25 s for the defaults); one that overlaps them takes a little
over one delay. Everything binds to 127.0.0.1. Exit status 1 when a call
failed or the server logged an error.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx

from testing import fake_dialogflow, processes
from testing.tokens import mint_tokens

PATH = "/v2/projects/test-project/locations/global/conversations/BENCH-{index}"
SUSPICIOUS = ("ERROR", "CRITICAL", "Traceback")


class LoadClient:
    """The benchmark's HTTP client: aiohttp or httpx, one pooled session for all rounds."""

    def __init__(self, kind: str, calls: int) -> None:
        self.kind = kind
        self.aiohttp = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=calls), timeout=aiohttp.ClientTimeout(total=60)
        ) if kind == "aiohttp" else None
        self.httpx = httpx.AsyncClient(
            timeout=60.0, limits=httpx.Limits(max_connections=calls, max_keepalive_connections=calls)
        ) if kind == "httpx" else None

    async def get(self, url: str, token: str) -> int | str:
        """GET ``url``; the status, or the error's name."""
        try:
            if self.aiohttp is not None:
                async with self.aiohttp.get(url, headers={"Authorization": token}) as response:
                    await response.read()
                    return response.status
            assert self.httpx is not None
            return (await self.httpx.get(url, headers={"Authorization": token})).status_code
        except (aiohttp.ClientError, httpx.HTTPError, asyncio.TimeoutError) as error:
            return type(error).__name__

    async def close(self) -> None:
        """Close whichever session is open."""
        if self.aiohttp is not None:
            await self.aiohttp.close()
        if self.httpx is not None:
            await self.httpx.aclose()


async def fire(client: LoadClient, url: str, token: str, calls: int) -> tuple[float, dict[int | str, int]]:
    """``calls`` concurrent proxied GETs; returns the wall time and a count per status (or error name)."""
    started = time.perf_counter()
    results = await asyncio.gather(*(client.get(url + PATH.format(index=index), token) for index in range(calls)))
    elapsed = time.perf_counter() - started
    counts: dict[int | str, int] = {}
    for result in results:
        counts[result] = counts.get(result, 0) + 1
    return elapsed, counts


async def run(server: processes.Server, fake: fake_dialogflow.FakeDialogflow, args: argparse.Namespace) -> bool:
    """Warm up, then fire the rounds; True when every call answered 200."""
    (token,) = mint_tokens(["bench-agent"])
    ok = True
    client = LoadClient(args.http_client, args.calls)
    try:
        warm_up, counts = await fire(client, server.http_url, token, 1)
        print(f"warm-up (fetches the Google token): {warm_up:.3f} s, statuses {counts}")
        ok &= counts == {200: 1}
        for round_number in range(1, args.rounds + 1):
            fake.max_in_flight = 0
            elapsed, counts = await fire(client, server.http_url, token, args.calls)
            ok &= counts == {200: args.calls}
            print(f"round {round_number}: {args.calls} concurrent calls in {elapsed:.3f} s "
                  f"(serial would be {args.calls * args.delay:.1f} s); statuses {counts}; "
                  f"at most {fake.max_in_flight} in flight at Dialogflow")
    finally:
        await client.close()
    print(f"token endpoint calls: {fake.token_requests}")
    return ok


def main() -> int:
    """Parse arguments, start the servers, run, report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=50, help="concurrent proxied calls per round")
    parser.add_argument("--delay", type=float, default=0.5, help="seconds the fake Dialogflow takes per call")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of concurrent calls after the warm-up")
    parser.add_argument("--http-client", choices=("aiohttp", "httpx"), default="aiohttp", help="load generator")
    args = parser.parse_args()
    with fake_dialogflow.serve() as fake, tempfile.TemporaryDirectory(prefix="aa-bench-adc-") as directory:
        fake.delay_seconds = args.delay
        key = fake.write_key_file(Path(directory) / "key.json")
        with processes.redis_server() as redis, processes.service_server(
            role="connector", redis=redis, GOOGLE_APPLICATION_CREDENTIALS=str(key), DIALOGFLOW_API_ROOT=fake.url,
        ) as server:
            ok = asyncio.run(run(server, fake, args))
            log = server.log()
    problems = [line for line in log.splitlines() if any(word in line for word in SUSPICIOUS)]
    for line in problems:
        print(f"server log: {line}")
    return 0 if ok and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
