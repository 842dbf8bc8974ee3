"""Redis as Memorystore is deployed: AUTH (requirepass) and TLS with the instance's server CA, on a real redis-server.

Every Redis client of the service is made in ``events.redis_client`` from ``events.redis_config``; these
tests run the in-process event path (publish and a hub subscriber) and a real connector and interceptor
(the image's server) delivering a push to a Socket.IO desktop over TLS with AUTH, and check that a wrong password or
a wrong CA is refused with a clear error: 503 on a push, never a traceback, and never the password.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.core.checks import run_checks

from connector.desktops.fanout import get_hub
from events import conversations, redis_client
from events.publish import DeliveryUnavailable, publish
from testing import clients, processes
from testing.clients import SocketIODesktop
from testing.event_listener import listen
from testing.tls_files import TlsFiles, make_tls_files

PASSWORD = "auth-" + uuid.uuid4().hex
PAYLOAD = {"conversation_name": "projects/p/conversations/c", "data": "{}"}


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("redis-tls"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA that did not sign the server's certificate."""
    return make_tls_files(tmp_path_factory.mktemp("other-tls"), label="other")


@pytest.fixture(scope="module")
def secure_redis(tls_files: TlsFiles) -> Iterator[processes.RedisAddress]:
    """A redis-server speaking only TLS, with requirepass."""
    with processes.redis_server(password=PASSWORD, tls=tls_files) as address:
        yield address


@pytest.fixture(scope="module")
def auth_only_redis() -> Iterator[processes.RedisAddress]:
    """A plain-TCP redis-server with requirepass (REDISHOST/REDISPORT with an AUTH string)."""
    with processes.redis_server(password=PASSWORD) as address:
        yield address


def use_redis(settings: Any, address: processes.RedisAddress, **overrides: Any) -> None:
    """Point this process's Redis clients at ``address`` with TLS and AUTH as it needs (the settings fixture undoes it)."""
    settings.REDISHOST, settings.REDISPORT = address.host, address.port
    settings.REDIS_TLS = address.tls_ca_file is not None
    settings.REDIS_TLS_CA_FILE = str(address.tls_ca_file or "")
    settings.REDIS_AUTH_STRING = address.password or ""
    for name, value in overrides.items():
        setattr(settings, name, value)


def conversation() -> str:
    return f"projects/test-project/conversations/secure-{uuid.uuid4().hex[:8]}"


# --- In process ------------------------------------------------------------------


async def test_publish_reaches_a_hub_subscriber_over_tls_with_auth(settings, secure_redis) -> None:
    use_redis(settings, secure_redis)
    name = conversation()
    listener = await listen(name)
    try:
        await publish(conversation_name=name, event="new-message-event", payload=PAYLOAD, message_id="m-1")
        received = await listener.receive()
        assert (received["event"], received["payload"]) == ("new-message-event", PAYLOAD)
        options = redis_client.get_redis().connection_pool.connection_kwargs
        assert options["ssl_ca_certs"] == str(secure_redis.tls_ca_file) and options["ssl_cert_reqs"] == "required"
    finally:
        await get_hub().leave(conversations.normalise(name), listener)


async def test_auth_string_from_a_file_with_redishost(settings, auth_only_redis, tmp_path: Path) -> None:
    """Cloud Run mounts the AUTH string from Secret Manager as a file (REDIS_AUTH_STRING_FILE)."""
    secret = tmp_path / "auth_string"
    secret.write_text(PASSWORD + "\n")
    use_redis(settings, auth_only_redis, REDIS_AUTH_STRING="", REDIS_AUTH_STRING_FILE=str(secret))
    name = conversation()
    listener = await listen(name)
    try:
        await publish(conversation_name=name, event="conversation-lifecycle-event", payload=PAYLOAD)
        assert (await listener.receive())["payload"] == PAYLOAD
    finally:
        await get_hub().leave(conversations.normalise(name), listener)


async def test_a_wrong_password_is_delivery_unavailable_naming_authentication(settings, secure_redis) -> None:
    use_redis(settings, secure_redis, REDIS_AUTH_STRING="not-the-" + PASSWORD)
    with pytest.raises(DeliveryUnavailable) as raised:
        await publish(conversation_name=conversation(), event="new-message-event", payload=PAYLOAD)
    assert "AuthenticationError" in str(raised.value) or "invalid" in str(raised.value).lower(), raised.value
    assert PASSWORD not in str(raised.value)


