"""What ``REDIS_ACK_REPLICAS=1`` costs a push: throughput, acknowledgement latency and interceptor CPU, 0 vs 1.

    .venv/bin/python -m benchmarks.ack_replicas [--runs 3] [--pushes 2000] [--in-flight 32] [--sequential 300]

A private redis-server with one real replica (``--replicaof``, on the same
machine: a loopback link, so the figures show what the WAIT itself costs, not
a network between zones), and two interceptor processes (the image's server,
``IMAGE_ENV``) on it, one with ``REDIS_ACK_REPLICAS=0`` and one with ``1``;
runs alternate between them (0 1 0 1 ...). Each run posts ``--pushes``
pushes unpaced with ``--in-flight`` in flight, to 100 conversations, then
``--sequential`` pushes one at a time (after 300 pushes to each as a warm-up). Printed per run: pushes/s unpaced,
p50 and p99 of a push's acknowledgement unpaced and one at a time, and the
CPU microseconds per push (from ``/proc``) of the interceptor, the Redis
primary and its replica (the WAIT's work is theirs). Every push must be
answered 204.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import aiohttp

from benchmarks.register_rate import cpu_seconds
from benchmarks.scenarios import run_pushes
from interceptor import push_samples
from testing import processes

CONVERSATIONS = 100


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _redis_pid(address: processes.RedisAddress) -> int:
    info = processes._redis_cli("-h", address.host, "-p", str(address.port), "info", "server")
    return int(next(line for line in info.splitlines() if line.startswith("process_id:")).split(":")[1])


async def _run(server: processes.Server, label: str, pushes: int, in_flight: int, sequential: int,
               redis_pids: tuple[int, ...] = ()) -> dict:
    """One run against ``server``: unpaced then one at a time; its figures."""
    headers = {"Content-Type": "application/json"}
    statuses: dict[int, int] = {}
    connector = aiohttp.TCPConnector(limit=in_flight)
    async with aiohttp.ClientSession(server.http_url, connector=connector) as session:

        async def post(sequence: int, timings: list[float]) -> None:
            notification = {"conversation": f"projects/p/conversations/bench-{sequence % CONVERSATIONS}",
                            "text": "x" * 200}
            body = push_samples.encode(push_samples.push_envelope(
                notification, subscription="projects/p/subscriptions/s", messageId=f"{label}-{sequence}"))
            began = time.perf_counter()
            async with session.post("/new-message-event", data=body, headers=headers) as response:
                await response.read()
            timings.append(time.perf_counter() - began)
            statuses[response.status] = statuses.get(response.status, 0) + 1

        unpaced: list[float] = []
        cpu = cpu_seconds(server.process.pid)
        redis_cpu = [cpu_seconds(pid) for pid in redis_pids]
        began = time.monotonic()
        await run_pushes(lambda n: post(n, unpaced), pushes, in_flight=in_flight, rate=None)
        seconds = time.monotonic() - began
        cpu = cpu_seconds(server.process.pid) - cpu
        redis_cpu = [cpu_seconds(pid) - before for pid, before in zip(redis_pids, redis_cpu)]
        one_by_one: list[float] = []
        for n in range(sequential):
            await post(pushes + n, one_by_one)
    return {"rate": pushes / seconds, "p50": _percentile(unpaced, 0.5), "p99": _percentile(unpaced, 0.99),
            "seq_p50": _percentile(one_by_one, 0.5), "seq_p99": _percentile(one_by_one, 0.99),
            "cpu_us": cpu / pushes * 1e6, "redis_us": [c / pushes * 1e6 for c in redis_cpu], "statuses": statuses}


async def main(args: argparse.Namespace) -> None:
    with processes.redis_server(private=True) as primary, processes.redis_replica(primary) as replica, \
            processes.service_server(role="interceptor", redis=primary, REDIS_ACK_REPLICAS="0",
                                     **processes.IMAGE_ENV) as off, \
            processes.service_server(role="interceptor", redis=primary, REDIS_ACK_REPLICAS="1",
                                     **processes.IMAGE_ENV) as on:
        redis_pids = (_redis_pid(primary), replica.process.pid)
        for label, server in (("0", off), ("1", on)):
            await _run(server, f"warm-{label}", 300, args.in_flight, 10)  # connections made, code paths warm
        results: dict[str, list[dict]] = {"0": [], "1": []}
        for run in range(args.runs):
            for label, server in (("0", off), ("1", on)):
                figures = await _run(server, f"r{run}-{label}", args.pushes, args.in_flight, args.sequential,
                                     redis_pids)
                results[label].append(figures)
                print(f"REDIS_ACK_REPLICAS={label} run {run + 1}: {figures['rate']:7.0f} pushes/s unpaced, "
                      f"ack p50 {figures['p50'] * 1e3:6.2f} ms p99 {figures['p99'] * 1e3:6.2f} ms; one at a time "
                      f"p50 {figures['seq_p50'] * 1e3:5.2f} ms p99 {figures['seq_p99'] * 1e3:5.2f} ms; "
                      f"CPU/push: interceptor {figures['cpu_us']:4.0f} us, Redis primary "
                      f"{figures['redis_us'][0]:3.0f} us, replica {figures['redis_us'][1]:3.0f} us; "
                      f"statuses {figures['statuses']}",
                      flush=True)
        for label, runs in results.items():
            middle = {key: statistics.median(r[key] for r in runs)
                      for key in ("rate", "p50", "p99", "seq_p50", "seq_p99", "cpu_us")}
            primary_us, replica_us = (statistics.median(r["redis_us"][i] for r in runs) for i in (0, 1))
            print(f"REDIS_ACK_REPLICAS={label} median of {len(runs)} runs: {middle['rate']:.0f} pushes/s unpaced, "
                  f"ack p50 {middle['p50'] * 1e3:.2f} ms p99 {middle['p99'] * 1e3:.2f} ms; one at a time "
                  f"p50 {middle['seq_p50'] * 1e3:.2f} ms p99 {middle['seq_p99'] * 1e3:.2f} ms; "
                  f"CPU/push: interceptor {middle['cpu_us']:.0f} us, Redis primary {primary_us:.0f} us, "
                  f"replica {replica_us:.0f} us")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pushes", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--sequential", type=int, default=300)
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
