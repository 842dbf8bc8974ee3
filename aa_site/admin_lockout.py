"""Failed admin logins counted in Redis across every instance: django-axes' handler, locking out per user name
and per address.

django-axes (``AUTHENTICATION_BACKENDS``, ``aa_site.admin_login``) asks this
handler whether a login may be checked before any password is hashed, and
tells it about each failure. Two counters are kept, each with its own limit:
one per user name (``ADMIN_LOGIN_FAILURES_PER_USER``, whatever address the
guesses come from) and one per client address (``ADMIN_LOGIN_FAILURES_PER_ADDRESS``,
whatever names it tries; the address is ``connector.ratelimit.client_address``,
so ``TRUSTED_PROXY_HOPS`` and the IPv6 /64 apply as for registrations). Once a
counter reaches its limit, logins for that name, or from that address, are
refused for ``ADMIN_LOGIN_LOCKOUT_SECONDS`` (429, ``aa_site.admin_login``).

Why Redis and not axes' own handlers: its database handler shares counts only
where the admin's database is shared (PostgreSQL), not between instances with
their own SQLite file, and it writes several rows per failure; its cache
handler compares the larger of the counters with one limit, so a user name and
an address cannot have limits of their own, and Django's Redis cache would need
the AUTH string at import. Redis is where every other shared state of the
service lives (``events.redis_client``, with its TLS and AUTH), and one script
per failure counts both keys atomically, with Redis expiring them.

Each counted failure renews its counters' lifetime, so a lockout lasts the full
cool-off after the failure that reached the limit. Attempts refused while locked
out are not counted (``AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT`` off), so
hammering does not prolong the lockout. A successful login clears its user
name's counter, not its address's. Keys hold a digest of the user name, never
the name (someone may type a password there), and the logs name neither.

Without REDISHOST (development mode only) the same counters live in this
process. When Redis cannot be reached the login is refused (503, never a
password check), since a brute force would otherwise go uncounted.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from asgiref.sync import async_to_sync
from axes.handlers.base import AbstractAxesHandler, AxesBaseHandler
from axes.helpers import get_client_username
from axes.signals import user_locked_out
from django.conf import settings
from django.http import HttpRequest
from redis.exceptions import RedisError

from events import metrics, redis_client

logger = logging.getLogger(__name__)

REDIS_DOWN_WARNING_INTERVAL = 60.0

# KEYS: the counters; ARGV[1]: their lifetime in milliseconds. Returns each counter's new count.
_COUNT_SCRIPT = """
local counts = {}
for i, key in ipairs(KEYS) do
  counts[i] = redis.call('INCR', key)
  redis.call('PEXPIRE', key, ARGV[1])
end
return counts
"""
# KEYS: the counters. Returns count, milliseconds left, for each (a missing key: 0, -2).
_READ_SCRIPT = """
local out = {}
for i, key in ipairs(KEYS) do
  out[2 * i - 1] = tonumber(redis.call('GET', key) or '0')
  out[2 * i] = redis.call('PTTL', key)
