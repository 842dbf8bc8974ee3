"""The connector as ``benchmarks.churn`` runs it: the image's server command, plus a heap report on SIGUSR1.

    python -m benchmarks.churn_server --bind 127.0.0.1 --port N aa_site.asgi:application

Only the benchmark starts the server this way; nothing of it is in the image. On SIGUSR1 the process
writes ``report-<n>.json`` into ``$CHURN_REPORT_DIR`` (its resident set, then after a full collection the
count of objects the collector tracks by type, its asyncio tasks, and the size of every container the
connector's per-process singletons hold: the hub, the long-polling pollers, the desktop registry, the
heartbeats, the unauthenticated holds, and their Redis subscriptions), and, when tracemalloc traces
(``PYTHONTRACEMALLOC``), ``snapshot-<n>.bin`` beside it. The signal's handler runs on the main thread
between two steps of the event loop, so what it reads is consistent.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import json
import os
import signal
import sys
import tracemalloc
from pathlib import Path
from typing import Any

_reports = 0
# The singletons worth looking into, by the module and attribute that hold them (a LoopLocal holds one
# value per loop: the server's one loop here).
SINGLETONS = (
    ("connector.desktops.fanout", "_hubs", "hub"),
    ("connector.desktops.polling.waiting", "_pollers", "pollers"),
    ("connector.desktops.instances", "_registries", "registry"),
    ("connector.desktops.engineio.session", "_heartbeats", "heartbeats"),
    ("connector.desktops.sessions", "_memory", "memory_sessions"),
    ("connector.desktops.preauth", "HOLDS", "preauth_holds"),
    ("connector.ratelimit", "_local", "local_rate_windows"),
)
# Objects inside those whose containers are reported too (one level down).
NESTED = ("_subscription", "_wakes", "_pubsub")


def resident_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _attributes(value: Any) -> dict[str, Any]:
    found = dict(getattr(value, "__dict__", {}))
    for klass in type(value).__mro__:
        for name in getattr(klass, "__slots__", ()):
            if hasattr(value, name):
                found[name] = getattr(value, name)
    return found


def container_sizes(value: Any, prefix: str, into: dict[str, int], depth: int = 0) -> None:
    """``into[prefix.attribute] = len(...)`` for each container ``value`` holds (and those of ``NESTED`` ones)."""
    for name, attribute in _attributes(value).items():
        if isinstance(attribute, (dict, set, frozenset, list, collections.deque)) and not name.startswith("__"):
            into[f"{prefix}.{name}"] = len(attribute)
            if isinstance(attribute, dict) and attribute and all(
                    isinstance(inner, (set, dict)) for inner in attribute.values()):
                # Per kind (the subscription's wanted channels): the total of what the inner ones hold.
                into[f"{prefix}.{name}[*]"] = sum(len(inner) for inner in attribute.values())
        elif depth < 2 and name in NESTED and attribute is not None:
            container_sizes(attribute, f"{prefix}.{name}", into, depth + 1)


def singleton_sizes() -> dict[str, int]:
    sizes: dict[str, int] = {}
    for module_name, attribute, label in SINGLETONS:
        module = sys.modules.get(module_name)
        holder = getattr(module, attribute, None) if module is not None else None
        if holder is None:
            continue
        values = list(holder._values.values()) if hasattr(holder, "_values") else [holder]
        for value in values:
            container_sizes(value, label, sizes)
    return sizes


def _waiting_at(task: asyncio.Task) -> str:
    stack = task.get_stack()
    if not stack:
        return repr(task.get_coro())[:80]
    outer, inner = stack[0], stack[-1]
    return (f"{outer.f_code.co_qualname} -> {inner.f_code.co_qualname} "
            f"({Path(inner.f_code.co_filename).name}:{inner.f_lineno})")


def report(signum: int, frame: Any) -> None:
    global _reports
    _reports += 1
    directory = Path(os.environ["CHURN_REPORT_DIR"])
    rss = resident_bytes()
    gc.collect()
    objects = gc.get_objects()
    types = collections.Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in objects)
    del objects
    try:
        running = asyncio.all_tasks(asyncio.get_running_loop())
    except RuntimeError:
        running = set()
    # Where each task waits: its coroutine's innermost frame.
    waits = collections.Counter(_waiting_at(task) for task in running)
    if tracemalloc.is_tracing():
        tracemalloc.take_snapshot().dump(str(directory / f"snapshot-{_reports}.bin"))
        traced = tracemalloc.get_traced_memory()[0]
    else:
        traced = None
    body = {"rss": rss, "rss_after_collection": resident_bytes(), "traced": traced, "tasks": len(running),
            "waits": dict(waits), "objects": sum(types.values()), "types": dict(types), "holdings": singleton_sizes()}
    partial = directory / f"report-{_reports}.json.part"
    partial.write_text(json.dumps(body))
    partial.rename(directory / f"report-{_reports}.json")


def main() -> None:
    signal.signal(signal.SIGUSR1, report)
    from aa_site import serve_uvicorn

    serve_uvicorn.main(sys.argv[1:])


if __name__ == "__main__":
    main()
