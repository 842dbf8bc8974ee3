"""The admin's login throttle in real connector processes (the image's server) on the test's Redis.

Failed logins are counted across instances: two processes, each with its own SQLite file (as Cloud Run
instances without ``DATABASE_URL``), or sharing a real PostgreSQL, lock a user name out together. Password
checks run one at a time per process, off the event loop, and a login that cannot wait for its turn is told
the admin is busy. The servers hash with ``testing.recording_hasher`` (``tests.settings_recording_hasher``),
which appends a line per hash to a file: how many hashes were running, and whether on an event loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from testing import clients, processes
from testing.processes import Server

PASSWORD = "operator-password-Qw81LmZp"
CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
_addresses = itertools.count(1)


def new_address() -> str:
    number = next(_addresses)
    return f"198.19.{number // 250}.{number % 250 + 1}"


def manage(environment: dict[str, str], *arguments: str) -> None:
    done = subprocess.run([sys.executable, "manage.py", *arguments], cwd=processes.REPOSITORY, env=environment,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr


@contextlib.contextmanager
def admin_servers(count: int, *, redis: processes.RedisAddress, databases: list[dict[str, str]], username: str,
                  hash_log: Path, **settings: str) -> Iterator[list[Server]]:
    """``count`` connectors, the i-th on ``databases[i % len]`` (each migrated, with the operator), one Redis prefix."""
    common = {"EVENT_KEY_PREFIX": f"login-{uuid.uuid4().hex[:8]}:", "ADMIN_SECURE_COOKIES": "false",
              "TRUSTED_PROXY_HOPS": "1", "DJANGO_SETTINGS_MODULE": "tests.settings_recording_hasher", **settings}
    for database in databases:
        environment = processes.server_environment(role="connector", redis=redis, **common, **database)
        manage(environment, "migrate", "--noinput")
        manage({**environment, "DJANGO_SUPERUSER_PASSWORD": PASSWORD}, "createsuperuser", "--noinput",
               "--username", username, "--email", "operator@example.com")
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(processes.service_server(role="connector", redis=redis, RECORDING_HASHER_LOG=str(
            hash_log), **common, **databases[number % len(databases)])) for number in range(count)]


def hashes(hash_log: Path) -> list[dict]:
    """What the servers' recording hasher wrote, one entry per password hashed."""
    if not hash_log.exists():
        return []
    return [json.loads(line) for line in hash_log.read_text().splitlines()]


async def login_form(client: httpx.AsyncClient) -> str:
    form = await client.get("/admin/login/")
    assert form.status_code == 200
    return CSRF_FIELD.search(form.text).group(1)


async def log_in(server: Server, username: str, password: str, address: str | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=clients.CLIENT_TIMEOUT) as client:
        token = await login_form(client)
        return await client.post("/admin/login/?next=/admin/live/",
                                 headers={"X-Forwarded-For": address or new_address()},
                                 data={"username": username, "password": password, "csrfmiddlewaretoken": token})


async def concurrent_logins(server: Server, number: int) -> list[httpx.Response]:
    """``number`` wrong-password logins posted at once (each with its form, name and address fetched first)."""
    async with contextlib.AsyncExitStack() as stack:
        sessions = [await stack.enter_async_context(httpx.AsyncClient(base_url=server.http_url,
                                                                      timeout=clients.CLIENT_TIMEOUT))
                    for _ in range(number)]
        tokens = [await login_form(client) for client in sessions]
        return await asyncio.gather(*[
            client.post("/admin/login/", headers={"X-Forwarded-For": new_address()},
                        data={"username": f"guess-{uuid.uuid4().hex[:6]}", "password": "wrong",
                              "csrfmiddlewaretoken": token})
            for client, token in zip(sessions, tokens)])


@pytest.mark.parametrize("database", ["sqlite-per-instance", "postgresql"])
async def test_failed_logins_are_counted_across_instances(database, request, redis_server, tmp_path) -> None:
    """Guesses alternate between two instances, each from a new address: the user name's fifth failure locks
    it out on both, the right password included, and a locked-out login hashes nothing."""
    if database == "postgresql":
        databases = [{"DATABASE_URL": request.getfixturevalue("postgres_url")}]
    else:
        databases = [{"SQLITE_PATH": str(tmp_path / f"admin-{number}.sqlite3")} for number in range(2)]
    username, hash_log = f"operator-{uuid.uuid4().hex[:6]}", tmp_path / "hashes.jsonl"
    with admin_servers(2, redis=redis_server, databases=databases, username=username, hash_log=hash_log) as servers:
        for attempt in range(4):
            answer = await log_in(servers[attempt % 2], username, "wrong")
            assert answer.status_code == 200 and "errornote" in answer.text
        locked = await log_in(servers[1], username, "wrong")
        assert locked.status_code == 429 and "Too many failed logins for this user name" in locked.text
        hashed = len(hashes(hash_log))
        for server in servers:
            answer = await log_in(server, username, PASSWORD)
            assert answer.status_code == 429 and "for this user name" in answer.text
            assert 0 < int(answer.headers["retry-after"]) <= 900
        assert len(hashes(hash_log)) == hashed == 5
        logs = "".join(server.log() for server in servers)
    assert "Traceback" not in logs and PASSWORD not in logs and username not in logs


async def test_passwords_are_checked_one_at_a_time_off_the_event_loop(redis_server, tmp_path) -> None:
    """Six wrong passwords at once: each answered with the form's error, hashed in turn, none on the event loop."""
    hash_log = tmp_path / "hashes.jsonl"
    with admin_servers(1, redis=redis_server, databases=[{"SQLITE_PATH": str(tmp_path / "admin.sqlite3")}],
                       username="operator", hash_log=hash_log, RECORDING_HASHER_SECONDS="0.3") as (server,):
        answers = await concurrent_logins(server, 6)
        assert [answer.status_code for answer in answers] == [200] * 6
        assert all("errornote" in answer.text for answer in answers)
        recorded = hashes(hash_log)
        assert len(recorded) == 6
        assert max(entry["in_flight"] for entry in recorded) == 1
        assert not any(entry["event_loop"] for entry in recorded)
        assert "Traceback" not in server.log()


async def test_logins_that_cannot_wait_for_a_password_check_are_told_busy(redis_server, tmp_path) -> None:
    """Each check takes a second; logins wait at most 0.2 s, one at a time: the rest get 503 busy, uncounted."""
    hash_log = tmp_path / "hashes.jsonl"
    with admin_servers(1, redis=redis_server, databases=[{"SQLITE_PATH": str(tmp_path / "admin.sqlite3")}],
                       username="operator", hash_log=hash_log, RECORDING_HASHER_SECONDS="1.0",
                       ADMIN_LOGIN_WAIT_SECONDS="0.2", ADMIN_LOGIN_QUEUE="1") as (server,):
        answers = await concurrent_logins(server, 6)
        busy = [answer for answer in answers if answer.status_code == 503]
        checked = [answer for answer in answers if answer.status_code == 200]
        assert len(busy) + len(checked) == 6 and busy and checked
        for answer in busy:
            assert "The admin is busy checking other logins. Your password was not checked" in answer.text
            assert answer.headers["retry-after"] == "1"
        recorded = hashes(hash_log)
        assert len(recorded) == len(checked)
        assert max(entry["in_flight"] for entry in recorded) == 1
        # Busy answers counted nothing: the operator still logs in (the addresses were all new anyway).
        assert (await log_in(server, "operator", PASSWORD)).status_code == 302
        log = server.log()
        assert "Traceback" not in log and " ERROR " not in log
        assert log.count("Admin logins answered busy") == 1
