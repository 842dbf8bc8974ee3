"""Shared fixtures: a real Redis for the whole run, the channel layer on it, test settings."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from channels.layers import get_channel_layer

from tests import processes

_prefixes = itertools.count()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[processes.RedisAddress]:
    """A real Redis: ``AA_TEST_REDIS`` when given, else a private redis-server on a free port."""
    with processes.redis_server() as address:
        yield address


@pytest.fixture(autouse=True)
def redis_channel_layer(settings, redis_server):
    """Every test talks to the real pub/sub layer, with a prefix of its own so tests never share groups."""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [redis_server.url], "prefix": f"test{next(_prefixes)}"},
        }
    }
    settings.REDISHOST, settings.REDISPORT = redis_server.host, redis_server.port
    yield get_channel_layer()


@pytest.fixture
def production_settings(settings):
    """Settings as in production: development mode off."""
    settings.DEVELOPMENT_MODE = False
    return settings