async def test_no_password_is_delivery_unavailable(settings, secure_redis) -> None:
    use_redis(settings, secure_redis, REDIS_AUTH_STRING="")
    with pytest.raises(DeliveryUnavailable, match="(?i)auth"):
        await publish(conversation_name=conversation(), event="new-message-event", payload=PAYLOAD)


async def test_a_server_certificate_from_another_ca_is_refused(settings, secure_redis, other_ca) -> None:
    use_redis(settings, secure_redis, REDIS_TLS_CA_FILE=str(other_ca.ca_certificate))
    with pytest.raises(DeliveryUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        await publish(conversation_name=conversation(), event="new-message-event", payload=PAYLOAD)


async def test_plain_tcp_to_a_tls_only_redis_fails_instead_of_hanging(settings, secure_redis) -> None:
    use_redis(settings, secure_redis, REDIS_TLS=False, REDIS_TLS_CA_FILE="")
    with pytest.raises(DeliveryUnavailable):
        await publish(conversation_name=conversation(), event="new-message-event", payload=PAYLOAD)


# --- Start-up checks -------------------------------------------------------------


def redis_check_ids() -> dict[str, str]:
    return {m.id: m.msg for m in run_checks() if m.id in ("aa_site.E010", "aa_site.E011")}


def test_checks_pass_for_a_working_configuration(settings, secure_redis) -> None:
    use_redis(settings, secure_redis)
    assert redis_check_ids() == {}


def test_checks_name_a_password_given_twice_without_showing_it(settings, secure_redis, tmp_path: Path) -> None:
    use_redis(settings, secure_redis, REDIS_AUTH_STRING_FILE=str(tmp_path / "auth"))
    problems = redis_check_ids()
    assert "REDIS_AUTH_STRING and REDIS_AUTH_STRING_FILE" in problems["aa_site.E010"]
    assert PASSWORD not in problems["aa_site.E010"]


@pytest.mark.parametrize("content, reason", [(None, "cannot be read"), ("  \n", "is empty")])
def test_checks_name_an_unusable_auth_string_file(settings, secure_redis, tmp_path: Path, content, reason) -> None:
    path = tmp_path / "auth_string"
    if content is not None:
        path.write_text(content)
    use_redis(settings, secure_redis, REDIS_AUTH_STRING="", REDIS_AUTH_STRING_FILE=str(path))
    assert f"REDIS_AUTH_STRING_FILE {path} {reason}" in redis_check_ids()["aa_site.E010"]


@pytest.mark.parametrize("content, reason", [(None, "does not exist"), ("not a certificate", "not a readable PEM")])
def test_checks_name_an_unusable_ca_file(settings, secure_redis, tmp_path: Path, content, reason) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_text(content)
    use_redis(settings, secure_redis, REDIS_TLS_CA_FILE=str(path))
    assert reason in redis_check_ids()["aa_site.E011"]


def test_checks_name_a_ca_file_without_tls(settings, secure_redis) -> None:
    use_redis(settings, secure_redis, REDIS_TLS=False)
    assert "use rediss://" in redis_check_ids()["aa_site.E011"]


# --- Real processes ----------------------------------------------------------------


@contextlib.contextmanager
def cluster(redis: processes.RedisAddress | None, **extra: str) -> Iterator[dict[str, processes.Server]]:
    with contextlib.ExitStack() as stack:
        yield {role: stack.enter_context(processes.service_server(role=role, redis=redis, **extra))
               for role in ("connector", "interceptor")}


@pytest.fixture(scope="module")
def secure_cluster(secure_redis) -> Iterator[dict[str, processes.Server]]:
    """A connector and an interceptor reaching Redis by REDIS_URL=rediss://, the CA file and the AUTH string."""
    with cluster(secure_redis) as servers:
        yield servers


async def test_a_push_reaches_a_socketio_desktop_over_tls_with_auth(settings, secure_cluster, secure_redis) -> None:
    (fixture,) = clients.valid_pushes(conversation_suffix=uuid.uuid4().hex[:8])[:1]
    desktop = SocketIODesktop()
    await desktop.connect(secure_cluster["connector"], clients.server_token(settings, user="agent"))
    try:
        assert list(await desktop.join(fixture.published_as)) == [True, fixture.conversation]
        started = datetime.now(timezone.utc)
        await clients.push_all(secure_cluster["interceptor"], [fixture])
        await clients.wait_until(lambda: len(desktop.events) == 1, what="the event over TLS")
        clients.assert_received_exactly(desktop.events, [fixture], received_between=(started, datetime.now(timezone.utc)))
    finally:
        await desktop.disconnect()
    for server in secure_cluster.values():
        log = server.log()
        assert f"Redis at 127.0.0.1:{secure_redis.port}, TLS (server CA from {secure_redis.tls_ca_file}), AUTH" in log
        assert PASSWORD not in log and "Traceback" not in log


async def test_the_deployed_settings_reach_redis_over_tls_with_auth(settings, secure_redis, tmp_path: Path) -> None:
    """The variables deploy/*.yaml sets: REDISHOST/REDISPORT (no REDIS_URL), the server CA and the AUTH string as
    mounted files. A connector and an interceptor started with only those are ready and deliver a push."""
    auth_string = tmp_path / "auth_string"
    auth_string.write_text(PASSWORD + "\n")  # as Secret Manager's mounted version may end
    deployed = {"REDISHOST": secure_redis.host, "REDISPORT": str(secure_redis.port),
                "REDIS_TLS_CA_FILE": str(secure_redis.tls_ca_file), "REDIS_AUTH_STRING_FILE": str(auth_string)}
    (fixture,) = clients.valid_pushes(conversation_suffix=uuid.uuid4().hex[:8])[:1]
    with cluster(None, **deployed) as servers:
        for server in servers.values():
            ready = httpx.get(f"{server.http_url}/readyz", timeout=clients.CLIENT_TIMEOUT)
            assert ready.status_code == 200 and ready.json()["checks"]["redis"] == "ok", ready.text
        desktop = SocketIODesktop()
        await desktop.connect(servers["connector"], clients.server_token(settings, user="agent"))
        try:
            await desktop.join(fixture.published_as)
            await clients.push_all(servers["interceptor"], [fixture])
            await clients.wait_until(lambda: len(desktop.events) == 1, what="the event over TLS")
        finally:
            await desktop.disconnect()
        for server in servers.values():
            log = server.log()
            assert (f"Redis at {secure_redis.host}:{secure_redis.port}, TLS (server CA from "
                    f"{secure_redis.tls_ca_file}), AUTH") in log, log
            assert PASSWORD not in log and "Traceback" not in log


@pytest.mark.parametrize("wrong", ["password", "ca"])
async def test_a_wrong_password_or_ca_answers_503_to_a_push(secure_redis, other_ca, wrong: str) -> None:
    overrides = {"REDIS_AUTH_STRING": "wrong-" + PASSWORD} if wrong == "password" \
        else {"REDIS_TLS_CA_FILE": str(other_ca.ca_certificate)}
    (fixture,) = clients.valid_pushes(conversation_suffix=uuid.uuid4().hex[:8])[:1]
    with processes.service_server(role="interceptor", redis=secure_redis, **overrides) as interceptor:
        async with httpx.AsyncClient(timeout=clients.CLIENT_TIMEOUT) as client:
            response = await clients.push(client, interceptor, fixture)
            ready = await client.get(f"{interceptor.http_url}/readyz")
        log = interceptor.log()
    assert response.status_code == 503, response.text
    assert response.json() == {"message": "The event store is unavailable; retry later."}
    assert ready.status_code == 503 and ready.json()["checks"]["redis"].startswith("failed: ")
    expected = "AuthenticationError" if wrong == "password" else "CERTIFICATE_VERIFY_FAILED"
    assert expected in log, log
    assert "Traceback" not in log and PASSWORD not in log, log


def test_a_malformed_redis_url_stops_start_up_without_quoting_it() -> None:
    result = processes.service_exit(role="interceptor", redis=None, REDIS_URL=f"http://:{PASSWORD}@127.0.0.1:1")
    assert result.returncode == 2, result.stderr
    assert "REDIS_URL must be redis://" in result.stderr and "got scheme 'http'" in result.stderr
    assert PASSWORD not in result.stderr + result.stdout
