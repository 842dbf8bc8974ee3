"""The ``/conversation-name`` store: integration key (for example a phone number) -> conversation name.

Kept in Redis (``events.redis_client.get_redis()``) under
``aa:{conversation-name}:<SHA-256 of the key>``, so the key itself (often
personal data) is never stored. Entries expire after
``CONVERSATION_NAME_TTL_SECONDS`` (0: kept until deleted, as in the sample).
Without ``REDISHOST`` (development mode only; the system checks require it
otherwise) an in-process dictionary stands in, so a local run works.

What a client can make the store hold is bounded: a key is stored as its
hash (64 bytes whatever its length, at most ``MAX_KEY_LENGTH`` characters),
a name is a conversation name of at most ``MAX_NAME_LENGTH`` characters, and
the deployment holds at most ``CONVERSATION_NAME_MAX_ENTRIES`` entries: an
index (``aa:{conversation-name}-index``, a sorted set of the entries' Redis keys
by expiry time) is kept with the entries in one script, so the count is exact
across instances; a new key beyond it raises ``StoreFull``. Per token, the
write rate limit bounds it (docs/dialogflow-proxy.md, ``CONVERSATION_NAME_RATE_LIMIT``).

The hash tag ``{conversation-name}`` keeps the entries and their index in one
slot, so that on a Redis Cluster the script still sees both (all on one shard:
the store is small and bounded). Earlier versions named them without the tag
(``aa:conversation-name:<hash>``, ``aa:conversation-name-index``); on a
standalone Redis those entries are still read, counted and deleted, and move
to the new name when written again.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections import OrderedDict
from collections.abc import Iterator

import redis.exceptions
from django.conf import settings

from events import conversations, metrics, redis_client

KEY_PREFIX = "aa:{conversation-name}:"
# Outside KEY_PREFIX's pattern, so a SCAN of the entries does not count it.
INDEX_KEY = "aa:{conversation-name}-index"
# The names before the hash tag: a standalone Redis upgraded in place holds entries under them (a cluster never does).
LEGACY_KEY_PREFIX = "aa:conversation-name:"
LEGACY_INDEX_KEY = "aa:conversation-name-index"
# Bounds on what a client may store: far above any phone number or call id, small enough that nobody
# uses the store as a blob store. A name must be a conversation name (events.conversations.MAX_LENGTH).
MAX_KEY_LENGTH = 256
MAX_NAME_LENGTH = conversations.MAX_LENGTH
# The development store forgets its oldest entries beyond this.
MAX_MEMORY_ENTRIES = 10_000


class StoreUnavailable(Exception):
    """Redis could not be reached or answered with an error."""


class StoreFull(Exception):
    """The store holds ``CONVERSATION_NAME_MAX_ENTRIES`` entries: a new key is refused (a stored one may change)."""


# Time from Redis (one clock for every instance). Expired entries leave the index first; a key already stored
# (indexed, or written before the index existed) may always be replaced. An entry deleted behind the
# endpoint's back stays counted until its expiry time.
# KEYS: entry, index, and on a standalone Redis the entry's and the index's legacy names (counted, and the
# entry moved to its new name). ARGV: name, TTL seconds (0: none), max entries. Returns 1 stored, 0 full.
_PUT = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms)
local count = redis.call('ZCARD', KEYS[2])
local stored = redis.call('ZSCORE', KEYS[2], KEYS[1]) or redis.call('EXISTS', KEYS[1]) == 1
if KEYS[3] then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now_ms)
  count = count + redis.call('ZCARD', KEYS[4])
  stored = stored or redis.call('EXISTS', KEYS[3]) == 1
  redis.call('ZREM', KEYS[4], KEYS[3])
  redis.call('DEL', KEYS[3])
end
if not stored and count >= tonumber(ARGV[3]) then
  return 0
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
  redis.call('ZADD', KEYS[2], now_ms + ttl * 1000, KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('ZADD', KEYS[2], '+inf', KEYS[1])
end
return 1
"""

# KEYS: entry, index, and on a standalone Redis their legacy names. Returns how many entries were removed.
_DELETE = """
redis.call('ZREM', KEYS[2], KEYS[1])
local removed = redis.call('DEL', KEYS[1])
if KEYS[3] then
  redis.call('ZREM', KEYS[4], KEYS[3])
  removed = removed + redis.call('DEL', KEYS[3])
end
return removed
"""


def storage_key(integration_key: str) -> str:
    """The Redis key for ``integration_key``: the prefix and the SHA-256 of its UTF-8 bytes."""
    return KEY_PREFIX + _digest(integration_key)


