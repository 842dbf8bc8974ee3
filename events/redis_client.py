"""The shared redis-py asyncio client, one per event loop, for state kept in Redis outside the channel layer.

Created on first use in each loop (never at import), like channels-redis's own
connections, because an asyncio Redis connection belongs to the loop that
made it, and closed with that loop (``common.loop_local``). Every Redis client
of the service is made here, with the address, AUTH and TLS options of
``events.redis_config`` (Memorystore with ``--enable-auth`` and in-transit encryption).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import redis.asyncio as redis
from django.conf import settings
from django.core.signals import setting_changed
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from common.loop_local import LoopLocal
from events import redis_config

# Fail fast: a request waiting on a dead Redis should answer 503, not hang.
SOCKET_TIMEOUT_SECONDS = 5.0
# One quick retry rides out a dropped connection (Memorystore failover, idle
# disconnect); redis-py's default of three with backoff kept a request waiting
# seconds on a Redis that is simply down.
RETRY = Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=1)


class RedisNotConfigured(RuntimeError):
    """No REDISHOST (development mode without Redis)."""


def is_configured() -> bool:
    """Whether REDISHOST names a Redis; without it callers fall back to in-process state (development mode)."""
    return bool(settings.REDISHOST)


# Connections one process's client may open. Beyond, callers wait (up to SOCKET_TIMEOUT_SECONDS) for one
# to come free: redis-py's own pool raises "Too many connections" at its 100th instead, which a burst of
# desktops disconnecting at once (each starting its session's recovery window) reached.
MAX_CONNECTIONS = 64


def _new_client() -> redis.Redis:
    client = redis.Redis(
        **redis_config.connection_options(),
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        retry=RETRY,
    )
    # The same connections (address, AUTH, TLS), from a pool that makes callers wait instead of failing.
    made = client.connection_pool
    client.connection_pool = redis.BlockingConnectionPool(
        connection_class=made.connection_class,
        max_connections=MAX_CONNECTIONS,
        timeout=SOCKET_TIMEOUT_SECONDS,
        **made.connection_kwargs,
    )
    return client


async def _close(client: redis.Redis) -> None:
    await client.aclose()


def _new_subscriber() -> redis.Redis:
    # No socket timeout: a subscription sits idle for as long as no event comes, and a read
    # timing out would tear it down (channels-redis issue 422). Its reader pings when idle instead.
    return redis.Redis(
        **redis_config.connection_options(),
        socket_timeout=None,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_keepalive=True,
        retry=RETRY,
    )


_clients: LoopLocal[redis.Redis] = LoopLocal(_new_client, close=_close)
_subscribers: LoopLocal[redis.Redis] = LoopLocal(_new_subscriber, close=_close)


def get_redis() -> redis.Redis:
    """The client for the running event loop; ``RedisNotConfigured`` without REDISHOST."""
    if not is_configured():
        raise RedisNotConfigured("REDISHOST is not set")
    return _clients.get()


T = TypeVar("T")


class PerClient(Generic[T]):
    """An object built around the running loop's client (``get_redis()``), made on first use.

    Kept per loop and keyed by the client, and made anew when the client changed: a
    setting change makes new clients (``_reset``), and an object holding the old one
    (registered scripts, say) would talk to a Redis no longer configured. The stored
    client is compared too, so an entry is never handed out for another client that
    happens to have the same id.
    """

    def __init__(self, factory: Callable[[redis.Redis], T]) -> None:
        self._factory = factory
        self._made: LoopLocal[dict[int, tuple[redis.Redis, T]]] = LoopLocal(dict)

    def get(self) -> T:
        """The object for the running loop's client; ``RedisNotConfigured`` without REDISHOST."""
        client = get_redis()
        made = self._made.get()
        entry = made.get(id(client))
        if entry is None or entry[0] is not client:
            entry = made[id(client)] = (client, self._factory(client))
        return entry[1]


def get_subscriber() -> redis.Redis:
    """The running loop's client for pub/sub subscriptions (no read timeout); ``RedisNotConfigured`` without REDISHOST."""
    if not is_configured():
        raise RedisNotConfigured("REDISHOST is not set")
    return _subscribers.get()


def _reset(*, setting: str, **kwargs) -> None:
    if setting in ("REDISHOST", "REDISPORT") or setting.startswith("REDIS_"):
        _clients.clear()
        _subscribers.clear()


setting_changed.connect(_reset)
