"""A burst of ``group_send`` through channels-redis's two layers, on a real private Redis.

Compares ``channels_redis.core.RedisChannelLayer`` (list/sorted-set based,
``capacity`` 100 by default) with ``channels_redis.pubsub.RedisPubSubChannelLayer``
(the one this project uses): one process sends ``--messages`` group messages
to a group that ``--consumers`` channels joined in a second process, which
counts what each channel received once the burst has settled.

    .venv/bin/python -m benchmarks.channel_layer_burst [--messages 5000 --consumers 10 --concurrency 10]

Why a separate receiving process: that is the production shape (the
interceptor process sends, a connector process holds the desktops' channels),
and one event loop running both sides would measure how asyncio shares that
loop between a tight send loop and the receive loops, not the layer. Both
processes read ``time.monotonic`` (CLOCK_MONOTONIC, one clock for the whole
machine on Linux), so delivery times span the two processes.

Everything binds to 127.0.0.1; every loop is bounded in count and in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer

from testing import processes

GROUP = "conversation.burst"
# How long the receiver may take to show it is subscribed, and the cap on one variant's run.
READY_TIMEOUT = 30.0
# Roughly what one desktop payload weighs (a new-message-event notification, JSON in a string).
FILLER = "I was charged twice for my order and would like a refund, please. " * 8


@dataclass(frozen=True)
class Variant:
    """One layer configuration to measure."""

    name: str
    backend: str  # "pubsub" or "list"
    capacity: int | None = None  # list layer only; None = the library default (100)

    def describe(self) -> str:
        if self.backend == "pubsub":
            return "RedisPubSubChannelLayer"
        return f"RedisChannelLayer capacity={self.capacity or 100}{'' if self.capacity else ' (default)'}"


def build_layer(spec: dict[str, Any]) -> RedisChannelLayer | RedisPubSubChannelLayer:
    """A layer from a JSON-able spec, so both processes build exactly the same one."""
    if spec["backend"] == "pubsub":
        return RedisPubSubChannelLayer(hosts=[spec["redis"]], prefix=spec["prefix"])
    options = {"capacity": spec["capacity"]} if spec["capacity"] else {}
    return RedisChannelLayer(hosts=[spec["redis"]], prefix=spec["prefix"], **options)


def group_message(sequence: int) -> dict[str, Any]:
    """Shaped like ``events.kinds.group_message``, with a sequence number to count by."""
    return {
        "type": "conversation.event",
        "event": "new-message-event",
        "payload": {"conversation_name": "projects/bench/conversations/BURST", "data": FILLER, "seq": sequence},
    }


# --- receiving process ------------------------------------------------------------------


async def receive_side(spec: dict[str, Any]) -> dict[str, Any]:
    """Join ``consumers`` channels to the group, say READY, count until the burst settles, report."""
    layer = build_layer(spec)
    channels = [await layer.new_channel() for _ in range(spec["consumers"])]
    for channel in channels:
        await layer.group_add(GROUP, channel)
    seen: dict[str, set[int]] = {channel: set() for channel in channels}
    probed: set[str] = set()
    duplicates = 0
    timing = {"first": None, "last": None}

    async def consume(channel: str) -> None:
        nonlocal duplicates
        while True:
            message = await layer.receive(channel)
            now = time.monotonic()
            sequence = message["payload"]["seq"]
            if sequence < 0:
                probed.add(channel)
                continue
            if sequence in seen[channel]:
                duplicates += 1
            seen[channel].add(sequence)
            timing["first"] = timing["first"] or now
            timing["last"] = now

    consumers = [asyncio.create_task(consume(channel)) for channel in channels]
    try:
        await prove_subscribed(spec, probed, len(channels))
        print("READY", flush=True)
        sent_at = await wait_until_settled(spec, seen, timing)
    finally:
        for task in consumers:
            task.cancel()
        outcomes = await asyncio.gather(*consumers, return_exceptions=True)
    # A receive loop that died early would look like lost messages: name how each one ended.
    failures = [repr(outcome) for outcome in outcomes if not isinstance(outcome, asyncio.CancelledError)]
    counts = [len(received) for received in seen.values()]
    return {"counts": counts, "duplicates": duplicates, "first": timing["first"], "last": timing["last"],
            "sent_signal": sent_at, "receive_failures": failures}


async def prove_subscribed(spec: dict[str, Any], probed: set[str], consumers: int) -> None:
    """Send probe messages until every channel got one, so no burst message can beat the subscription."""
    sender = build_layer(spec)
    deadline = time.monotonic() + READY_TIMEOUT
    while len(probed) < consumers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(probed)} of {consumers} channels received a probe")
        await sender.group_send(GROUP, group_message(-1))
        await asyncio.sleep(0.2)
    # Let late probes drain so they cannot take a list-layer slot during the burst.
    await asyncio.sleep(0.5)


async def wait_until_settled(spec: dict[str, Any], seen: dict[str, set[int]], timing: dict) -> float | None:
    """Return once all arrived, or the sender finished and nothing arrived for ``settle`` s, or at ``deadline``."""
    loop = asyncio.get_running_loop()
    sent = loop.run_in_executor(None, sys.stdin.readline)  # the sender writes one line when done
    sent_at: float | None = None
    deadline = time.monotonic() + spec["deadline"]
    while time.monotonic() < deadline:
        if all(len(received) >= spec["expected"] for received in seen.values()):
            break
        if sent.done() and sent_at is None:
            sent_at = time.monotonic()
        if sent_at is not None and time.monotonic() - max(sent_at, timing["last"] or 0) > spec["settle"]:
            break
        await asyncio.sleep(0.02)
    return sent_at


# --- sending process (the one you run) ---------------------------------------------------


class OverCapacityCounter(logging.Handler):
    """Counts the list layer's only trace of a dropped group message: an INFO log line, not an error."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "over capacity" in record.getMessage():
            self.count += 1


