"""What a Redis outage leaves in the logs of a real connector and interceptor: a line per change, no tracebacks.

A private redis-server is stopped for 3 s and started again on the same port
while a desktop is joined through the connector (so its event subscription is
live) and pushes keep arriving at the interceptor every 0.2 s. Expected: the
connector says once that its subscription was lost and once that it was
restored; the interceptor answers 503 during the outage, and its ERROR lines
(the first, then one per ``LOG_SAMPLE_SECONDS`` saying how many more) add up
to every 503; nothing logs a traceback.

The second test floods both during an outage (the image's ``ACCESS_LOG=errors``):
hundreds of pushes and long-polls answered 503 leave a few lines, the first of
each kind and, per ``LOG_SAMPLE_SECONDS``, one saying how many more there were,
which add up to every 503 (before: an ERROR and an access line per push, a
WARNING and an access line per poll).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
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
from testing import processes

OUTAGE_SECONDS = 3.0
PUSH_INTERVAL = 0.2
SAMPLE_SECONDS = 1.0
# One line for the first of a kind, then one per interval of the outage while they repeat, and one after it.
MOST_LINES_PER_KIND = 1 + int(OUTAGE_SECONDS / SAMPLE_SECONDS) + 2
SUMMARY = re.compile(r"(\d+) more like this in the last \d+ s; the last: ")


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
    sampling = {"LOG_SAMPLE_SECONDS": str(SAMPLE_SECONDS)}
    with restartable_redis() as (address, redis), processes.service_server(
        role="connector", redis=address, **sampling
    ) as connector, processes.service_server(role="interceptor", redis=address, **sampling) as interceptor:
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
    assert errors and all("Event store unavailable" in line for line in errors), errors
    assert lines_standing_for(errors) == refused, errors




def lines_standing_for(lines: list[str]) -> int:
    """How many occurrences ``lines`` report: one for a line written as it came, N for a summary of N."""
    return sum(int(match[1]) if (match := SUMMARY.search(line)) else 1 for line in lines)


async def test_a_flood_of_503s_during_an_outage_leaves_a_bounded_number_of_lines() -> None:
    """Pushes and long-polls as fast as a few clients send them while Redis is down: each kind of refusal is
    written once, then counted; the counts add up to every 503, and the log stays a few dozen lines."""
    environment = {"ACCESS_LOG": "errors", "LOG_SAMPLE_SECONDS": str(SAMPLE_SECONDS), "LOG_LEVEL": "INFO"}
    conversation = f"projects/{processes.TEST_PROJECT}/conversations/FLOOD-{uuid.uuid4().hex[:8]}"
    with restartable_redis() as (address, redis), processes.service_server(
        role="connector", redis=address, **environment
    ) as connector, processes.service_server(role="interceptor", redis=address, **environment) as interceptor:
        pushes: list[int] = []
        polls: list[int] = []
        async with httpx.AsyncClient(timeout=10) as client:
            async def push(number: int) -> None:
                envelope = push_samples.sample_push(push_samples.NEW_MESSAGE_EVENT, conversation,
                                                    message_id=f"flood-{number}")
                response = await client.post(f"{interceptor.http_url}/new-message-event",
                                             content=push_samples.encode(envelope),
                                             headers={"Content-Type": "application/json"})
                pushes.append(response.status_code)

            async def poll() -> None:
                response = await client.get(f"{connector.http_url}/socket.io/?EIO=4&transport=polling")
                polls.append(response.status_code)

            await push(0)
            redis.stop()
            started, number = time.monotonic(), 1
            while time.monotonic() - started < OUTAGE_SECONDS:
                await asyncio.gather(*(push(number + n) for n in range(4)), poll(), poll())
                number += 4
            redis.start()
            await asyncio.sleep(3 * SAMPLE_SECONDS)  # the last intervals' summaries
        connector_log, interceptor_log = connector.log(), interceptor.log()

    # Far more refusals than lines may stand for them (a slow machine sends fewer: the bound still shows).
    assert pushes[0] == 204 and pushes.count(503) >= 5 * MOST_LINES_PER_KIND, pushes
    assert polls.count(503) >= 3 * MOST_LINES_PER_KIND, polls
    for log in (connector_log, interceptor_log):
        assert "Traceback" not in log, log
    store_errors = [line for line in interceptor_log.splitlines() if "Event store unavailable" in line]
    push_lines = [line for line in interceptor_log.splitlines() if '"POST /new-message-event" 503' in line]
    poll_warnings = [line for line in connector_log.splitlines() if "Could not serve a long-polling request" in line]
    poll_lines = [line for line in connector_log.splitlines() if '"GET /socket.io/" 503' in line]
    for lines, refused in ((store_errors, pushes.count(503)), (push_lines, pushes.count(503)),
                           (poll_warnings, polls.count(503)), (poll_lines, polls.count(503))):
        assert 1 <= len(lines) <= MOST_LINES_PER_KIND, lines
        assert lines_standing_for(lines) == refused, lines
    # Everything else: start-up, the subscription lost and restored, no line per request.
    assert len(interceptor_log.splitlines()) <= 2 * MOST_LINES_PER_KIND + 10, interceptor_log
    assert len(connector_log.splitlines()) <= 2 * MOST_LINES_PER_KIND + 15, connector_log