end
return out
"""


class LoginThrottleUnavailable(Exception):
    """The failed-login counters cannot be read or written (Redis is down): the login is refused, unchecked."""


@dataclass(frozen=True)
class Lockout:
    """Why logins are refused: ``by`` "user name" or "address", for ``seconds_left`` more seconds."""

    by: str
    seconds_left: int


@dataclass(frozen=True)
class _Counter:
    by: str
    key: str
    limit: int


def cool_off(request: HttpRequest | None = None) -> timedelta:
    """``AXES_COOLOFF_TIME``: how long a lockout lasts (``ADMIN_LOGIN_LOCKOUT_SECONDS``, read when asked)."""
    return timedelta(seconds=settings.ADMIN_LOGIN_LOCKOUT_SECONDS)


def key_prefix() -> str:
    """Every counter's key prefix: one hash tag for all, so that on a Redis Cluster one script counts a login's
    user name and address together (admin logins are few: one slot holds them all)."""
    return f"{settings.EVENT_KEY_PREFIX}{{admin-login}}:"


def _counters(request: HttpRequest, credentials: dict | None) -> list[_Counter]:
    prefix = key_prefix()
    counters = []
    username = get_client_username(request, credentials)
    if username:
        digest = hashlib.sha256(str(username).encode("utf-8", "surrogatepass")).hexdigest()[:32]
        counters.append(_Counter("user name", f"{prefix}user:{digest}", settings.ADMIN_LOGIN_FAILURES_PER_USER))
    address = request.axes_ip_address or "unknown"
    counters.append(_Counter("address", f"{prefix}address:{address}", settings.ADMIN_LOGIN_FAILURES_PER_ADDRESS))
    return counters


class RedisLoginHandler(AbstractAxesHandler, AxesBaseHandler):
    """``AXES_HANDLER``: the counters in Redis (or this process), one limit per user name and one per address."""

    def is_locked(self, request: HttpRequest, credentials: dict | None = None) -> bool:
        """Whether a counter of this login is at its limit; the lockout is kept on the request for the answer."""
        counters = _counters(request, credentials)
        values = _store().read([counter.key for counter in counters])
        lockout = None
        for counter, (count, milliseconds_left) in zip(counters, zip(values[::2], values[1::2])):
            if count >= counter.limit:
                seconds = math.ceil(max(milliseconds_left, 0) / 1000) or 1
                if lockout is None or seconds > lockout.seconds_left:
                    lockout = Lockout(counter.by, seconds)
        request.aa_admin_lockout = lockout
        return lockout is not None

    def get_failures(self, request: HttpRequest, credentials: dict | None = None) -> int:
        """The larger of the two counts (axes' interface; the limits are compared in ``is_locked``)."""
        values = _store().read([counter.key for counter in _counters(request, credentials)])
        return max(values[::2], default=0)

    def user_login_failed(self, sender, credentials: dict, request: HttpRequest | None = None, **kwargs) -> None:
        """Count a failed password check; reaching a limit locks out at once (this answer is already a 429)."""
        if request is None:  # authenticate() called from code, not the login form: no address to count against
            return
        if request.axes_locked_out:  # refused before any password check: not counted, so the lockout does not grow
            request.axes_credentials = credentials
            return
        counters = _counters(request, credentials)
        lifetime = settings.ADMIN_LOGIN_LOCKOUT_SECONDS
        counts = _store().count([counter.key for counter in counters], lifetime * 1000)
        reached = [counter for counter, count in zip(counters, counts) if count >= counter.limit]
        if not reached:
            return
        lockout = Lockout(reached[0].by, lifetime)
        request.axes_locked_out = True
        request.axes_credentials = credentials
        request.aa_admin_lockout = lockout
        logger.warning("Admin logins locked out for %s s: %s failed logins for one %s (address %s)",
                       lifetime, reached[0].limit, lockout.by, request.axes_ip_address)
        user_locked_out.send("axes", request=request, username=get_client_username(request, credentials),
                             ip_address=request.axes_ip_address)

    def user_logged_in(self, sender, request: HttpRequest, user, **kwargs) -> None:
        """The right password clears its user name's failures (not its address's: one account must not unlock
        an address that guesses others)."""
        (counter, *_) = _counters(request, {settings.AXES_USERNAME_FORM_FIELD: user.get_username()})
        try:
            _store().delete([counter.key])
        except LoginThrottleUnavailable:
            pass  # logged by the store; the failures then expire with their cool-off

    def user_logged_out(self, sender, request: HttpRequest, user, **kwargs) -> None:
        """Nothing is counted at logout."""

    def reset_attempts(self, *, ip_address: str | None = None, username: str | None = None,
                       ip_or_username: bool = False) -> int:
        """Clear a user name's and/or an address's counter (``manage.py axes_reset_username`` / ``axes_reset_ip``)."""
        prefix = key_prefix()
        keys = []
        if username:
            keys.append(f"{prefix}user:{hashlib.sha256(username.encode('utf-8', 'surrogatepass')).hexdigest()[:32]}")
        if ip_address:
            keys.append(f"{prefix}address:{ip_address}")
        return _store().delete(keys) if keys else 0


class _RedisCounters:
    """The counters in Redis, through the service's client on the server's event loop (the login view runs in a
    worker thread; ``async_to_sync`` there runs the call on the loop that owns the client)."""

    def count(self, keys: list[str], milliseconds: int) -> list[int]:
        return [int(value) for value in self._call(_eval, _COUNT_SCRIPT, keys, milliseconds)]

    def read(self, keys: list[str]) -> list[int]:
        return [int(value) for value in self._call(_eval, _READ_SCRIPT, keys)]

    def delete(self, keys: list[str]) -> int:
        return int(self._call(_delete, keys))

    @staticmethod
    def _call(function, *args):
        try:
            return async_to_sync(function)(*args)
        except (RedisError, OSError) as error:
            metrics.redis_error("admin_login")
            _warn_redis_down(error)
            raise LoginThrottleUnavailable(type(error).__name__) from None


_last_redis_warning = -math.inf


def _warn_redis_down(error: Exception) -> None:
    """At most one WARNING a minute: a storm of logins during an outage is one line, not one per login."""
    global _last_redis_warning
    now = time.monotonic()
    if now - _last_redis_warning >= REDIS_DOWN_WARNING_INTERVAL:
        _last_redis_warning = now
        logger.warning("Admin logins refused: the failed-login counters in Redis at %s:%s are unreachable (%s)",
                       settings.REDISHOST, settings.REDISPORT, type(error).__name__)


async def _eval(script: str, keys: list[str], *arguments) -> list:
    return await redis_client.get_redis().eval(script, len(keys), *keys, *arguments)


async def _delete(keys: list[str]) -> int:
    return await redis_client.get_redis().delete(*keys)


class _LocalCounters:
    """The Redis scripts' behaviour in this process, for development mode without REDISHOST."""

    MAX_KEYS = 10_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, tuple[int, float]] = {}  # key -> (count, monotonic expiry)

    def _live(self, key: str, now: float) -> tuple[int, float]:
        count, expires = self._counters.get(key, (0, 0.0))
        return (count, expires) if expires > now else (0, 0.0)

    def count(self, keys: list[str], milliseconds: int) -> list[int]:
        now = time.monotonic()
        with self._lock:
            if len(self._counters) >= self.MAX_KEYS:
                self._counters = {k: v for k, v in self._counters.items() if v[1] > now}
            counts = []
            for key in keys:
                count = self._live(key, now)[0] + 1
                self._counters[key] = (count, now + milliseconds / 1000)
                counts.append(count)
        return counts

    def read(self, keys: list[str]) -> list[int]:
        now = time.monotonic()
        values = []
        with self._lock:
            for key in keys:
                count, expires = self._live(key, now)
                values += [count, math.ceil((expires - now) * 1000) if count else -2]
        return values

    def delete(self, keys: list[str]) -> int:
        with self._lock:
            return sum(self._counters.pop(key, None) is not None for key in keys)


_redis_counters = _RedisCounters()
_local_counters = _LocalCounters()


def _store() -> _RedisCounters | _LocalCounters:
    return _redis_counters if redis_client.is_configured() else _local_counters
