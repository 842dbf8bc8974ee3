"""The two servers of a ``benchmarks.scenarios`` run: the repository's, or ones an outside command starts.

The repository's are ``testing.processes.service_server`` (the image's server
command). ``command_server`` runs a shell command template instead, with
``{port}``, ``{redis_host}`` and ``{redis_port}`` filled in, so the same
scenarios can measure another implementation of the two roles (say, Google's
sample) from fresh processes, run by run, side by side with ours. Either way
the figures are read from ``/proc`` for the started process and every process
under it (a pre-forking server's workers do the work).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from testing import processes


def _children() -> dict[int, list[int]]:
    """Parent pid -> its children's pids, for every process now."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # it ended meanwhile
        tree.setdefault(parent, []).append(int(entry))
    return tree


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process under it."""
    tree, found, pending = _children(), [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        pending += tree.get(current, [])
    return found


def process_usage(pid: int) -> tuple[float, float]:
    """(RSS MiB, CPU seconds user + system) of ``pid`` and the processes under it, from /proc."""
    rss, cpu = 0.0, 0.0
    for member in process_tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            with open(f"/proc/{member}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{member}/status") as status:
                kib = next((int(line.split()[1]) for line in status if line.startswith("VmRSS:")), 0)
            cpu += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            rss += kib / 1024
    return rss, cpu


@contextlib.contextmanager
def command_server(*, role: str, template: str, redis: processes.RedisAddress) -> Iterator[processes.Server]:
    """Run ``template`` (a shell command, placeholders filled in) in its own process group until the block ends."""
    port = processes.free_port()
    command = template.format(port=port, redis_host=shlex.quote(redis.host), redis_port=redis.port)
    with tempfile.NamedTemporaryFile(prefix=f"aa-{role}-", suffix=".log", delete=False) as log:
        log_path = Path(log.name)
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, shell=True, stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    server = processes.Server(role=role, port=port, process=process, log_path=log_path)
    try:
        try:
            processes.wait_for_port(port, process=process, timeout=60.0)
        except (RuntimeError, TimeoutError) as error:
            raise RuntimeError(f"{role} did not start: {error}\n{server.log()}") from None
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log_path.unlink(missing_ok=True)
