"""The rate-limit window shared by all instances through Redis, and the client address a request comes from.

The DRF throttle classes (``connector.http.api.throttling``) count into it: per
client address for the registration endpoints, per token for
``/conversation-name`` writes, per token, user and client address for its
lookups; ``connector.desktops.preauth`` counts desktops' handshakes into it per
client address.

Algorithm: a fixed window per key that opens at the key's first request.
One Lua script increments the key's counter and, when the counter is new,
gives it the window as its expiry, so every instance counts into the same
key atomically (no read-then-write race between instances). A fixed window
costs one small key per identity and gives an exact ``Retry-After`` (the
key's remaining lifetime); its known weakness, up to twice the limit across a
window boundary, does not matter for throttling. Refused requests still count
but never move the expiry, so hammering does not prolong a lockout.

Without REDISHOST (development mode only) the same algorithm runs in this
process. When Redis cannot be reached the limiter fails open: requests pass
and a WARNING is logged (at most once a minute), because every registration
still has to satisfy the identity provider (and every write a valid token)
and an outage of Redis must not lock every agent out.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from redis.exceptions import RedisError

from events import metrics, redis_client

logger = logging.getLogger(__name__)

KEY_PREFIX = "aa:ratelimit:"
MAX_ADDRESS_CHARS = 64
REDIS_DOWN_WARNING_INTERVAL = 60.0

# KEYS[1]: the identity's counter; ARGV[1]: the window in milliseconds.
# Returns {count in this window, milliseconds until the window ends}.
# PTTL < 0 covers a new key and, defensively, a key that lost its expiry.
_WINDOW_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""


def client_address(request: HttpRequest) -> str:
    """The address a request is counted against (see ``forwarded_client``), IPv6 as its /64."""
    return _counted_address(request.META.get("HTTP_X_FORWARDED_FOR", ""), request.META.get("REMOTE_ADDR") or "")


def scope_client_address(scope: Mapping[str, Any]) -> str:
    """``client_address`` of an ASGI scope (an HTTP request or a WebSocket handshake ahead of Django).

    Repeated X-Forwarded-For headers are one list, joined with commas as Django joins them into META.
    """
    client = scope.get("client")
    peer = str(client[0]) if client else ""
    forwarded = ",".join(value.decode("latin-1") for name, value in scope.get("headers", ())
                         if name == b"x-forwarded-for")
    return _counted_address(forwarded, peer)


def _counted_address(forwarded_for: str, peer: str) -> str:
    return _bucket_address(forwarded_client(forwarded_for, settings.TRUSTED_PROXY_HOPS, peer))


def forwarded_client(forwarded_for: str, hops: int, peer: str) -> str:
    """The client address given ``hops`` trusted proxies that each append to X-Forwarded-For.

    With no trusted proxy the peer address is used and the header ignored: a
    client can write anything there. Each trusted proxy appends the address it
    saw, so the client is the ``hops``-th entry from the right; entries left of
    it are the client's own inventions. A shorter header than expected (a
    request that skipped a proxy) yields its left-most entry, the address
    seen by the outermost proxy that did handle it; none yields the peer.
    """
    if hops <= 0:
        return peer
    entries = [entry.strip() for entry in forwarded_for.split(",") if entry.strip()]
    if not entries:
        return peer
    return entries[max(0, len(entries) - hops)]


def _bucket_address(address: str) -> str:
    """Canonical text of the address; an IPv6 client owns a whole /64, so it is counted as one."""
    candidate = address.strip()
    if candidate.startswith("[") and "]" in candidate:  # "[2001:db8::1]:443"
        candidate = candidate[1 : candidate.index("]")]
    elif candidate.count(":") == 1:  # "203.0.113.7:443"
        candidate = candidate.split(":", 1)[0]
    try:
        parsed = ipaddress.ip_address(candidate)
    except ValueError:
        return address[:MAX_ADDRESS_CHARS] or "unknown"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


async def count(key: str, window: int, name: str) -> tuple[int, int] | None:
    """Count one request into ``key``: (count in this window, milliseconds left), or None when Redis is down.

    ``name`` (the throttle's bucket) goes into the warning that the limit is not enforced.
    """
    if not redis_client.is_configured():
        return _local.count(key, window)
    try:
        client = redis_client.get_redis()
        count, milliseconds_left = await client.eval(_WINDOW_SCRIPT, 1, key, window * 1000)
    except (RedisError, OSError) as error:
        metrics.redis_error("rate_limit")
        _warn_redis_down(error, name)
        return None
    return int(count), int(milliseconds_left)


_last_redis_warning = -math.inf


def _warn_redis_down(error: Exception, name: str) -> None:
    global _last_redis_warning
    now = time.monotonic()
    if now - _last_redis_warning >= REDIS_DOWN_WARNING_INTERVAL:
        _last_redis_warning = now
        logger.warning(
            "The %s rate limit not enforced: Redis at %s:%s is unreachable (%s); letting requests through",
            name,
            settings.REDISHOST,
            settings.REDISPORT,
            type(error).__name__,
        )


class _LocalWindows:
    """The Redis algorithm in this process, for development mode without REDISHOST."""

    MAX_KEYS = 10_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[int, float]] = {}  # key -> (count, monotonic end of window)

    def count(self, key: str, window: int) -> tuple[int, int]:
        now = time.monotonic()
        with self._lock:
            if len(self._windows) >= self.MAX_KEYS:
                self._windows = {k: v for k, v in self._windows.items() if v[1] > now}
            count, ends = self._windows.get(key, (0, 0.0))
            if ends <= now:
                count, ends = 0, now + window
            self._windows[key] = (count + 1, ends)
        return count + 1, math.ceil((ends - now) * 1000)


_local = _LocalWindows()
