"""What one client address may start and hold before it authenticates, counted across every connector instance.

Before a token is shown, the only identity a desktop has is its address
(``ratelimit.scope_client_address``: the peer, or the entry the trusted proxies
wrote). Two bounds apply per address, beside the per-process totals
(``WEBSOCKET_MAX_UNAUTHENTICATED``, ``SOCKETIO_MAX_WAITING_POLLS``), so one
client cannot take those totals' every slot:

- ``HANDSHAKE_RATE_LIMIT``: new Engine.IO sessions (a long-polling handshake,
  ``/socket.io/`` on the websocket transport without ``sid``) and ``/ws/``
  handshakes, in the registration limit's Redis window (``ratelimit.count``).
  Each long-polling handshake makes a Redis hash that lives
  ``WEBSOCKET_AUTH_TIMEOUT``; this bounds how many one address keeps.
- ``WEBSOCKET_MAX_UNAUTHENTICATED_PER_ADDRESS``: WebSockets open and not yet
  authenticated, plus long-polling GETs waiting for sessions not yet connected
  to ``/``, together. Counted in this process (a dict of counts, the bound
  whatever Redis does) and across instances in one Redis sorted set per
  address: member a connection's (or GET's) random id, score when it lapses by
  Redis's clock, so the entries of a process that died age out by
  themselves. One Lua script drops the lapsed entries, counts and adds; the
  entry is removed when the connection authenticates or closes, or the GET
  answers.

Redis unreachable: the limits fail open with a WARNING at most once a minute
(the process's own count still bounds the unauthenticated), as the
registration limit does: an outage of Redis must not lock every agent out.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from dataclasses import dataclass

from django.conf import settings
from redis.exceptions import RedisError

from connector import ratelimit
from events import metrics, redis_client

logger = logging.getLogger(__name__)

HANDSHAKE_BUCKET = "handshake"
HOLDS_KEY_PREFIX = "aa:preauth:"
# An entry outlives what it stands for by this much, so that a slow close or a late answer is still counted.
GRACE_SECONDS = 5.0
REFUSAL_LOG_INTERVAL_SECONDS = 60.0

# KEYS[1]: the address's sorted set; KEYS[2], when given: a long-polling session's hash
# (connector.desktops.engineio.store), whose GET holds nothing once the session is connected to "/" (its field
# 'connected' is '1'). On a Redis Cluster the two are in different slots: the session is asked apart, before
# (``Holds.take``).
# ARGV: room left in this process (0: none), the bound, the entry's id, its lifetime (ms).
# Returns 1 (held), 0 (refused) or 2 (a connected session: nothing held).
_TAKE_SCRIPT = """
if KEYS[2] and redis.call('HGET', KEYS[2], 'connected') == '1' then return 2 end
if tonumber(ARGV[1]) <= 0 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
local lifetime = tonumber(ARGV[4])
redis.call('ZADD', KEYS[1], now + lifetime, ARGV[3])
if redis.call('PTTL', KEYS[1]) < lifetime then redis.call('PEXPIRE', KEYS[1], lifetime) end
return 1
"""
HELD, REFUSED, CONNECTED = 1, 0, 2


async def handshake_refused(address: str) -> int | None:
    """Count a new session's handshake from ``address``: None when it may go on, else the seconds to wait."""
    limit = settings.HANDSHAKE_RATE_LIMIT
    if limit is None:
        return None
    requests, window = limit
    counted = await ratelimit.count(f"{ratelimit.KEY_PREFIX}{HANDSHAKE_BUCKET}:{address}", window, HANDSHAKE_BUCKET)
    if counted is None or counted[0] <= requests:
        return None
    count, milliseconds_left = counted
    if count == requests + 1:  # once per window and address
        logger.info("Rate limit %s/%ss reached for %s on handshakes (HANDSHAKE_RATE_LIMIT)", requests, window, address)
    return max(1, math.ceil(milliseconds_left / 1000))


@dataclass(frozen=True, slots=True)
class Hold:
    """One unauthenticated connection (or waiting GET) counted against ``address``."""

    address: str
    member: str
    in_redis: bool


