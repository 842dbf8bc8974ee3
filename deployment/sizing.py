"""How big each Cloud Run service's instances are: the measured defaults, and Cloud Run's rules for overrides.

The defaults come from ``benchmarks/sizing.py`` on one connector and one interceptor process (the image runs
one server process per instance); docs/cloud-run-sizing.md has the figures and the reasoning from each figure
to each value. ``deploy_plan`` fills them into ``deploy/*.yaml`` and takes an override for each. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Cloud Run's limits for a service (cloud.google.com/run/docs/configuring/services/cpu, .../memory-limits,
# .../about-concurrency).
MAX_CONCURRENCY = 1000
WHOLE_CPUS = (1, 2, 4, 6, 8)
MIN_CPU = 0.08
MIN_MEMORY_MIB = 128
MAX_MEMORY_MIB = 32 * 1024
# Memory above the first figure (MiB) needs at least the second (CPUs).
CPUS_FOR_MEMORY = ((24 * 1024, 8), (16 * 1024, 6), (8 * 1024, 4), (4 * 1024, 2))
# CPUs: the memory (MiB) they need at least.
MEMORY_FOR_CPUS = {4: 2 * 1024, 6: 4 * 1024, 8: 4 * 1024}
# Below one CPU: the most memory (MiB) a CPU under the first figure may have.
MEMORY_UNDER_ONE_CPU = ((0.5, 512), (1.0, 1024))

_CPU = re.compile(r"^(?:(?P<cpus>\d+(?:\.\d+)?|\.\d+)|(?P<millis>\d+)m)$")
_MEMORY = re.compile(r"^(?P<amount>\d+)(?P<unit>Mi|Gi)$")


@dataclass(frozen=True)
class ServiceSize:
    """One service's instances: requests at once, CPU and memory limits, how many, and the start-up boost."""

    concurrency: int
    cpu: str
    memory: str
    max_instances: int
    startup_cpu_boost: bool = True


# One connector process holds every desktop Cloud Run lets an instance have (1,000 requests; a WebSocket or a
# waiting long-poll is one) with scenario b's p99 within target and c's p50 unchanged, in about 160 MiB, using
# under a tenth of a core for c's load; one CPU, because the image runs one single-threaded server process;
# 10 instances hold 10,000 desktops (docs/cloud-run-sizing.md).
CONNECTOR = ServiceSize(concurrency=1000, cpu="1", memory="512Mi", max_instances=10)
# One interceptor process acknowledges 1,000 pushes/s with p99 within 10 ms: 10 in flight at that rate and
# latency (Little's law). Memory holds 10 pushes at their 14 MiB body bound at once: parsing, decoding and
# re-encoding one such push peaks at about 63 MiB above the process's 100 MiB, so 10 of them peaked at 723 MiB
# (20 at 1.24 GiB). 10 instances take 10,000 pushes/s.
INTERCEPTOR = ServiceSize(concurrency=10, cpu="1", memory="1Gi", max_instances=10)


def cpus(value: str) -> float | None:
    """``value`` (``1``, ``0.5``, ``500m``) in CPUs; None when it is not a CPU quantity."""
    match = _CPU.match(value)
    if match is None:
        return None
    return float(match["cpus"]) if match["cpus"] else int(match["millis"]) / 1000


def mebibytes(value: str) -> int | None:
    """``value`` (``512Mi``, ``2Gi``) in MiB; None when it is not written with Mi or Gi."""
    match = _MEMORY.match(value)
    if match is None:
        return None
    return int(match["amount"]) * (1024 if match["unit"] == "Gi" else 1)


def problem(size: ServiceSize, *, role: str, min_instances: int, always_allocated: bool) -> str | None:
    """What Cloud Run would refuse in ``size`` (or what cannot work), named by the ``--<role>-...`` flag; else None.

    ``always_allocated``: the service's template keeps CPU between requests (``cpu-throttling: "false"``),
    which a fraction of a CPU cannot have.
    """
    flag = f"--{role}"
    if not 1 <= size.concurrency <= MAX_CONCURRENCY:
        return f"{flag}-concurrency must be between 1 and {MAX_CONCURRENCY} (Cloud Run's limit), not {size.concurrency}"
    cpu = cpus(size.cpu)
    if cpu is None:
        return f"{flag}-cpu {size.cpu!r} is not a number of CPUs: 1, 2, 4, 6 or 8, or a fraction such as 0.5"
    memory = mebibytes(size.memory)
    if memory is None:
        return f"{flag}-memory {size.memory!r} is not an amount with Mi or Gi, such as 512Mi or 2Gi"
    if cpu > 1 and cpu not in WHOLE_CPUS:
        return f"{flag}-cpu {size.cpu}: above 1, Cloud Run takes 2, 4, 6 or 8 CPUs"
    if cpu < MIN_CPU:
        return f"{flag}-cpu {size.cpu}: Cloud Run's least is {MIN_CPU}"
    if cpu < 1:
        if always_allocated:
            return (f"{flag}-cpu {size.cpu}: a fraction of a CPU is allocated only during requests, and the "
                    f"{role} needs its CPU between requests (its WebSockets' heartbeats and fan-out): 1 or more")
        if size.concurrency != 1:
            return f"{flag}-cpu {size.cpu}: Cloud Run allows a fraction of a CPU only with {flag}-concurrency 1"
        most = next(limit for under, limit in MEMORY_UNDER_ONE_CPU if cpu < under)
        if memory > most:
            return f"{flag}-memory {size.memory}: with {size.cpu} CPU, Cloud Run allows at most {most}Mi"
    if not MIN_MEMORY_MIB <= memory <= MAX_MEMORY_MIB:
        return f"{flag}-memory {size.memory}: Cloud Run takes {MIN_MEMORY_MIB}Mi to {MAX_MEMORY_MIB // 1024}Gi"
    for above, least in CPUS_FOR_MEMORY:
        if memory > above and cpu < least:
            return (f"{flag}-memory {size.memory}: more than {above // 1024}Gi needs {flag}-cpu {least} or more "
                    f"(Cloud Run)")
    if memory < MEMORY_FOR_CPUS.get(int(cpu), 0):
        return (f"{flag}-cpu {size.cpu}: Cloud Run needs {flag}-memory {MEMORY_FOR_CPUS[int(cpu)] // 1024}Gi or "
                f"more with it")
    if size.max_instances < max(1, min_instances):
        return (f"{flag}-max-instances must be at least 1 and at least --min-instances ({min_instances}), not "
                f"{size.max_instances}")
    return None


def template_values(size: ServiceSize, prefix: str) -> dict[str, str | int]:
    """The ``${PREFIX_...}`` values of ``deploy/*.yaml`` for ``size``; the integer is written bare (a number in
    the YAML), the rest as strings (annotations and resource quantities are strings)."""
    return {
        f"{prefix}_CONCURRENCY": size.concurrency,
        f"{prefix}_CPU": size.cpu,
        f"{prefix}_MEMORY": size.memory,
        f"{prefix}_MAX_INSTANCES": str(size.max_instances),
        f"{prefix}_STARTUP_CPU_BOOST": "true" if size.startup_cpu_boost else "false",
    }
