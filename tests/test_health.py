"""``/healthz`` and ``/readyz`` on every role: real server processes, a private Redis that the test stops."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_lib
from channels.testing import HttpCommunicator

from aa_site import health
from aa_site.asgi import application
from testing import processes

RESPONSE_TIMEOUT = 10.0


async def get(path: str, *, method: str = "GET") -> dict[str, Any]:
    """One request to the in-process ``application``."""
    return await HttpCommunicator(application, method, path).get_response(timeout=RESPONSE_TIMEOUT)


@pytest.mark.parametrize("role", ["connector", "interceptor"])
def test_ready_then_unavailable_when_redis_stops_while_alive_stays_ok(role: str) -> None:
    """Ready with Redis up; 503 naming the redis check within the short timeout once it stops; /healthz stays 200."""
    with processes.redis_server(private=True) as redis, processes.service_server(role=role, redis=redis) as server:
        with httpx.Client(base_url=server.http_url, timeout=RESPONSE_TIMEOUT) as client:
            alive = client.get("/healthz")
            assert (alive.status_code, alive.text) == (200, "ok")
            assert alive.headers["content-type"].startswith("text/plain")
            ready = client.get("/readyz")
            assert ready.status_code == 200, ready.text
            expected = {"settings": "ok", "redis": "ok"}
            if role == "connector":
                expected["signing_secret"] = "ok"
            assert ready.json() == {"status": "ready", "checks": expected}
            assert processes.TEST_JWT_SECRET not in ready.text
            # Stop the private Redis the way an outage looks: the server is gone, the port refuses.
            redis_lib.Redis(host=redis.host, port=redis.port).shutdown(nosave=True)
            down = client.get("/readyz")
            assert down.status_code == 503, down.text
            body = down.json()
            assert body["status"] == "unavailable"
            assert body["checks"]["redis"].startswith("failed: ")
            assert body["checks"]["settings"] == "ok"
            assert down.elapsed.total_seconds() < 5
            assert client.get("/healthz").status_code == 200
        assert "Traceback" not in server.log()


async def test_signing_secret_missing_makes_a_connector_unready(production_settings: Any, tmp_path: Path) -> None:
    """No secret in production: 503, the secret check and the start-up check id named, no values shown."""
    production_settings.JWT_SECRET_KEY = ""
    production_settings.JWT_SECRET_NAME = ""
    production_settings.JWT_SECRET_KEY_PATH = str(tmp_path / "absent")
    response = await get("/readyz")
    assert response["status"] == 503
    checks = json.loads(response["body"])["checks"]
    assert checks["signing_secret"].startswith("failed")
    assert "aa_site.E005" in checks["settings"]


async def test_short_secret_is_reported_without_its_value(production_settings: Any) -> None:
    production_settings.JWT_SECRET_KEY = "short-secret-value"
    response = await get("/readyz")
    assert response["status"] == 503
    assert b"short-secret-value" not in response["body"]


async def test_interceptor_role_does_not_check_a_signing_secret(settings: Any, tmp_path: Path) -> None:
    """An interceptor never signs: no signing_secret check, ready with Redis up."""
    settings.SERVICE_ROLE = "interceptor"
    response = await get("/readyz")
    assert response["status"] == 200, response["body"]
    assert "signing_secret" not in json.loads(response["body"])["checks"]


async def test_health_answers_only_get_and_head() -> None:
    assert (await get("/healthz", method="POST"))["status"] == 405
    assert (await get("/readyz", method="HEAD"))["status"] == 200


async def _old_redis(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A server speaking RESP as a Redis 6.2 would to what readiness asks: PING, INFO, anything else OK."""
    try:
        while line := await reader.readline():
            if not line.startswith(b"*"):
                continue
            words = []
            for _ in range(int(line[1:])):
                size = int((await reader.readline())[1:])
                words.append((await reader.readexactly(size + 2))[:-2].upper())
            if words[0] == b"PING":
                writer.write(b"+PONG\r\n")
            elif words[0] == b"INFO":
                info = b"# Server\r\nredis_version:6.2.14\r\nredis_mode:standalone\r\n"
                writer.write(b"$%d\r\n%s\r\n" % (len(info), info))
            else:
                writer.write(b"+OK\r\n")
            await writer.drain()
    finally:
        writer.close()


async def test_a_redis_older_than_7_makes_the_service_unready(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The history needs Redis 7 (functions, sharded pub/sub): an older server answers PING, yet /readyz says 503
    with the version, so a deployment on it never takes traffic that every push would fail."""
    server = await asyncio.start_server(_old_redis, "127.0.0.1", 0)
    try:
        settings.REDISHOST, settings.REDISPORT = "127.0.0.1", server.sockets[0].getsockname()[1]
        monkeypatch.setattr(health, "_redis_version_ok", False)
        response = await get("/readyz")
        assert response["status"] == 503, response["body"]
        assert json.loads(response["body"])["checks"]["redis"] == "failed: Redis 6.2.14 is older than 7.0"
    finally:
        server.close()


@pytest.mark.parametrize(("info", "old"), [
    ({"redis_version": "7.0.15"}, None),
    ({"redis_version": "6.2.14"}, "6.2.14"),
    ({"127.0.0.1:7000": {"redis_version": "7.2.4"}, "127.0.0.1:7001": {"redis_version": "6.2.6"}}, "6.2.6"),
    ({"127.0.0.1:7000": {"redis_version": "7.2.4"}}, None),
])
def test_the_oldest_node_decides(info: dict, old: str | None) -> None:
    """A cluster client answers INFO per node: one node below 7.0 is enough to refuse."""
    assert health.old_redis_version(info) == old
