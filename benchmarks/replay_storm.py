"""Many desktops replaying a large history at once (as after a rolling deploy): the connector's peak memory.

    .venv/bin/python -m benchmarks.replay_storm [--desktops 1000] [--conversations 10]
        [--events 50] [--event-bytes 20000] [--budget BYTES] [--servers-from PATH]

One connector on a private Redis; each of ``--conversations`` conversations
holds ``--events`` events of ``--event-bytes`` bytes of filler. Then
``--desktops`` desktops (the stock npm socket.io-client, ``tests/node/fleet.mjs``,
over the websocket transport) connect at once and each joins one of them with
``{"history": true}``. Printed: the connector's resident memory before (VmRSS)
and its peak (the kernel's VmHWM) once every desktop has every event, the
seconds that took, and the events lost or repeated. ``--budget`` sets
``REPLAY_PROCESS_BYTES``; ``--servers-from`` runs the connector from another
checkout (the same figures before the process's replay budget existed).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from testing import fault_scenarios as faults
from testing import processes
from testing.rolling_deploy import SERVER_ENV, node_fleet, until
from testing.tokens import mint_tokens

MIB = 2**20


def status_field(pid: int, field: str) -> int:
    """``VmRSS`` or ``VmHWM`` of ``pid``, in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    raise ValueError(f"no {field} for process {pid}")


async def fill(interceptor: processes.Server, names: list[str], events: int, padding: int) -> None:
    pubsub = faults.PubSub(interceptor, faults.Tally("history"))
    try:
        await faults.push_concurrently(pubsub, [(name, f"{name[-4:]}-{number}") for name in names
                                                for number in range(events)], concurrency=16, padding=padding)
    finally:
        await pubsub.close()
    if pubsub.tally.acknowledged != len(names) * events:
        raise RuntimeError(f"only {pubsub.tally.acknowledged} of {len(names) * events} pushes were acknowledged")


async def run(args: argparse.Namespace) -> int:
    names = faults.conversations(args.conversations)
    environment = {**SERVER_ENV, "EVENT_HISTORY_MAX_BYTES": str(max(16 * MIB, 2 * args.events * args.event_bytes))}
    if args.budget is not None:
        environment["REPLAY_PROCESS_BYTES"] = str(args.budget)
    log_path = Path(tempfile.mkstemp(prefix="aa-replay-storm-", suffix=".log")[1])
    port = processes.free_port()
    tree = args.servers_from
    with processes.redis_server(private=True) as store, \
            processes.service_server(role="interceptor", redis=store, **environment) as interceptor:
        await fill(interceptor, names, args.events, args.event_bytes)
        connector_env = processes.server_environment(role="connector", redis=store, PYTHONPATH=str(tree),
                                                     **environment)
        with log_path.open("ab") as log:
            connector = subprocess.Popen(processes.server_command(processes.IMAGE_SERVER, port), cwd=tree,
                                         env=connector_env, stdout=log, stderr=subprocess.STDOUT)
        try:
            processes.wait_for_port(port, process=connector)
            await asyncio.sleep(1)
            before = status_field(connector.pid, "VmRSS")
            tokens = mint_tokens([f"agent-{number}" for number in range(args.desktops)])
            desktops = [{"token": token, "join": names[number % len(names)], "transports": ["websocket"],
                         "joinOptions": {"history": True}} for number, token in enumerate(tokens)]
            expected = args.desktops * args.events
            started = time.monotonic()
            async with node_fleet(f"http://127.0.0.1:{port}", desktops) as fleet:
                done = await until(lambda: len(fleet.of_kind("event")) >= expected, timeout=args.timeout)
                seconds = time.monotonic() - started
                await asyncio.sleep(1)  # a repeat would show now
                received = Counter((line["d"], line["id"]) for line in fleet.of_kind("event"))
                disconnects = len(fleet.of_kind("disconnect"))
                await fleet.command("exit")
            peak = status_field(connector.pid, "VmHWM")
        finally:
            processes.stop(connector)
    repeated = sum(times - 1 for times in received.values())
    lost = expected - len(received)
    history_mb = args.events * args.event_bytes / 1e6
    print(f"{args.desktops} desktops replaying {history_mb:.1f} MB each ({args.conversations} conversations of "
          f"{args.events} events of {args.event_bytes} bytes), REPLAY_PROCESS_BYTES "
          f"{'default' if args.budget is None else args.budget}, connector from {tree}")
    print(f"connector VmRSS before {before / MIB:.1f} MiB, peak (VmHWM) {peak / MIB:.1f} MiB "
          f"(+{(peak - before) / MIB:.1f} MiB); every event in {seconds:.1f} s{'' if done else ' (timed out)'}; "
          f"lost {lost}, repeated {repeated}, disconnects {disconnects}")
    text = log_path.read_text(errors="replace")
    log_path.unlink(missing_ok=True)
    if "Traceback" in text:
        print("the connector logged a traceback:\n" + text[-3000:])
    return 0 if done and not lost and not repeated else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--desktops", type=int, default=1000)
    parser.add_argument("--conversations", type=int, default=10)
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--event-bytes", type=int, default=20_000)
    parser.add_argument("--budget", type=int, default=None, help="REPLAY_PROCESS_BYTES (default: the setting's)")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--servers-from", type=Path, default=processes.REPOSITORY)
    args = parser.parse_args(argv)
    args.servers_from = args.servers_from.resolve()
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
