"""Socket.IO session records, for connection state recovery on whichever connector a client comes back to.

A record (``<prefix>session:<pid>``, JSON) names the desktop, the
conversations it had joined and the sequence number at each join, and the
position when the session began (what a client that saw no event yet resumes
from). It lives while the connection does (at most a token's lifetime) and
``SOCKETIO_RECOVERY_SECONDS`` after it ends. Without Redis (development mode)
the records stay in process.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass, field

from django.conf import settings

from common.loop_local import LoopLocal
from events import redis_client
from events.history import key_prefix

MAX_PID_LENGTH = 64


@dataclass
class Session:
    """What a recovering client gets back."""

    pid: str
    user: str
    project: str
    epoch: str
    since: int  # the sequence number when the session began
    joined: dict[str, int] = field(default_factory=dict)  # conversation -> sequence number at the join
    # Begun for a client that came back with an offset of an epoch Redis lost: every event of ``epoch`` came
    # after its last one, so its joins start at the epoch's start (``connector.socketio.application``).
    fresh_epoch: bool = False


def new_pid() -> str:
    """A private session id: unguessable, URL-safe."""
    return secrets.token_urlsafe(18)


def is_pid(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_PID_LENGTH and value.isascii() and value.isprintable()


def connected_ttl() -> int:
    """A record's lifetime while its connection is open: a token's lifetime, then the recovery window."""
    return settings.JWT_LIFETIME_MINUTES * 60 + settings.SOCKETIO_RECOVERY_SECONDS


def key(pid: str) -> str:
    """The Redis key of ``pid``'s record."""
    return f"{key_prefix()}session:{pid}"


async def load(pid: str) -> Session | None:
    """The record of ``pid``, or None when there is none (never was, or expired)."""
    if not redis_client.is_configured():
        return _memory.get().load(pid)
    raw = await redis_client.get_redis().get(key(pid))
    if raw is None:
        return None
    try:
        return Session(**json.loads(raw))
    except (ValueError, TypeError):
        return None


async def save(session: Session, *, ttl: int) -> None:
    """Write ``session``, to expire after ``ttl`` seconds."""
    if not redis_client.is_configured():
        _memory.get().save(session, ttl)
        return
    await redis_client.get_redis().set(key(session.pid), json.dumps(asdict(session)), ex=ttl)


async def expire(pid: str, *, ttl: int) -> None:
    """Let ``pid``'s record live ``ttl`` seconds more (0: remove it now)."""
    if not redis_client.is_configured():
        _memory.get().expire(pid, ttl)
        return
    client = redis_client.get_redis()
    if ttl > 0:
        await client.expire(key(pid), ttl)
    else:
        await client.delete(key(pid))


class _MemorySessions:
    def __init__(self) -> None:
        self._records: dict[str, tuple[float, Session]] = {}

    def load(self, pid: str) -> Session | None:
        found = self._records.get(pid)
        if found is None or found[0] < time.monotonic():
            self._records.pop(pid, None)
            return None
        return Session(**asdict(found[1]))

    def save(self, session: Session, ttl: int) -> None:
        now = time.monotonic()
        for pid in [pid for pid, (until, _) in self._records.items() if until < now]:
            del self._records[pid]
        self._records[session.pid] = (now + ttl, Session(**asdict(session)))

    def expire(self, pid: str, ttl: int) -> None:
        found = self._records.get(pid)
        if found is not None:
            self._records[pid] = (time.monotonic() + ttl, found[1])


_memory: LoopLocal[_MemorySessions] = LoopLocal(_MemorySessions)