class Holds:
    """This process's count of unauthenticated holds per address, and the shared count in Redis."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._last_refusal_logged = -REFUSAL_LOG_INTERVAL_SECONDS
        self._last_redis_warning = -REFUSAL_LOG_INTERVAL_SECONDS
        self._removing: set[asyncio.Task] = set()

    def held(self, address: str) -> int:
        """How many holds ``address`` has in this process."""
        return self._counts.get(address, 0)

    async def take(self, address: str, *, lifetime: float, session_key: str | None = None) -> Hold | None | bool:
        """Count one more against ``address`` for at most ``lifetime`` seconds: the ``Hold``, or None when the
        address holds its share already. With ``session_key`` (a long-polling session's hash), True instead when
        that session is connected to ``/``: its GET is no unauthenticated one."""
        bound = settings.WEBSOCKET_MAX_UNAUTHENTICATED_PER_ADDRESS
        room = bound - self.held(address)
        if session_key is None and room <= 0:
            return self._refused(address)
        member = secrets.token_hex(8)
        in_redis = False
        if redis_client.is_configured():
            try:
                outcome = await self._take_in_redis(address, session_key, room, bound, member, lifetime)
            except (RedisError, OSError) as error:
                metrics.redis_error("rate_limit")
                self._warn_redis_down(error)
                outcome = HELD if room > 0 else REFUSED
            else:
                in_redis = outcome == HELD
            if outcome == CONNECTED:
                return True
            if outcome == REFUSED:
                return self._refused(address)
        elif room <= 0:
            return self._refused(address)
        self._counts[address] = self.held(address) + 1
        return Hold(address, member, in_redis)

    @staticmethod
    async def _take_in_redis(address: str, session_key: str | None, room: int, bound: int, member: str,
                             lifetime: float) -> int:
        client = redis_client.get_redis()
        keys = [f"{HOLDS_KEY_PREFIX}{address}"]
        if session_key is not None:
            if not redis_client.is_cluster():
                keys.append(session_key)
            # On a cluster the session's hash is in its sid's slot, not the address's: asked apart, first. A
            # session connecting in between costs a hold that its GET releases when it answers.
            elif await client.hget(session_key, "connected") == b"1":
                return CONNECTED
        return await client.eval(_TAKE_SCRIPT, len(keys), *keys, room, bound, member,
                                 int((lifetime + GRACE_SECONDS) * 1000))

    def release(self, hold: Hold) -> None:
        """The connection authenticated, or the GET answered: it no longer counts (in Redis a moment later)."""
        self._uncount(hold)
        if hold.in_redis:
            # Not awaited: the caller may be a synchronous step (a sign-in); the entry lapses by itself anyway.
            task = asyncio.ensure_future(self._remove(hold))
            self._removing.add(task)
            task.add_done_callback(self._removing.discard)

    async def release_now(self, hold: Hold) -> None:
        """``release``, done in Redis too when this returns: for a connection that ended, which waits for nothing."""
        self._uncount(hold)
        if hold.in_redis:
            await self._remove(hold)

    def _uncount(self, hold: Hold) -> None:
        left = self._counts.get(hold.address, 0) - 1
        if left > 0:
            self._counts[hold.address] = left
        else:
            self._counts.pop(hold.address, None)

    async def _remove(self, hold: Hold) -> None:
        try:
            await redis_client.get_redis().zrem(f"{HOLDS_KEY_PREFIX}{hold.address}", hold.member)
        except (RedisError, OSError) as error:
            metrics.redis_error("rate_limit")
            self._warn_redis_down(error)

    def _refused(self, address: str) -> None:
        now = time.monotonic()
        if now - self._last_refusal_logged >= REFUSAL_LOG_INTERVAL_SECONDS:
            self._last_refusal_logged = now
            logger.warning("Refusing unauthenticated connections from %s: it holds %s already "
                           "(WEBSOCKET_MAX_UNAUTHENTICATED_PER_ADDRESS)", address,
                           settings.WEBSOCKET_MAX_UNAUTHENTICATED_PER_ADDRESS)
        return None

    def _warn_redis_down(self, error: Exception) -> None:
        now = time.monotonic()
        if now - self._last_redis_warning >= REFUSAL_LOG_INTERVAL_SECONDS:
            self._last_redis_warning = now
            logger.warning("The per-address bound on unauthenticated connections is enforced in this process only: "
                           "Redis is unreachable (%s)", type(error).__name__)


HOLDS = Holds()
