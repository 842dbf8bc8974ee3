"""The long-polling desktops as operators see them (the admin's live view), and the operator's disconnect.

No process holds a polling session: it is the Redis hash ``<prefix>eio:{<sid>}``
(``connector.desktops.engineio.store``), so the admin reads the sessions there, whichever
instance serves the page. A desktop is a session connected to ``/``: its
user, the conversations it joined, when it began, and the instance that took
its latest poll. Its connection id is a digest of the sid, never the sid
itself, which lets whoever knows it post packets as the session.

The operator's disconnect marks the session closed (``store.mark_closed``):
its pending or next poll, on whichever instance, answers Engine.IO's CLOSE,
ends the session and starts its recovery window, as a WebSocket closed with
4410 does; the client reconnects by itself and recovers.

Reading costs one ``SCAN`` of the keyspace and one ``HGETALL`` per polling
session (pipelined), when the page is loaded; nothing on the polls.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

from connector.desktops.engineio import store
from events import redis_client

TRANSPORT = "polling"
# Sessions read in one pipelined round trip.
BATCH = 500


def connection_id(sid: str) -> str:
    """The id the live view shows for the session ``sid``: stable on every instance, and not the sid."""
    return hashlib.sha256(sid.encode("utf-8")).hexdigest()[:12]


async def _sids() -> AsyncIterator[str]:
    """The sid of every polling session (a ``SCAN``: one at a time, never blocking Redis)."""
    async for key in redis_client.get_redis().scan_iter(match=store.session_keys_pattern(), count=BATCH):
        sid = store.sid_of(key)
        if sid is not None:
            yield sid


async def _sessions() -> AsyncIterator[tuple[str, dict[str, str]]]:
    """Every polling session's sid and fields, read ``BATCH`` at a time."""
    client = redis_client.get_redis()

    async def read(batch: list[str]) -> list[tuple[str, dict[str, str]]]:
        async with client.pipeline(transaction=False) as pipe:
            for sid in batch:
                pipe.hgetall(store.session_key(sid))
            values = await pipe.execute()
        return [(sid, {_text(k): _text(v) for k, v in fields.items()}) for sid, fields in zip(batch, values) if fields]

    batch: list[str] = []
    async for sid in _sids():
        batch.append(sid)
        if len(batch) >= BATCH:
            for found in await read(batch):
                yield found
            batch = []
    for found in await read(batch) if batch else []:
        yield found


async def desktops() -> list[dict[str, Any]]:
    """Every polling desktop (a session connected to ``/``), as the live view lists desktops."""
    found = []
    async for sid, fields in _sessions():
        state = store.PollingState.parse(sid, [item for pair in fields.items() for item in pair])
        if not state.connected or state.identity is None:
            continue
        found.append({
            "connection": connection_id(sid),
            "user": state.identity.user,
            "transport": TRANSPORT,
            "since": int(fields.get("created", "0")) / 1000,
            "conversations": sorted(state.joined),
            "instance": fields.get("served_by", ""),
        })
    return sorted(found, key=lambda desktop: (desktop["since"], desktop["connection"]))


async def disconnect(connection: str) -> bool:
    """Close the polling session whose connection id is ``connection``; False when there is none now."""
    async for sid in _sids():
        if connection_id(sid) == connection:
            return await store.mark_closed(sid, "operator")
    return False


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value
