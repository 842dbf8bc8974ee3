"""Concurrent streaming calls (``stream-request``) through one real connector process, against the fake WebChannel.

Starts the fake token endpoint of ``testing/fake_dialogflow.py``, the fake
WebChannel server of ``testing/fake_webchannel.py`` (each request answered by
``--frames`` response messages, ``--cadence`` seconds apart, then a clean end
of the back channel), a private redis-server (or ``AA_TEST_REDIS``) and one
connector server process with a production-like environment. It connects
``--streams / --per-socket`` python-socketio desktops, opens ``--per-socket``
streams on each at once, and counts every ``stream-data`` that arrives.

    .venv/bin/python -m benchmarks.streaming_concurrency [--streams 50 --per-socket 5 --frames 50 --cadence 0.2]

Printed: frames delivered / expected (and any out of order, duplicated or
``stream-error``), the latency the connector adds (from the moment the fake
wrote a frame, its ``sent_at`` stamp, to the moment the desktop's handler ran;
the fake runs on a thread of this process, so both read the same
``time.monotonic``), and the connector process's resident memory and CPU
seconds (from ``/proc``) before the streams open and over the streaming.
Everything binds to 127.0.0.1. Exit status 1 when a frame was lost or the
server logged an error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import socketio

from testing import fake_dialogflow, fake_webchannel, processes
from testing.tokens import mint_tokens

METHOD = "streaming_reactive_companion_suggestions"
PARTICIPANT = "projects/test-project/locations/us-central1/conversations/BENCH-{index}/participants/P-1"
SUSPICIOUS = ("ERROR", "CRITICAL", "Traceback")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds ``pid`` has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14 and 15 of stat)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Desktop:
    """One python-socketio desktop; records each stream-data's stream, reply number and added latency."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.data: list[tuple[Any, int, float]] = []
        self.errors: list[Any] = []
        self.client.on("stream-data", self._data)
        self.client.on("stream-error", self._error)

    async def _data(self, message: dict[str, Any]) -> None:
        now = time.monotonic()
        payload = message["payload"]
        self.data.append((message["streamId"], payload["replyNumber"], now - payload["sentAt"]))

    async def _error(self, message: dict[str, Any]) -> None:
        self.errors.append(message)


async def run(server: processes.Server, upstream: fake_webchannel.FakeWebChannel, args: argparse.Namespace) -> bool:
    """Connect, open every stream at once, wait for the frames; print the figures; True when nothing was lost."""
    sockets = args.streams // args.per_socket
    tokens = mint_tokens([f"bench-agent-{i}" for i in range(sockets)])
    desktops = [Desktop() for _ in range(sockets)]
    await asyncio.gather(*(d.client.connect(server.http_url, transports=["websocket"], auth={"token": t},
                                            wait_timeout=30) for d, t in zip(desktops, tokens, strict=True)))
    await asyncio.sleep(1.0)
    pid = server.process.pid
    idle_rss, cpu_before = rss_mib(pid), cpu_seconds(pid)
    expected = sockets * args.per_socket * args.frames
    started = time.monotonic()
    await asyncio.gather(*(
        d.client.emit("stream-request", {"streamId": f"s-{k}", "method": METHOD,
                                         "payload": {"participant": PARTICIPANT.format(index=f"{i}-{k}")}})
        for i, d in enumerate(desktops) for k in range(args.per_socket)))
    peak_rss = idle_rss
    deadline = started + args.frames * args.cadence + 60
    while sum(len(d.data) for d in desktops) < expected and time.monotonic() < deadline:
        if any(d.errors for d in desktops):
            break
        peak_rss = max(peak_rss, rss_mib(pid))
        await asyncio.sleep(0.25)
    elapsed = time.monotonic() - started
    cpu_used = cpu_seconds(pid) - cpu_before
    await asyncio.gather(*(d.client.disconnect() for d in desktops))

    received = [(i, stream, reply, latency) for i, d in enumerate(desktops) for stream, reply, latency in d.data]
    out_of_order = sum(
        1 for i, d in enumerate(desktops) for k in range(args.per_socket)
        if [r for s, r, _ in d.data if s == f"s-{k}"] != sorted(r for s, r, _ in d.data if s == f"s-{k}"))
    distinct = len({(i, stream, reply) for i, stream, reply, _ in received})
    latencies_ms = [latency * 1000 for *_, latency in received]
    errors = [e for d in desktops for e in d.errors]
    print(f"{sockets * args.per_socket} streams on {sockets} sockets, {args.frames} frames each, "
          f"{args.cadence * 1000:.0f} ms upstream cadence")
    print(f"frames delivered / expected: {len(received)} / {expected} ({distinct} distinct); "
          f"streams out of order: {out_of_order}; stream-errors: {len(errors)} {errors[:3]}")
    if latencies_ms:
        print(f"added latency (fake wrote -> desktop handler ran): p50 {percentile(latencies_ms, 0.5):.1f} ms, "
              f"p99 {percentile(latencies_ms, 0.99):.1f} ms, max {max(latencies_ms):.1f} ms, "
              f"mean {statistics.fmean(latencies_ms):.1f} ms")
    print(f"wall time of the streaming: {elapsed:.1f} s (the fake's own: {args.frames * args.cadence:.1f} s)")
    print(f"connector RSS: {idle_rss:.1f} MiB with the sockets connected, peak {peak_rss:.1f} MiB while streaming; "
          f"CPU over the streaming: {cpu_used:.2f} s ({cpu_used / elapsed * 100:.0f}% of one core)")
    print(f"upstream sessions: {len(upstream.sessions)}, most back channels open at once: "
          f"{upstream.max_open_back_channels}, refused upstream requests: {len(upstream.refused)}")
    return len(received) == distinct == expected and not errors and not out_of_order


def main() -> int:
    """Parse arguments, start the servers, run, report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=50, help="concurrent streams")
    parser.add_argument("--per-socket", type=int, default=5, help="streams per desktop socket")
    parser.add_argument("--frames", type=int, default=50, help="response messages per stream")
    parser.add_argument("--cadence", type=float, default=0.2, help="seconds between a stream's response messages")
    args = parser.parse_args()
    if args.streams % args.per_socket or not 0 < args.frames <= 10_000:
        parser.error("--streams must be a multiple of --per-socket, and --frames between 1 and 10000")
    with fake_dialogflow.serve() as tokens, fake_webchannel.serve(lambda: set(tokens.issued_tokens)) as upstream, \
            tempfile.TemporaryDirectory(prefix="aa-bench-adc-") as directory:
        upstream.replies_per_request = upstream.end_after = args.frames
        upstream.cadence_seconds = args.cadence
        key = tokens.write_key_file(Path(directory) / "key.json")
        with processes.redis_server() as redis, processes.service_server(
            role="connector", redis=redis, GOOGLE_APPLICATION_CREDENTIALS=str(key),
            DIALOGFLOW_WEBCHANNEL_ROOT=upstream.url, STREAM_MAX_PER_CONNECTION=str(args.per_socket),
        ) as server:
            ok = asyncio.run(run(server, upstream, args))
            log = server.log()
    problems = [line for line in log.splitlines() if any(word in line for word in SUSPICIOUS)]
    for line in problems:
        print(f"server log: {line}")
    return 0 if ok and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
