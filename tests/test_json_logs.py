"""Logs as the image writes them (``LOG_FORMAT=json``): one JSON object per line that Cloud Logging reads.

Real server processes; each line of their output must parse as JSON with ``severity`` and ``message``,
and lines written while a request with ``X-Cloud-Trace-Context`` or ``traceparent`` is handled carry
``logging.googleapis.com/trace``. Tokens and conversation content never appear.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from aa_site import log_format
from testing import clients, processes

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACE_FIELD = "logging.googleapis.com/trace"
SECRET_TOKEN = "Bearer tok-" + uuid.uuid4().hex


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of ``text`` as a JSON object; fails on a line that is not one."""
    records = []
    for line in text.splitlines():
        record = json.loads(line)
        assert isinstance(record, dict) and {"severity", "message", "timestamp", "logger"} <= set(record), line
        records.append(record)
    return records


def wait_for_record(server: processes.Server, predicate, what: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in json_lines(server.log()):
            if predicate(record):
                return record
        time.sleep(0.05)
    raise AssertionError(f"no log line {what} in:\n{server.log()}")


@pytest.fixture(scope="module")
def interceptor(redis_server, tmp_path_factory) -> Iterator[processes.Server]:
    log_file = tmp_path_factory.mktemp("logs") / "aa.log"
    with processes.service_server(role="interceptor", redis=redis_server, LOG_FORMAT="json",
                                 LOGGING_FILE=str(log_file)) as server:
        server.log_file = log_file  # type: ignore[attr-defined]
        yield server


@pytest.mark.parametrize("headers", [
    {"X-Cloud-Trace-Context": f"{TRACE}/1;o=1"},
    {"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"},
], ids=["x-cloud-trace-context", "traceparent"])
def test_a_request_s_warning_is_json_with_severity_and_trace(interceptor, headers) -> None:
    message_id = f"poison-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"message": {"messageId": message_id, "data": "not base64 *** conversation text"}})
    response = httpx.post(f"{interceptor.http_url}/new-message-event", content=body,
                          headers={**headers, "Authorization": SECRET_TOKEN}, timeout=10)
    assert response.status_code == 200, response.text
    record = wait_for_record(interceptor, lambda r: message_id in r["message"], f"naming {message_id}")
    assert record["severity"] == "WARNING" and record["logger"] == "interceptor.push"
    assert record[TRACE_FIELD] == f"projects/{processes.TEST_PROJECT}/traces/{TRACE}"
    log = interceptor.log()
    assert SECRET_TOKEN.split()[1] not in log and "conversation text" not in log
    # LOGGING_FILE gets the same JSON lines.
    assert any(message_id in r["message"] for r in json_lines(interceptor.log_file.read_text()))  # type: ignore


def test_start_up_and_untraced_lines_are_json_without_a_trace(interceptor) -> None:
    record = wait_for_record(interceptor, lambda r: r["message"].startswith("aa-backend role=interceptor"),
                             "announcing the role")
    assert record["severity"] == "INFO" and TRACE_FIELD not in record
    message_id = f"untraced-{uuid.uuid4().hex[:8]}"
    httpx.post(f"{interceptor.http_url}/new-message-event", content=json.dumps({"message": {"messageId": message_id}}),
               headers={"X-Cloud-Trace-Context": 'not-a-trace", "forged": "1'}, timeout=10)
    record = wait_for_record(interceptor, lambda r: message_id in r["message"], f"naming {message_id}")
    assert TRACE_FIELD not in record


async def test_a_push_delivered_logs_json_only(redis_server, settings) -> None:
    """A connector and an interceptor in JSON mode through a whole delivery: every line of both is JSON."""
    (fixture,) = clients.valid_pushes(conversation_suffix=uuid.uuid4().hex[:8])[:1]
    with processes.service_server(role="all", redis=redis_server, LOG_FORMAT="json") as server:
        desktop = clients.SocketIODesktop()
        await desktop.connect(server, clients.server_token(settings, user="agent"))
        try:
            await desktop.join(fixture.published_as)
            await clients.push_all(server, [fixture])
            await clients.wait_until(lambda: len(desktop.events) == 1, what="the event")
        finally:
            await desktop.disconnect()
        records = json_lines(server.log())
    assert {r["severity"] for r in records} <= {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
    assert any(r["logger"] == "aa_site.access" for r in records)
    assert fixture.data not in json.dumps(records)


@pytest.mark.parametrize("cloud, parent, expected", [
    (f"{TRACE}/123;o=1", None, TRACE),
    (TRACE.upper(), None, TRACE),
    (None, f"00-{TRACE}-00f067aa0ba902b7-01", TRACE),
    ("garbage", f"00-{TRACE}-00f067aa0ba902b7-00", TRACE),
    ("0" * 32 + "/1", None, None),
    (None, f"00-{TRACE}-short-01", None),
    (f"{TRACE}x/1", None, None),
    (None, None, None),
])
def test_trace_ids_are_taken_only_in_their_documented_shapes(cloud, parent, expected) -> None:
    assert log_format.trace_id(cloud, parent) == expected


def test_text_format_for_local_runs(redis_server) -> None:
    with processes.service_server(role="interceptor", redis=redis_server, LOG_FORMAT="text") as server:
        httpx.get(f"{server.http_url}/healthz", timeout=10)
        deadline = time.monotonic() + 10
        while "aa_site.access" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = server.log().splitlines()
    assert lines and not any(line.startswith("{") for line in lines), lines
    assert any(" INFO aa_site " in line for line in lines), lines


def test_a_bad_log_format_stops_start_up() -> None:
    result = processes.service_exit(role="interceptor", redis=None, LOG_FORMAT="xml", DEVELOPMENT_MODE="true")
    assert result.returncode == 2 and "LOG_FORMAT must be one of json, text" in result.stderr, result.stderr


def test_logs_go_to_stdout_by_default(redis_server, tmp_path) -> None:
    """Without ``LOGGING_FILE`` or ``LOG_FORMAT``, the image's server writes its JSON lines to stdout (where Cloud
    Run takes them), not stderr: the start-up line and a request's warning with its trace."""
    environment = processes.server_environment(role="interceptor", redis=redis_server)
    for name in ("LOG_FORMAT", "LOGGING_FILE"):  # tests/settings.py sets LOG_FORMAT=text for the other tests
        environment.pop(name, None)
    port = processes.free_port()
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(processes.server_command(processes.IMAGE_SERVER, port), cwd=processes.REPOSITORY,
                                   env=environment, stdout=out, stderr=err)
    try:
        processes.wait_for_port(port, process=process)
        message_id = f"stdout-{uuid.uuid4().hex[:8]}"
        poison = json.dumps({"message": {"messageId": message_id}})
        httpx.post(f"http://127.0.0.1:{port}/new-message-event", content=poison,
                   headers={"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}, timeout=10)
        deadline = time.monotonic() + 10
        while message_id not in stdout.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        processes.stop(process)
    records = json_lines(stdout.read_text())
    assert any(r["message"].startswith("aa-backend role=interceptor") for r in records), records
    (warning,) = [r for r in records if message_id in r["message"]]
    assert warning[TRACE_FIELD] == f"projects/{processes.TEST_PROJECT}/traces/{TRACE}"
    assert stderr.read_text() == ""
