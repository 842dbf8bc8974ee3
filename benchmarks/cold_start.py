"""Cold start: from exec of the image's server command to the first 200 on ``/readyz``, per role.

Cloud Run scales from zero and adds instances under load, so a burst of
agents logging in meets processes still starting. The image's contents are
rebuilt once per checkout measured (``testing.image``: its
``COPY`` lines minus ``.dockerignore``, so no ``__pycache__`` unless the
Dockerfile compiles it), and every run starts the image's server command
there (``testing.processes``) with the image's ``ENV``, without the packages
only the tests install (the image has none of them), and a production-like
environment against a private redis-server, then asks ``GET /readyz`` every
5 ms (a fresh connection each time) until one answers 200. The clock starts
just before the process is spawned; beside each time, the CPU the process used
until then (from /proc, in clock ticks of 10 ms), which the machine's other
load disturbs less than the time. An interceptor, once ready, is then sent
``PUSHES_AFTER_READY`` pushes one at a time, each on a fresh connection as
Pub/Sub's first pushes to a new instance are: the first push's time and the
median of the others show what the first request to a new instance still
pays for (connections and code not yet used).

``--baseline PATH`` measures another checkout too (say, a worktree of the code
before a change; named by its directory), run by run interleaved with this
one, so both see the same load; give it several times for several checkouts
(the steps of a change). The load average is printed before and after.

    .venv/bin/python -m benchmarks.cold_start [--runs 5] [--role connector|interceptor|all] [--baseline PATH]
    .venv/bin/python -m benchmarks.cold_start --quick      # one run per role (tests/test_benchmark_scenarios.py)
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.servers import process_usage
from interceptor import push_samples
from testing import image, processes

POLL_SECONDS = 0.005
GIVE_UP_SECONDS = 60.0
REQUEST = b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
PUSHES_AFTER_READY = 11


def _status(port: int) -> int | None:
    """The status of one ``GET /readyz``, or ``None`` while nothing answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2.0) as connection:
            connection.sendall(REQUEST)
            head = connection.recv(64)
    except OSError:
        return None
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def _push_seconds(port: int, number: int) -> float:
    """Seconds for one push (a new-message notification) on a fresh connection, from connecting to the answer's
    status line; the answer must be 204."""
    conversation = f"projects/{processes.TEST_PROJECT}/conversations/cold-start-{number}"
    body = json.dumps(push_samples.sample_push(push_samples.NEW_MESSAGE_EVENT, conversation)).encode()
    request = (f"POST /{push_samples.NEW_MESSAGE_EVENT} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
               ).encode() + body
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as connection:
        connection.sendall(request)
        head = connection.recv(64)
    took = time.monotonic() - started
    if not head.startswith(b"HTTP/1.1 204"):
        raise RuntimeError(f"push {number} was answered {head!r}")
    return took


def time_to_ready(tree: Path, image_env: dict[str, str], role: str, redis: processes.RedisAddress,
                  guard: Path) -> tuple[float, float, list[float]]:
    """Seconds from spawning the image's server command in ``tree`` (with the image's ``ENV``, ``image_env``) to
    its first 200 on ``/readyz`` (``guard``: ``image.refuse_test_only_packages``, the image's packages only), the
    CPU seconds the process used meanwhile (less at the mercy of the machine's other load than the first), and,
    for an interceptor, the seconds of each push sent after that (none for a connector)."""
    port = processes.free_port()
    settings = {**image_env, "PORT": str(port), "PYTHONPATH": f"{guard}:{tree}"}
    environment = processes.server_environment(role=role, redis=redis, **settings)
    with tempfile.TemporaryFile() as log:
        started = time.monotonic()
        process = subprocess.Popen(processes.server_command(processes.IMAGE_SERVER, port), cwd=tree,
                                   env=environment, stdout=log, stderr=subprocess.STDOUT)
        try:
            while time.monotonic() - started < GIVE_UP_SECONDS:
                if _status(port) == 200:
                    took, used = time.monotonic() - started, process_usage(process.pid)[1]
                    pushes = ([_push_seconds(port, n) for n in range(PUSHES_AFTER_READY)]
                              if role == "interceptor" else [])
                    return took, used, pushes
                if process.poll() is not None:
                    break
                time.sleep(POLL_SECONDS)
            log.seek(0)
            raise RuntimeError(f"{role} in {tree} was not ready (exit {process.poll()}):\n"
                               f"{log.read().decode(errors='replace')}")
        finally:
            processes.stop(process)


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--role", choices=("connector", "interceptor", "all"), default="all",
                        help="a role, or all: both roles (SERVICE_ROLE=all is not what the image deploys)")
    parser.add_argument("--baseline", type=Path, action="append", default=[],
                        help="another checkout, measured interleaved with this one (named by its directory); "
                        "give it again for more")
    parser.add_argument("--quick", action="store_true", help="one run per role")
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    roles = ("connector", "interceptor") if args.role == "all" else (args.role,)

    with tempfile.TemporaryDirectory(prefix="aa-cold-start-") as directory, \
            processes.redis_server(private=True) as redis:
        checkouts = {**{path.resolve().name: path.resolve() for path in args.baseline}, "this": processes.REPOSITORY}
        guard = image.refuse_test_only_packages(Path(directory) / "guard", image.development_only_modules())
        trees = {label: (image.image_tree(Path(directory) / label, checkout), image.image_environment(checkout))
                 for label, checkout in checkouts.items()}
        print(f"load average before: {_load()}", flush=True)
        figures: dict[tuple[str, str], list[float]] = {(label, role): [] for label in trees for role in roles}
        cpu: dict[tuple[str, str], list[float]] = {key: [] for key in figures}
        first_push: dict[tuple[str, str], list[float]] = {key: [] for key in figures}
        later_pushes: dict[tuple[str, str], list[float]] = {key: [] for key in figures}
        for run in range(1, runs + 1):
            for role in roles:
                for label, (tree, image_env) in trees.items():
                    took, used, pushes = time_to_ready(tree, image_env, role, redis, guard)
                    figures[label, role].append(took * 1000)
                    cpu[label, role].append(used * 1000)
                    pushed = ""
                    if pushes:
                        first_push[label, role].append(pushes[0] * 1000)
                        later_pushes[label, role].append(statistics.median(pushes[1:]) * 1000)
                        pushed = (f"  first push {pushes[0] * 1000:6.2f} ms, the next {len(pushes) - 1} median "
                                  f"{statistics.median(pushes[1:]) * 1000:5.2f} ms")
                    print(f"run {run} {role:<11} {label:<10} exec to /readyz 200: {took * 1000:7.1f} ms  "
                          f"CPU {used * 1000:5.0f} ms{pushed}", flush=True)
        print(f"load average after: {_load()}", flush=True)
        for (label, role), values in figures.items():
            print(f"{role:<11} {label:<10} median {statistics.median(values):7.1f} ms  min {min(values):7.1f}  "
                  f"max {max(values):7.1f}  CPU median {statistics.median(cpu[label, role]):5.0f} ms  "
                  f"({len(values)} runs: {' '.join(f'{v:.0f}' for v in values)})")
            if first_push[label, role]:
                print(f"{role:<11} {label:<10} first push after ready: median "
                      f"{statistics.median(first_push[label, role]):6.2f} ms  "
                      f"({' '.join(f'{v:.2f}' for v in first_push[label, role])}); the pushes after it: median "
                      f"{statistics.median(later_pushes[label, role]):5.2f} ms")


if __name__ == "__main__":
    main()
