"""A connector's drain on SIGTERM: every desktop told to reconnect elsewhere, every recovery window started in batches.

Cloud Run replaces each instance on a deploy and removes instances on scale-in:
SIGTERM, then SIGKILL 10 s later. The server (``aa_site.serve_uvicorn``) stops
accepting connections and calls ``drain`` before it closes what is left:

1. The recovery record of every Socket.IO desktop here gets its lifetime cut
   to ``SOCKETIO_RECOVERY_SECONDS``, as a desktop's disconnect does
   (``connection_ended``), but ``RECORD_BATCH`` at a time in one Redis pipeline,
   one pooled connection per batch: one ``EXPIRE`` round trip and one pooled
   connection per desktop, 10,000 at once, is what ran the pool out ("No
   connection available"). Written before the desktops are told, so that no
   late ``EXPIRE`` shortens a record a reconnected desktop renewed elsewhere.
   A record still exists (with its connected lifetime) if its batch fails or
   ``RECORD_SECONDS`` pass first: recovery works all the same, and the
   desktop's disconnect does not try it again.
2. Every authenticated WebSocket desktop is closed with ``close_codes.RECONNECT``
   (4012): for Socket.IO a transport close without Engine.IO's CLOSE packet,
   which socket.io-client and python-socketio both treat as a lost connection
   and reconnect (python-socketio stops for good on a CLOSE packet);
   socket.io-client then recovers with ``auth.pid`` (python-socketio has no
   recovery: it joins again). ``/ws/`` clients reconnect and join with
   ``after``. The closes go out together; the drain waits for their handshakes
   at most ``CLOSE_SECONDS``.
3. Every long-poll waiting here answers at once (a noop when it has nothing):
   a polling session lives in Redis, so its next GET simply reaches another
   instance, and nothing needs recovering.

While the process drains (``common.draining``) the hub leaves conversations
without touching Redis: its subscriptions end with the process, and its presence
membership expires by itself (``PRESENCE_KEY_TTL_SECONDS``) instead of the
presence key blinking out between a desktop leaving here and joining elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from django.conf import settings

from connector.desktops import close_codes, instances, sessions
from connector.desktops.polling.waiting import get_pollers
from connector.desktops.socketio.consumer import SocketIOConsumer
from events import redis_client

logger = logging.getLogger(__name__)

#: Recovery records per pipeline: 10,000 desktops are 20 round trips.
RECORD_BATCH = 500
#: Pipelines in flight at once (each holds one pooled connection while it runs).
RECORD_PIPELINES = 4
#: How long the records may take in all; past it, what is left keeps its connected lifetime.
RECORD_SECONDS = 3.0
#: How long the drain waits for the desktops' close handshakes (the server closes what is left after it).
CLOSE_SECONDS = 2.0


@dataclass
class Drained:
    """What one drain did."""

    desktops: int = 0  # WebSocket desktops told to reconnect (close code 4012)
    socketio: int = 0  # of them, Socket.IO
    records: int = 0  # recovery records whose window was started
    record_failures: int = 0  # records left with their connected lifetime (a batch failed or ran out of time)
    polls: int = 0  # long-polls answered at once
    record_seconds: float = 0.0  # of ``seconds``, writing the records
    closed: int = 0  # closes whose handshake completed within ``CLOSE_SECONDS``
    seconds: float = 0.0


async def drain() -> Drained:
    """Start every recovery window here in batches, tell every desktop to reconnect, answer every waiting poll;
    log one INFO line with the counts."""
    started = time.monotonic()
    result = Drained()
    desktops = instances.get_registry().desktops()
    recovering = [desktop for desktop in desktops
                  if isinstance(desktop, SocketIOConsumer) and desktop.session is not None]
    result.socketio = sum(isinstance(desktop, SocketIOConsumer) for desktop in desktops)
    if recovering and settings.SOCKETIO_RECOVERY_SECONDS:
        result.records, result.record_failures = await start_recovery_windows(recovering)
    result.record_seconds = time.monotonic() - started
    result.polls = get_pollers().interrupt_waiting()
    closes = [asyncio.ensure_future(_tell(desktop)) for desktop in desktops]
    result.desktops = len(closes)
    if closes:
        done, _ = await asyncio.wait(closes, timeout=CLOSE_SECONDS)
        result.closed = len(done)
    result.seconds = time.monotonic() - started
    logger.info("Drained for shutdown: told %s desktops to reconnect (%s Socket.IO, %s /ws/; %s closes completed), "
                "started %s recovery windows in batches (%s left as they were) in %.2f s, answered %s waiting "
                "long-polls, in %.2f s", result.desktops, result.socketio, result.desktops - result.socketio,
                result.closed, result.records, result.record_failures, result.record_seconds, result.polls,
                result.seconds)
    return result


async def start_recovery_windows(desktops: list[SocketIOConsumer]) -> tuple[int, int]:
    """Cut the records of ``desktops``' sessions to the recovery window, ``RECORD_BATCH`` per pipeline; their
    disconnects write them no more, whatever the outcome: a record left as it was still lets its desktop recover,
    and ten thousand single writes retried against a Redis that just failed the batches are what the batches
    avoid. (written, left as they were)"""
    for desktop in desktops:
        desktop.recovery_window_started = True
    ttl = settings.SOCKETIO_RECOVERY_SECONDS
    batches = [desktops[start:start + RECORD_BATCH] for start in range(0, len(desktops), RECORD_BATCH)]
    slots = asyncio.Semaphore(RECORD_PIPELINES)
    written = 0

    async def one(batch: list[SocketIOConsumer]) -> None:
        nonlocal written
        async with slots:
            if redis_client.is_configured():
                pipeline = redis_client.get_redis().pipeline(transaction=False)
                for desktop in batch:
                    pipeline.expire(sessions.key(desktop.session.pid), ttl)
                await pipeline.execute()
            else:
                for desktop in batch:
                    await sessions.expire(desktop.session.pid, ttl=ttl)
        written += len(batch)

    tasks = [asyncio.ensure_future(one(batch)) for batch in batches]
    done, pending = await asyncio.wait(tasks, timeout=RECORD_SECONDS)
    for task in pending:
        task.cancel()
    failures = [task.exception() for task in done if task.exception() is not None]
    if failures or pending:
        first = failures[0] if failures else TimeoutError(f"not done within {RECORD_SECONDS} s")
        logger.warning("Could not start %s recovery windows in the drain (their records keep their connected "
                       "lifetime): %s: %s", len(desktops) - written, type(first).__name__, first)
    return written, len(desktops) - written


async def _tell(desktop: instances.Desktop) -> None:
    try:
        await desktop.close(code=close_codes.RECONNECT, reason=close_codes.RECONNECT_REASON)
    except (OSError, RuntimeError):
        pass  # the connection ended meanwhile
