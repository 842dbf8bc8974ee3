"""Socket.IO session records, for connection state recovery on whichever connector a client comes back to.

A record (``<prefix>session:<pid>``, JSON) names the desktop and the
conversations it had joined, each with the position (epoch and sequence
number in that conversation, ``epoch-seq``) its join started at: what a
client whose offset does not name the conversation (it received no event
since the join) resumes from. It lives while the connection does (at most a token's lifetime) and
``SOCKETIO_RECOVERY_SECONDS`` after it ends. A token (its ``jti``) starts at
most ``SOCKETIO_SESSIONS_PER_TOKEN`` live records: its index,
``<prefix>token-sessions:<jti>``, a sorted set of pids by when each began, evicts
the ended ones and then the oldest when a new one begins, so a client that
connects over and over holds no more. A record is bounded too: at most
``MAX_CONVERSATIONS_PER_CONNECTION`` conversations, each name at most
``events.conversations.MAX_LENGTH`` characters, and at most as many epochs a
client's unusable offset named positions in (``stale``: a parsed offset holds no more).
A record of an earlier version (one position for every conversation) does
not load: its client is told it was not recovered. Saving again only rewrites a
record that still exists: an evicted one stays gone. Without Redis
(development mode) the records stay in process, under the same bound.

On a Redis Cluster (``REDIS_CLUSTER``) the script that starts a record
touches the record, its token's index and the token's other records: they
share one slot because the pid begins with a hash tag made from the token
(``{<digest of the jti>}<random>``, still opaque to the client) and the
index key holds the same tag.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field

from django.conf import settings

from common.loop_local import LoopLocal
from connector import tokens
from events import redis_client
from events.history import Offset, key_prefix

MAX_PID_LENGTH = 64

logger = logging.getLogger(__name__)

# KEYS: the new record, its token's index. ARGV: the record, its lifetime (ms), the most records per token, the
# records' key prefix, the pid. The index's ended records go first, then its oldest; returns how many were evicted.
_START = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
local limit = tonumber(ARGV[3])
if redis.call('ZCARD', KEYS[2]) <= limit then return 0 end
for _, pid in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if redis.call('EXISTS', ARGV[4] .. pid) == 0 then redis.call('ZREM', KEYS[2], pid) end
end
local evicted = 0
while redis.call('ZCARD', KEYS[2]) > limit do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  redis.call('DEL', ARGV[4] .. oldest)
  redis.call('ZREM', KEYS[2], oldest)
  evicted = evicted + 1
end
return evicted
"""


@dataclass
class Session:
    """What a recovering client gets back."""

    pid: str
    user: str
    project: str
    joined: dict[str, str] = field(default_factory=dict)  # conversation -> where its join started, ``epoch-seq``
    # Begun for a client that came back with an offset of the sequence all conversations once shared: every
    # event of each conversation's epoch came after its last one, so its joins start at their epoch's start.
    fresh_epoch: bool = False
    # Begun for a client that came back with a vector offset it could not resume from: per conversation digest
    # (``connector.desktops.offsets``), the position it had reached (``epoch-seq``; a record of an earlier version
    # holds the epoch only); a join of that conversation, now in another epoch, starts from there
    # (``connector.desktops.socketio.application.join_start``).
    stale: dict[str, str] = field(default_factory=dict)

    def joined_at(self, conversation: str) -> Offset:
        """Where ``conversation``'s join started."""
        return Offset.parse(self.joined[conversation]) or Offset("", 0)

    def join(self, conversation: str, at: Offset) -> None:
        self.joined[conversation] = str(at)

    def stale_position(self, digest: str) -> Offset | None:
        """The position ``stale`` holds for the conversation of ``digest`` (an epoch alone: its start)."""
        given = self.stale.get(digest)
        if given is None:
            return None
        return Offset.parse(given) or Offset(given, 0)


# Hex digits of the digest of a token's id in the hash tag its records and index share on a cluster.
_OWNER_TAG_DIGITS = 10


def _owner_tag(owner_id: str) -> str:
    return "{" + hashlib.sha256(owner_id.encode("utf-8")).hexdigest()[:_OWNER_TAG_DIGITS] + "}"


def new_pid(owner_id: str | None = None) -> str:
    """A private session id: unguessable, URL-safe; on a cluster it begins with ``owner_id``'s hash tag, so the
    records of one token share a slot with the token's index (``_START`` touches them all)."""
    token = secrets.token_urlsafe(18)
    if owner_id is not None and redis_client.is_cluster():
        return _owner_tag(owner_id) + token
    return token


