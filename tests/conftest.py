"""Shared fixtures: a real Redis for the whole run, each test with its own keys on it, test settings."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio.cluster import RedisCluster

from testing import processes

# Fixtures of the shared harness that several test modules use by name.
pytest_plugins = ("testing.dialogflow_fixtures",)

_prefixes = itertools.count()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[processes.RedisAddress]:
    """A real Redis: ``AA_TEST_REDIS`` when given, else a private redis-server on a free port."""
    with processes.redis_server() as address:
        yield address


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[processes.RedisClusterAddress]:
    """A real Redis Cluster (three primaries, a replica each): ``AA_TEST_REDIS_CLUSTER`` when given, else a private
    one on free ports, started on first use."""
    with processes.redis_cluster() as address:
        yield address


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL: ``AA_TEST_DATABASE_URL`` when given, else a private one, started on first use."""
    with processes.postgres_server() as url:
        yield url


@pytest.fixture(autouse=True)
def redis_events(settings, redis_server):
    """Every test talks to the real Redis, with a key prefix of its own so tests never share events."""
    settings.REDISHOST, settings.REDISPORT = redis_server.host, redis_server.port
    settings.EVENT_KEY_PREFIX = settings.PRESENCE_KEY_PREFIX = f"test{next(_prefixes)}:"
    return redis_server


@pytest.fixture(params=["standalone", "cluster"])
def redis_kind(request, settings, redis_events) -> str:
    """Runs a test on the standalone Redis and again on a Redis Cluster (``REDIS_CLUSTER``); a module opts in with
    ``pytestmark = pytest.mark.usefixtures("redis_kind")``, and a test keeps to one with
    ``@pytest.mark.parametrize("redis_kind", ["standalone"], indirect=True)``."""
    if request.param == "cluster":
        cluster = request.getfixturevalue("redis_cluster")
        settings.REDISHOST, settings.REDISPORT = cluster.host, cluster.port
        settings.REDIS_CLUSTER = True
    return request.param


@pytest.fixture
def production_settings(settings):
    """Settings as in production: development mode off."""
    settings.DEVELOPMENT_MODE = False
    return settings


@pytest.fixture
def primary():
    """A private standalone redis-server, for a test that gives it a replica (``replica``) and stops or promotes it."""
    with processes.redis_server(private=True) as address:
        yield address


@pytest.fixture
def replica(primary):
    """A real replica of ``primary`` (``processes.redis_replica``: pause, resume, promote)."""
    with processes.redis_replica(primary) as replica:
        yield replica


@pytest.fixture
async def direct(redis_cluster) -> AsyncIterator[RedisCluster]:
    """A cluster client of the test's own, to see where keys live (a module may define another ``direct``)."""
    client = RedisCluster(host=redis_cluster.host, port=redis_cluster.port)
    await client.initialize()
    yield client
    await client.aclose()
