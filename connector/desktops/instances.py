"""This process's desktops as operators see them from any instance, and the channel that disconnects one of them.

Each connector process with desktops keeps one record in Redis,
``<prefix>instance:<process id>`` (JSON): its host and pid, its desktops by
transport, and up to ``MAX_REPORTED_DESKTOPS`` of them with a connection id,
the user, the transport, when it authenticated and the conversations it has
joined (names only). The record is rewritten every ``INSTANCE_REPORT_SECONDS``
and expires after three of those, so a crashed process drops out of the view
by itself; the process deletes it when its last desktop leaves. A process
that serves long-polls keeps its record too while it holds polling sessions
(``polling_sessions``), so that the view can list the instance its polling
desktops are placed on.

The same task listens on ``<prefix>control``: an operator's ``disconnect``
names an instance and a connection id, and the process holding that desktop
closes its WebSocket with ``close_codes.OPERATOR_DISCONNECT`` (4410). Every
process reads every control message; messages are rare (operators' clicks).

This costs a process one Redis connection (the subscription) and one ``SET``
per interval, whatever its number of desktops; nothing per event. Long-polling
desktops are no process's: the admin reads them from their sessions
(``connector.desktops.polling.operators``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import secrets
import socket
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

from django.conf import settings
from redis.exceptions import RedisError

from common.loop_local import LoopLocal
from connector.desktops import close_codes
from connector.desktops.presence import PROCESS_ID
from events import metrics, redis_client
from events.history import key_prefix

logger = logging.getLogger(__name__)

MAX_REPORTED_DESKTOPS = 500
DISCONNECT = "disconnect"
RETRY_SECONDS = 1.0
STARTED = time.time()


class Desktop(Protocol):
    """A desktop connection as the registry sees it (``connector.desktops.consumer.DesktopConsumer``)."""

    transport: str
    joined: set[str]

    async def close(self, code: int | None = None, reason: str | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class Entry:
    connection: str  # a random id, for the operator's disconnect
    user: str
    transport: str
    since: float


def record_key(instance: str = PROCESS_ID) -> str:
    return f"{key_prefix()}instance:{instance}"


def control_channel() -> str:
    return f"{key_prefix()}control"


class Registry:
    """This event loop's authenticated desktops, and the task that reports them and obeys the control channel."""

    def __init__(self) -> None:
        self._entries: dict[Desktop, Entry] = {}
        self._by_connection: dict[str, Desktop] = {}
        # Kept as desktops come and go: counting 10,000 entries at every report held the loop for milliseconds.
        self._by_transport: Counter[str] = Counter()
        self._polling_sessions = 0
        self._reporter: asyncio.Task | None = None

    def connected(self, desktop: Desktop, user: str) -> None:
        """``desktop`` authenticated as ``user``; counted until ``disconnected``."""
        if desktop in self._entries:
            return
        entry = Entry(secrets.token_hex(6), user, desktop.transport, time.time())
        self._entries[desktop] = entry
        self._by_connection[entry.connection] = desktop
        self._by_transport[entry.transport] += 1
        metrics.desktop_connected(entry.transport)
        self._keep_reporting()

    def disconnected(self, desktop: Desktop) -> None:
        entry = self._entries.pop(desktop, None)
        if entry is not None:
            del self._by_connection[entry.connection]
            self._by_transport[entry.transport] -= 1
            if not self._by_transport[entry.transport]:
                del self._by_transport[entry.transport]
            metrics.desktop_disconnected(entry.transport)
            self._keep_reporting()

    def desktops(self) -> list[Desktop]:
        """This loop's authenticated desktops, as they are now (``connector.desktops.drain`` closes them all)."""
        return list(self._entries)

    def polling_sessions(self, count: int) -> None:
        """This process holds ``count`` long-polling sessions now (``connector.desktops.polling.waiting``): none of its
        desktops here, but its record stays while it holds any."""
        self._polling_sessions = count
        self._keep_reporting()

    def _holds_anything(self) -> bool:
        return bool(self._entries or self._polling_sessions)

    def _keep_reporting(self) -> None:
        reporter = self._reporter
        if self._holds_anything():
            if redis_client.is_configured() and (reporter is None or reporter.done() or reporter.cancelling()):
                self._reporter = asyncio.get_running_loop().create_task(self._report())
        elif reporter is not None:
            # Unsubscribe and remove the record now, not at the end of the interval.
            reporter.cancel()

    def record(self) -> dict[str, Any]:
        """What this process writes to Redis."""
        listed = list(itertools.islice(self._entries.items(), MAX_REPORTED_DESKTOPS))
        return {
            "instance": PROCESS_ID,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "role": settings.SERVICE_ROLE,
            "started": STARTED,
            "updated": time.time(),
            "desktops_by_transport": dict(self._by_transport),
            "polling_sessions": self._polling_sessions,
            "desktops": [
                {"connection": entry.connection, "user": entry.user, "transport": entry.transport,
                 "since": entry.since, "conversations": sorted(desktop.joined)}
                for desktop, entry in listed
            ],
            "truncated": len(self._entries) > len(listed),
        }

    async def _report(self) -> None:
        """Write the record every interval and act on control messages, until this loop has no desktop (and no
        polling session) left."""
        pubsub = None
        failed = False
        try:
            while self._holds_anything():
                try:
                    if pubsub is None:
                        # After a failure on a cluster, from the cluster's layout now: its primary may have moved.
                        pubsub = await redis_client.subscriber_pubsub(ignore_subscribe_messages=True, relearn=failed)
                        await pubsub.subscribe(control_channel())
                        failed = False
                    await self._write()
                    await self._listen(pubsub, settings.INSTANCE_REPORT_SECONDS)
                except (RedisError, OSError) as error:
                    metrics.redis_error("instances")
                    logger.warning("Could not report this instance's desktops: %s: %s", type(error).__name__, error)
                    failed = True
                    if pubsub is not None:
                        await pubsub.aclose()
                        pubsub = None
                    await asyncio.sleep(RETRY_SECONDS)
        finally:
            if pubsub is not None:
                await pubsub.aclose()
            if not self._holds_anything():  # else a desktop came meanwhile, and a new reporter has it
                try:
                    await redis_client.get_redis().delete(record_key())
                except (RedisError, OSError):
                    metrics.redis_error("instances")  # the record expires by itself

    async def _write(self) -> None:
        ttl = max(1, round(3 * settings.INSTANCE_REPORT_SECONDS))
        await redis_client.get_redis().set(record_key(), json.dumps(self.record()), ex=ttl)

    async def _listen(self, pubsub, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self._holds_anything() and (remaining := deadline - time.monotonic()) > 0:
            message = await pubsub.get_message(timeout=remaining)
            if message is not None and message.get("type") == "message":
                await self._obey(message["data"])

    async def _obey(self, data: bytes | str) -> None:
        try:
            command = json.loads(data)
            action, instance, connection = command["action"], command["instance"], command["connection"]
        except (ValueError, TypeError, KeyError):
            logger.warning("Ignoring a malformed control message")
            return
        if action != DISCONNECT or instance != PROCESS_ID:
            return
        desktop = self._by_connection.get(connection)
        if desktop is None:
            logger.info("An operator asked to disconnect desktop %s, which is no longer connected", connection)
            return
        logger.info("Disconnecting desktop %s at an operator's request (close code %s)", connection,
                    close_codes.OPERATOR_DISCONNECT)
        await desktop.close(code=close_codes.OPERATOR_DISCONNECT)


async def _close(registry: Registry) -> None:
    if registry._reporter is not None:
        registry._reporter.cancel()


_registries: LoopLocal[Registry] = LoopLocal(Registry, close=_close)


def get_registry() -> Registry:
    """The running event loop's registry (one per process under the ASGI server)."""
    return _registries.get()


# --- what operators read and send (the admin) ----------------------------------------------


async def read_records() -> list[dict[str, Any]]:
    """Every live instance's record, by host then instance id."""
    client = redis_client.get_redis()
    # On a Redis Cluster, redis-py's scan_iter scans every primary, and the records are in many slots: one MGET
    # per slot (mget_nonatomic), not one for all.
    keys = [key async for key in client.scan_iter(match=record_key("*"), count=500)]
    read = client.mget_nonatomic if redis_client.is_cluster() else client.mget
    values = await read(keys) if keys else []
    records = []
    for value in values:
        if value is None:
            continue  # expired between the scan and the read
        try:
            records.append(json.loads(value))
        except ValueError:
            continue
    return sorted(records, key=lambda record: (str(record.get("host")), str(record.get("instance"))))


async def request_disconnect(instance: str, connection: str) -> int:
    """Ask ``instance`` to close desktop ``connection``; the number of processes that received the message."""
    message = json.dumps({"action": DISCONNECT, "instance": instance, "connection": connection})
    return await redis_client.get_redis().publish(control_channel(), message)