def legacy_storage_key(integration_key: str) -> str:
    """The key earlier versions stored ``integration_key`` under (no hash tag)."""
    return LEGACY_KEY_PREFIX + _digest(integration_key)


def _digest(integration_key: str) -> str:
    return hashlib.sha256(integration_key.encode("utf-8")).hexdigest()


def _script_keys(integration_key: str) -> list[str]:
    """The scripts' keys: on a standalone Redis with the legacy names too (a cluster never held them, and they
    are in other slots)."""
    keys = [storage_key(integration_key), INDEX_KEY]
    if not redis_client.is_cluster():
        keys += [legacy_storage_key(integration_key), LEGACY_INDEX_KEY]
    return keys


async def put(integration_key: str, conversation_name: str) -> None:
    """Store ``conversation_name`` under ``integration_key``, replacing any previous one; ``StoreFull`` when
    the key is new and the store holds ``CONVERSATION_NAME_MAX_ENTRIES`` already."""
    key, ttl = storage_key(integration_key), settings.CONVERSATION_NAME_TTL_SECONDS
    limit = settings.CONVERSATION_NAME_MAX_ENTRIES
    if not redis_client.is_configured():
        stored = _memory.put(key, conversation_name, ttl, limit)
    else:
        with _redis_errors():
            keys = _script_keys(integration_key)
            stored = await redis_client.get_redis().eval(
                _PUT, len(keys), *keys, conversation_name.encode("utf-8"), ttl, limit)
    if not stored:
        raise StoreFull()


async def get(integration_key: str) -> str | None:
    """The conversation name stored under ``integration_key``, or ``None``."""
    key = storage_key(integration_key)
    if not redis_client.is_configured():
        return _memory.get(key)
    with _redis_errors():
        if redis_client.is_cluster():
            value = await redis_client.get_redis().get(key)
        else:  # one round trip for both names
            value, legacy = await redis_client.get_redis().mget(key, legacy_storage_key(integration_key))
            value = legacy if value is None else value
    return None if value is None else value.decode("utf-8", errors="replace")


async def delete(integration_key: str) -> bool:
    """Remove the entry for ``integration_key``; ``False`` when there was none."""
    key = storage_key(integration_key)
    if not redis_client.is_configured():
        return _memory.delete(key)
    with _redis_errors():
        keys = _script_keys(integration_key)
        return bool(await redis_client.get_redis().eval(_DELETE, len(keys), *keys))


@contextlib.contextmanager
def _redis_errors() -> Iterator[None]:
    """Turn a Redis failure inside the block into ``StoreUnavailable`` carrying only the error's type name."""
    try:
        yield
    except (redis.exceptions.RedisError, OSError) as error:
        metrics.redis_error("integration_keys")
        raise StoreUnavailable(type(error).__name__) from None


class _MemoryStore:
    """Development stand-in for Redis: one process, expiry on read, oldest entries dropped past a bound."""

    def __init__(self) -> None:
        self._entries: OrderedDict[str, tuple[str, float | None]] = OrderedDict()

    def put(self, key: str, value: str, ttl: int, limit: int) -> bool:
        if key not in self._entries and len(self._entries) >= limit:
            for stale in list(self._entries):
                self.get(stale)  # drops it when expired
            if len(self._entries) >= limit:
                return False
        self._entries.pop(key, None)
        self._entries[key] = (value, time.monotonic() + ttl if ttl else None)
        while len(self._entries) > MAX_MEMORY_ENTRIES:
            self._entries.popitem(last=False)
        return True

    def get(self, key: str) -> str | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires is not None and time.monotonic() >= expires:
            del self._entries[key]
            return None
        return value

    def delete(self, key: str) -> bool:
        present = self.get(key) is not None
        self._entries.pop(key, None)
        return present


_memory = _MemoryStore()


async def count() -> int:
    """How many integration keys are stored (a SCAN of the keyspace: for the admin, not for requests)."""
    if not redis_client.is_configured():
        return len([key for key in list(_memory._entries) if _memory.get(key) is not None])
    # On a cluster, redis-py's scan_iter scans every primary; the legacy names exist only on a standalone Redis.
    prefixes = [KEY_PREFIX] if redis_client.is_cluster() else [KEY_PREFIX, LEGACY_KEY_PREFIX]
    with _redis_errors():
        return sum([len([key async for key in redis_client.get_redis().scan_iter(match=f"{prefix}*", count=1000)])
                    for prefix in prefixes])
