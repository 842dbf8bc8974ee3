"""``REDIS_IAM_AUTH``: each Redis connection authenticates with the service's own Google access token.

A private redis-server whose password is the token a fake OAuth endpoint hands out
(``testing/fake_oauth.py``) stands in for Memorystore with ``--auth-mode=iam-auth``,
which accepts a live access token of an allowed principal as the AUTH password.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as redis
from redis.exceptions import RedisError

from aa_site import checks
from connector import ratelimit
from events import redis_client, redis_config
from testing import clients, fake_oauth, processes


@pytest.fixture
def tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[fake_oauth.FakeTokenEndpoint]:
    """The fake token endpoint, and Application Default Credentials that refresh from it."""
    with fake_oauth.serve() as fake:
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(fake.write_credentials(tmp_path)))
        yield fake


@pytest.fixture
def iam_redis(settings, tokens) -> Iterator[processes.RedisAddress]:
    """A redis-server that accepts the first token as its password, and the settings to use it with IAM auth."""
    with processes.redis_server(password=tokens.next_token()) as address:
        settings.REDISHOST, settings.REDISPORT, settings.REDIS_IAM_AUTH = address.host, address.port, True
        yield address


async def test_connections_authenticate_with_the_services_access_token(iam_redis, tokens) -> None:
    client = redis_client.get_redis()
    assert await client.ping()
    assert await redis_client.get_subscriber().ping()
    assert tokens.issued == ["access-token-1"]  # fresh for an hour: both clients' connections used the same one


async def test_a_token_near_its_expiry_is_renewed_for_the_next_connection(iam_redis, tokens) -> None:
    """Tokens that expire within the refresh margin: the next connection asks for a new one, as it must once the
    hour is nearly up; a connection already authenticated goes on."""
    tokens.expires_in = 60
    client = redis_client.get_redis()
    assert await client.ping()
    admin = redis.Redis(host=iam_redis.host, port=iam_redis.port, password="access-token-1")
    try:
        await admin.config_set("requirepass", "access-token-2")  # only a live token is accepted now
    finally:
        await admin.aclose()
    assert await client.ping()  # the connection authenticated with the first token
    await client.connection_pool.disconnect()
    assert await client.ping()
    assert tokens.issued == ["access-token-1", "access-token-2"]


async def test_without_a_token_redis_is_unavailable_to_its_callers(iam_redis, tokens) -> None:
    tokens.failing = True
    with pytest.raises(RedisError) as raised:
        await redis_client.get_redis().ping()
    assert "access-token" not in str(raised.value)
    # And a caller that survives Redis being down survives this: the rate limit lets the request through.
    assert await ratelimit.count(f"{ratelimit.KEY_PREFIX}iam:test", 60, "test") is None


def test_iam_auth_beside_a_password_is_refused(settings) -> None:
    settings.REDISHOST, settings.REDIS_IAM_AUTH, settings.REDIS_AUTH_STRING = "10.0.0.5", True, "a-password"
    assert "aa_site.E014" in [problem.id for problem in checks.check_redis_connection()]
    with pytest.raises(redis_config.RedisConfigError):
        redis_config.connection_options()
    settings.REDIS_AUTH_STRING = ""
    assert [problem.id for problem in checks.check_redis_connection()] == ["aa_site.W015"]  # no TLS
    assert redis_config.describe().endswith("AUTH with the service's Google access token (IAM)")


def test_a_connector_process_with_iam_auth_is_ready(settings, tokens, tmp_path: Path) -> None:
    with processes.redis_server(password=tokens.next_token()) as address, processes.service_server(
        role="connector", redis=None, REDISHOST=address.host, REDISPORT=str(address.port), REDIS_IAM_AUTH="true",
        GOOGLE_APPLICATION_CREDENTIALS=str(tokens.write_credentials(tmp_path)),
    ) as server:
        ready = httpx.get(f"{server.http_url}/readyz", timeout=clients.CLIENT_TIMEOUT)
        assert ready.status_code == 200, ready.text
        assert "access-token" not in server.log()
        assert "AUTH with the service's Google access token (IAM)" in server.log()