def is_pid(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_PID_LENGTH and value.isascii() and value.isprintable()


def connected_ttl() -> int:
    """A record's lifetime while its connection is open: a token's lifetime, then the recovery window."""
    return settings.JWT_LIFETIME_MINUTES * 60 + settings.SOCKETIO_RECOVERY_SECONDS


def key(pid: str) -> str:
    """The Redis key of ``pid``'s record."""
    return f"{key_prefix()}session:{pid}"


def owner(identity: tokens.DesktopIdentity) -> str:
    """Whose records count together: the token's ``jti`` (its user's, for a token without one)."""
    return identity.token_id or f"user:{identity.project}/{identity.user}"


def index_key(owner_id: str) -> str:
    """The Redis key of the index of ``owner_id``'s records (on a cluster, in its records' slot)."""
    if redis_client.is_cluster():
        return f"{key_prefix()}token-sessions:{_owner_tag(owner_id)}{owner_id}"
    return f"{key_prefix()}token-sessions:{owner_id}"


async def start(session: Session, *, owner_id: str, ttl: int) -> None:
    """Write the new record ``session``, to expire after ``ttl`` seconds, evicting ``owner_id``'s ended records
    and then its oldest beyond ``SOCKETIO_SESSIONS_PER_TOKEN``."""
    limit = settings.SOCKETIO_SESSIONS_PER_TOKEN
    if not redis_client.is_configured():
        evicted = _memory.get().start(session, owner_id, ttl, limit)
    else:
        evicted = await _start_script.get()(
            keys=[key(session.pid), index_key(owner_id)],
            args=[_encoded(session), ttl * 1000, limit, key(""), session.pid],
        )
    if evicted:
        logger.info("Evicted %s recovery session(s) of one token: it started more than %s "
                    "(SOCKETIO_SESSIONS_PER_TOKEN)", evicted, limit)


async def load(pid: str) -> Session | None:
    """The record of ``pid``, or None when there is none (never was, or expired)."""
    if not redis_client.is_configured():
        return _memory.get().load(pid)
    raw = await redis_client.get_redis().get(key(pid))
    if raw is None:
        return None
    return _decoded(raw)


def _decoded(raw: bytes | str) -> Session | None:
    """The record ``raw``, or None when it is not one this version writes (an older record, with one position
    for every conversation, cannot be resumed from)."""
    try:
        session = Session(**json.loads(raw))
    except (ValueError, TypeError):
        return None
    if not isinstance(session.joined, dict) or not all(
            isinstance(at, str) and Offset.parse(at) is not None for at in session.joined.values()):
        return None
    return session


async def save(session: Session, *, ttl: int) -> None:
    """Rewrite ``session``'s record, to expire after ``ttl`` seconds; nothing when it is gone (expired, ended,
    or evicted by its token's newer ones: ``start``)."""
    if not redis_client.is_configured():
        _memory.get().save(session, ttl)
        return
    await redis_client.get_redis().set(key(session.pid), _encoded(session), ex=ttl, xx=True)


def _encoded(session: Session) -> str:
    # UTF-8 rather than \u escapes: a conversation name of 512 characters is then at most 2 KiB, not 6 KiB (its
    # characters were checked to be text, conversations.normalise).
    return json.dumps(asdict(session), ensure_ascii=False, separators=(",", ":"))


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
        self._owners: dict[str, OrderedDict[str, None]] = {}  # owner -> its pids, oldest first

    def load(self, pid: str) -> Session | None:
        found = self._records.get(pid)
        if found is None or found[0] < time.monotonic():
            self._records.pop(pid, None)
            return None
        return Session(**asdict(found[1]))

    def start(self, session: Session, owner_id: str, ttl: int, limit: int) -> int:
        self._drop_expired()
        self._records[session.pid] = (time.monotonic() + ttl, Session(**asdict(session)))
        pids = self._owners.setdefault(owner_id, OrderedDict())
        for pid in [pid for pid in pids if pid not in self._records]:
            del pids[pid]
        pids[session.pid] = None
        evicted = 0
        while len(pids) > limit:
            self._records.pop(pids.popitem(last=False)[0], None)
            evicted += 1
        return evicted

    def save(self, session: Session, ttl: int) -> None:
        self._drop_expired()
        if session.pid in self._records:
            self._records[session.pid] = (time.monotonic() + ttl, Session(**asdict(session)))

    def _drop_expired(self) -> None:
        now = time.monotonic()
        for pid in [pid for pid, (until, _) in self._records.items() if until < now]:
            del self._records[pid]
        for owner_id in [owner_id for owner_id, pids in self._owners.items()
                         if not any(pid in self._records for pid in pids)]:
            del self._owners[owner_id]

    def expire(self, pid: str, ttl: int) -> None:
        found = self._records.get(pid)
        if found is not None:
            self._records[pid] = (time.monotonic() + ttl, found[1])


_memory: LoopLocal[_MemorySessions] = LoopLocal(_MemorySessions)
_start_script: redis_client.PerClient = redis_client.PerClient(lambda client: client.register_script(_START))
