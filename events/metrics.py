"""The service's Prometheus metrics (prometheus-client), defined once for both roles; ``/metrics`` shows them.

What is counted, and where:

- ``aa_pushes_received_total{kind, outcome}``: every push the interceptor
  answers, by endpoint and by what it was answered (``accepted`` 204,
  ``discarded`` 200 for a poison message, ``refused`` 401/403, ``unavailable``
  503, ``error`` 500); a redelivery is ``accepted`` and counted again in
  ``aa_push_redeliveries_total{kind}``.
- ``aa_event_deliveries_total{kind}``: events a connector process handed to
  its desktop connections, one per desktop per event (counted once per event
  with the number of desktops, not once per socket). A long-polling desktop's
  events are counted by the process whose poll answered with them, one per
  event in the answer (live or replayed: a poll reads them all from the
  history alike); the hub's member that wakes a process's polls counts none.
- ``aa_push_to_desktop_seconds``: per event and connector process, from the
  notification's Pub/Sub ``publishTime`` (the payload's ``publish_time``) to
  the moment the process hands the event to its WebSocket desktops. It spans
  Pub/Sub's push, the interceptor, Redis and the fan-out, not the last hop over
  each desktop's socket; it reads Google's clock against ours (NTP-synchronised
  on Cloud Run). Events replayed after a lost subscription are observed too,
  with the delay they really had. Polls' answers are not observed (each is one
  desktop's; ``benchmarks/polling.py`` measures them).
- ``aa_desktops_connected{transport}``: authenticated desktop connections
  open now, by transport (``socketio``, ``websocket``, ``polling``;
  ``transport`` is the caller's, so a new transport needs no change here).
  No process holds a long-polling session, so ``polling`` counts, per
  process, the GETs of sessions connected to ``/`` that wait in it: a
  connected polling client has one GET outstanding nearly all the time (it
  polls again as soon as one is answered), and never two at once on any
  process, so the sum over processes is the number of polling desktops, short
  by those between two polls at the moment of the scrape. It costs nothing in
  Redis.
- ``aa_stream_queued_bytes``: bytes of streaming-call requests waiting in
  the connector to be posted upstream (``connector/desktops/streaming``), summed over
  live processes; bounded by ``STREAM_MAX_QUEUED_BYTES_PER_PROCESS`` each.
- ``aa_replay_reserved_bytes``, ``aa_replay_reserved_events``: what the
  replay pages of desktops hold now (reserved from the process's budget,
  ``connector.desktops.replay_budget``), summed over live processes; bounded by
  ``REPLAY_PROCESS_BYTES`` and ``REPLAY_PROCESS_EVENTS`` each.
  ``aa_replay_reserved_bytes_peak``: the most bytes they held at once since
  the process started (the highest process's). ``aa_replay_budget_wait_seconds``:
  how long each page that found the budget spent waited for its turn.
- ``aa_redis_errors_total{operation}``: Redis failures the service handled
  (``publish``, ``subscription``, ``presence``, ``rate_limit``,
  ``integration_keys``, ``desktop``, ``instances``, ``admin_login``).

Several server processes on one machine (``PROMETHEUS_MULTIPROC_DIR`` set to an
empty directory shared by them, before they start) are summed by
prometheus-client's multi-process mode: each process writes its values to
files there and ``/metrics`` reads them all; the connected-desktops gauge sums
the live processes (``livesum``), a process that exits removes its part.

Every label value is one of a few known ones (kinds, outcomes, transports,
operations): no per-conversation or per-socket series.
"""

from __future__ import annotations

import atexit
import os
import time
from datetime import datetime

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE  # noqa: F401  (what /metrics answers with)
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

from events.kinds import EventKind

KINDS = tuple(str(kind) for kind in EventKind)
OTHER = "other"
OUTCOMES = {200: "discarded", 204: "accepted", 401: "refused", 403: "refused", 500: "error", 503: "unavailable"}
# Seconds: a push reaches desktops in milliseconds when all is well; Pub/Sub's retries take minutes.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

PUSHES = Counter("aa_pushes_received", "Pushes the interceptor answered, by endpoint and answer.", ["kind", "outcome"])
REDELIVERIES = Counter("aa_push_redeliveries", "Pushes of a messageId already accepted (acknowledged, not sent again).",
                       ["kind"])
DELIVERIES = Counter("aa_event_deliveries", "Events handed to desktop connections, one per desktop per event.", ["kind"])
LATENCY = Histogram("aa_push_to_desktop_seconds",
                    "From the notification's Pub/Sub publishTime to this connector handing it to its desktops.",
                    buckets=LATENCY_BUCKETS)
DESKTOPS = Gauge("aa_desktops_connected", "Authenticated desktop connections open, by transport.", ["transport"],
                 multiprocess_mode="livesum")
STREAM_QUEUED_BYTES = Gauge("aa_stream_queued_bytes", "Bytes of streaming-call requests waiting to be posted.",
                            multiprocess_mode="livesum")
