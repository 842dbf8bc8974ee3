"""A direct client for either kind of Redis a test runs its servers on: a standalone one or a cluster."""

from __future__ import annotations

import redis
import redis.asyncio

from testing.processes import RedisAddress, RedisClusterAddress


def sync_client(address: RedisAddress | RedisClusterAddress) -> redis.Redis | redis.RedisCluster:
    """A blocking client that reaches every key (on a cluster: at its slot's primary)."""
    if isinstance(address, RedisClusterAddress):
        return redis.RedisCluster(host=address.host, port=address.port)
    return redis.Redis(host=address.host, port=address.port)


def async_client(address: RedisAddress | RedisClusterAddress) -> redis.asyncio.Redis | redis.asyncio.RedisCluster:
    """An asyncio client that reaches every key (a cluster's learns the layout at its first command)."""
    if isinstance(address, RedisClusterAddress):
        return redis.asyncio.RedisCluster(host=address.host, port=address.port)
    return redis.asyncio.Redis(host=address.host, port=address.port)
