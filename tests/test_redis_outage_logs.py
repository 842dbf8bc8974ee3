"""What a Redis outage leaves in the logs of a real connector and interceptor: a line per change, no tracebacks.

A private redis-server is stopped for 3 s and started again on the same port
while a desktop is joined through the connector (so its event subscription is
live) and pushes keep arriving at the interceptor every 0.2 s. Expected: the
connector says once that its subscription was lost and once that it was
restored; the interceptor answers 503 during the outage with one ERROR line
per 503 (no second line from Django); nothing logs a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator

import aiohttp
import httpx

from connector import tokens
from interceptor import push_samples
from tests import processes

OUTAGE_SECONDS = 3.0
PUSH_INTERVAL = 0.2


@contextlib.contextmanager
def restartable_redis() -> Iterator[tuple[processes.RedisAddress, "RedisProcess"]]:
    """A private redis-server that the test can stop and start again on the same port."""
    port = processes.free_port()
    with tempfile.TemporaryDirectory(prefix="aa-redis-outage-") as directory:
        redis = RedisProcess(port, directory)
        redis.start()
        try:
            yield processes.RedisAddress("127.0.0.1", port), redis
        finally:
            redis.stop()


class RedisProcess:
    def __init__(self, port: int, directory: str) -> None:
        self.port, self.directory, self.process = port, directory, None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        self.process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", self.directory],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        processes.wait_for_port(self.port, process=self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


async def test_a_redis_outage_logs_one_line_per_change_and_no_traceback() -> None:
    conversation = f"projects/{processes.TEST_PROJECT}/conversations/OUTAGE-{uuid.uuid4().hex[:8]}"
    with restartable_redis() as (address, redis), processes.daphne_server(
        role="connector", redis=address
    ) as connector, processes.daphne_server(role="interceptor", redis=address) as interceptor:
        statuses: list[int] = []
        async with aiohttp.ClientSession() as session, session.ws_connect(
            f"{connector.http_url}/ws/"
        ) as desktop, httpx.AsyncClient(timeout=10) as client:
            await desktop.send_json({"type": "authenticate", "token": tokens.issue_token(user="outage")})
            assert (await desktop.receive_json(timeout=10))["type"] == "authenticated"
            await desktop.send_json({"type": "join", "conversation": conversation})
            assert (await desktop.receive_json(timeout=10))["type"] == "joined"

            async def push_for(seconds: float, prefix: str) -> None:
                started, number = time.monotonic(), 0
                while time.monotonic() - started < seconds:
                    envelope = push_samples.sample_push(
                        push_samples.NEW_MESSAGE_EVENT, conversation, message_id=f"{prefix}{number}"
                    )
                    response = await client.post(
                        f"{interceptor.http_url}/new-message-event", content=push_samples.encode(envelope),
                        headers={"Content-Type": "application/json"},
                    )
                    statuses.append(response.status_code)
                    number += 1
                    await asyncio.sleep(PUSH_INTERVAL)

            await push_for(1.0, "before-")
            redis.stop()
            await push_for(OUTAGE_SECONDS, "during-")
            redis.start()
            await push_for(4.0, "after-")
            await asyncio.sleep(1.0)
        connector_log, interceptor_log = connector.log(), interceptor.log()

    refused = statuses.count(503)
    assert refused >= 5 and statuses[-1] == 204, statuses
    assert set(statuses) <= {204, 503}, statuses
    for log in (connector_log, interceptor_log):
        assert "Traceback" not in log, log
    assert connector_log.count("Event subscription lost") == 1, connector_log
    assert connector_log.count("Event subscription restored") == 1, connector_log
    assert " ERROR " not in connector_log, connector_log
    errors = [line for line in interceptor_log.splitlines() if " ERROR " in line]
    assert len(errors) == refused and all("Event store unavailable" in line for line in errors), errors