REPLAY_RESERVED_BYTES = Gauge("aa_replay_reserved_bytes", "Bytes of replay pages held (reserved) now.",
                              multiprocess_mode="livesum")
REPLAY_RESERVED_EVENTS = Gauge("aa_replay_reserved_events", "Events of replay pages held (reserved) now.",
                               multiprocess_mode="livesum")
REPLAY_RESERVED_PEAK = Gauge("aa_replay_reserved_bytes_peak",
                             "The most bytes of replay pages held at once since the process started.",
                             multiprocess_mode="max")
# Seconds: a page waits while others are written to their sockets.
REPLAY_WAIT_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
REPLAY_WAITS = Histogram("aa_replay_budget_wait_seconds",
                         "How long replay pages waited for the process's replay budget (those that waited).",
                         buckets=REPLAY_WAIT_BUCKETS)
REDIS_ERRORS = Counter("aa_redis_errors", "Redis failures the service handled, by what it was doing.", ["operation"])

# Children resolved once: a push or an event costs one increment, not a label lookup.
_pushes = {(kind, outcome): PUSHES.labels(kind, outcome) for kind in KINDS for outcome in set(OUTCOMES.values())}
_redeliveries = {kind: REDELIVERIES.labels(kind) for kind in KINDS}
_deliveries = {kind: DELIVERIES.labels(kind) for kind in (*KINDS, OTHER)}
# The payload's key as events.publish encodes it (orjson, no spaces). Inside a JSON string a quote is always
# escaped, so this text can only be the payload's own key; it sits near the end, after "data".
_PUBLISH_TIME_KEY = '"publish_time":"'


def push_answered(kind: str, status: int) -> None:
    """One push to ``kind``'s endpoint was answered ``status``."""
    child = _pushes.get((kind, OUTCOMES.get(status, "error")))
    if child is not None:
        child.inc()


def push_redelivered(kind: str) -> None:
    """A push repeated a messageId already accepted."""
    child = _redeliveries.get(kind)
    if child is not None:
        child.inc()


def event_handed_out(kind: str, payload_json: str, desktops: int, now: float | None = None) -> None:
    """An event reached ``desktops`` desktop connections of this process (none: nothing is counted)."""
    if not desktops:
        return
    _deliveries.get(kind, _deliveries[OTHER]).inc(desktops)
    published = publish_timestamp(payload_json)
    if published is not None:
        moment = time.time() if now is None else now
        LATENCY.observe(max(0.0, moment - published))


def event_sent_in_poll(kind: str) -> None:
    """An event went to one long-polling desktop, in a poll's answer (the hub counts no polling desktop)."""
    _deliveries.get(kind, _deliveries[OTHER]).inc()


def publish_timestamp(payload_json: str) -> float | None:
    """The payload's ``publish_time`` as a POSIX timestamp, or ``None`` when it has none or it is not a time."""
    start = payload_json.rfind(_PUBLISH_TIME_KEY)
    if start < 0:
        return None
    start += len(_PUBLISH_TIME_KEY)
    end = payload_json.find('"', start)
    try:
        return datetime.fromisoformat(payload_json[start:end]).timestamp()
    except ValueError:
        return None


def desktop_connected(transport: str) -> None:
    DESKTOPS.labels(transport).inc()


def desktop_disconnected(transport: str) -> None:
    DESKTOPS.labels(transport).dec()


def stream_bytes_queued(change: int) -> None:
    """Streaming-call requests of ``change`` bytes began (positive) or stopped (negative) waiting."""
    STREAM_QUEUED_BYTES.inc(change)


def redis_error(operation: str) -> None:
    """A Redis call failed while doing ``operation`` (and the service handled it)."""
    REDIS_ERRORS.labels(operation).inc()


def multiprocess_directory() -> str:
    """``PROMETHEUS_MULTIPROC_DIR``: empty unless several processes share their metrics."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


_replay_peak = 0


def replay_reserved(nbytes: int, events: int) -> None:
    """The replay pages of this process hold ``nbytes`` and ``events`` now."""
    global _replay_peak
    REPLAY_RESERVED_BYTES.set(nbytes)
    REPLAY_RESERVED_EVENTS.set(events)
    if nbytes > _replay_peak:
        _replay_peak = nbytes
        REPLAY_RESERVED_PEAK.set(nbytes)


def replay_budget_waited(seconds: float) -> None:
    """A replay page waited ``seconds`` for the process's budget."""
    REPLAY_WAITS.observe(seconds)


def exposition() -> bytes:
    """The Prometheus text of this process, or of every process sharing ``PROMETHEUS_MULTIPROC_DIR`` (reads files)."""
    if not multiprocess_directory():
        return generate_latest()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)


if multiprocess_directory():
    # The live-sum gauge leaves out a process that has exited only once it is marked dead.
    atexit.register(multiprocess.mark_process_dead, os.getpid())