async def send_burst(
    layer: RedisChannelLayer | RedisPubSubChannelLayer, messages: int, concurrency: int
) -> tuple[float, float, int]:
    """``group_send`` every message with ``concurrency`` sends in flight; return (start, end, errors)."""
    sequences = iter(range(messages))
    errors = 0

    async def worker() -> None:
        nonlocal errors
        for sequence in sequences:
            try:
                await layer.group_send(GROUP, group_message(sequence))
            except Exception:  # counted and reported; a burst should not stop at the first failure
                errors += 1

    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    end = time.monotonic()
    return start, end, errors


async def run_variant(variant: Variant, args: argparse.Namespace, redis: processes.RedisAddress) -> dict[str, Any]:
    """Start a receiver for ``variant``, burst into it, and collect its counts."""
    spec = {
        "backend": variant.backend,
        "capacity": variant.capacity,
        "redis": redis.url,
        "prefix": f"burst{os.getpid()}{variant.name.replace('-', '')}",
        "consumers": args.consumers,
        "expected": args.messages,
        "settle": args.settle,
        "deadline": args.deadline,
    }
    receiver = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.channel_layer_burst", "--receiver", json.dumps(spec),
        cwd=processes.REPOSITORY, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    layer = build_layer(spec)
    over_capacity = OverCapacityCounter()
    library_logger = logging.getLogger("channels_redis.core")
    library_logger.addHandler(over_capacity)
    library_logger.setLevel(logging.INFO)
    try:
        ready = await asyncio.wait_for(receiver.stdout.readline(), READY_TIMEOUT)
        if ready.strip() != b"READY":
            raise RuntimeError(f"{variant.name}: receiver did not start: {ready!r}")
        start, end, errors = await send_burst(layer, args.messages, args.concurrency)
        receiver.stdin.write(b"SENT\n")
        await receiver.stdin.drain()
        result = json.loads(await asyncio.wait_for(receiver.stdout.readline(), args.deadline + READY_TIMEOUT))
        await asyncio.wait_for(receiver.wait(), READY_TIMEOUT)
    finally:
        if receiver.returncode is None:
            receiver.kill()
            await receiver.wait()
        # Only now, with the receiver gone: flush removes this run's keys (list layer) and closes connections.
        await layer.flush()
        library_logger.removeHandler(over_capacity)
    result.update(variant=variant, start=start, end=end, errors=errors, over_capacity=over_capacity.count)
    return result


def print_result(result: dict[str, Any], args: argparse.Namespace) -> None:
    """Print one variant's figures."""
    variant: Variant = result["variant"]
    counts = result["counts"]
    expected = args.messages * args.consumers
    send_seconds = result["end"] - result["start"]
    delivered_by = (result["last"] - result["start"]) if result["last"] else float("nan")
    print(f"{variant.describe()}")
    print(f"  delivered / expected   {sum(counts)} / {expected}  ({100 * sum(counts) / expected:.1f}%)")
    print(f"  per channel            min {min(counts)}  max {max(counts)}  of {args.messages}")
    print(f"  duplicates             {result['duplicates']}")
    print(f"  send errors            {result['errors']}")
    if variant.backend == "list":
        print(f"  over-capacity logs     {result['over_capacity']}"
              "  (group_send calls that dropped, logged at INFO only)")
    print(f"  receive loop failures  {len(result['receive_failures'])} {result['receive_failures'][:3] or ''}")
    print(f"  send time              {send_seconds:.2f} s  ({args.messages / send_seconds:.0f} group_send/s)")
    print(f"  last delivery after    {delivered_by:.2f} s from the first send")


async def run(args: argparse.Namespace) -> None:
    """Measure each chosen variant, one after another, on one Redis."""
    variants = [variant_named(name, args.messages) for name in args.variants]
    print(f"messages={args.messages} consumers={args.consumers} (one receiving process) "
          f"concurrency={args.concurrency}")
    with processes.redis_server() as redis:
        for variant in variants:
            print_result(await run_variant(variant, args, redis), args)


VARIANT_NAMES = ("pubsub", "list", "list-raised")


def variant_named(name: str, messages: int) -> Variant:
    """``list-raised`` gets a capacity above the burst, so it shows what the default capacity costs."""
    if name == "pubsub":
        return Variant(name, "pubsub")
    return Variant(name, "list", capacity=messages + 100 if name == "list-raised" else None)


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000, help="group_send calls in the burst (default 5000)")
    parser.add_argument("--consumers", type=int, default=10, help="channels in the group (default 10)")
    parser.add_argument("--concurrency", type=int, default=10, help="group_send calls in flight (default 10)")
    parser.add_argument("--variants", nargs="+", choices=VARIANT_NAMES, default=list(VARIANT_NAMES),
                        help="layers to measure; list-raised is the list layer with capacity above --messages")
    parser.add_argument("--settle", type=float, default=3.0, help="stop counting after this long with nothing new, s")
    parser.add_argument("--deadline", type=float, default=120.0, help="cap on one variant's receiving, s")
    parser.add_argument("--receiver", help=argparse.SUPPRESS)  # internal: run the receiving side
    args = parser.parse_args(argv)
    if min(args.messages, args.consumers, args.concurrency) < 1:
        parser.error("counts must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the comparison, or (with the internal ``--receiver``) the receiving side of one variant."""
    args = parse_arguments(argv)
    if args.receiver:
        print(json.dumps(asyncio.run(receive_side(json.loads(args.receiver)))), flush=True)
    else:
        asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
