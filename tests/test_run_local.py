"""The README's first command, ``scripts/run-local.sh``, as a developer runs it: no REDISHOST, no cloud account.

With redis-server installed it starts a private one on a free loopback
port, so a stock Socket.IO client with its default transports (long-polling
first, then the upgrade) connects, joins and receives a pushed event; Ctrl-C
(SIGINT to the script's process group) stops the server and that Redis.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from testing import processes
from testing.clients import SocketIODesktop, wait_until
from testing.push_bodies import push_body

SCRIPT = processes.REPOSITORY / "scripts" / "run-local.sh"
STARTED = re.compile(r"a private redis-server on 127\.0\.0\.1:(\d+)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def accepts_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
    except OSError:
        return False
    return True


@pytest.fixture
def run_local(request: pytest.FixtureRequest, tmp_path: Path):
    """``scripts/run-local.sh`` on a free port, in a process group of its own, with the settings of
    ``request.param`` if any; yields (port, process, log)."""
    port, log_path = free_port(), tmp_path / "run-local.log"
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith(("REDIS", "DJANGO_", "AA_TEST_", "GCP_", "JWT_", "AUTH_"))}
    environment.update(PORT=str(port), SQLITE_PATH=str(tmp_path / "admin.sqlite3"), **getattr(request, "param", {}))
    with log_path.open("wb") as log:
        process = subprocess.Popen(["bash", str(SCRIPT)], cwd=processes.REPOSITORY, env=environment,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120  # the first run may install the requirements
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/status", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise AssertionError(f"run-local.sh did not serve /status:\n{log_path.read_text(errors='replace')}")
        yield port, process, log_path
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


async def test_default_transports_work_and_ctrl_c_stops_the_private_redis(run_local) -> None:
    port, process, log_path = run_local
    started = STARTED.search(log_path.read_text(errors="replace"))
    assert started, log_path.read_text(errors="replace")
    redis_port = int(started.group(1))
    assert accepts_connections(redis_port)

    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        registered = await http.post("/register", headers={"Authorization": "anything"},
                                     json={"gcp_agent_assist_user": "developer"})
        assert registered.status_code == 200, registered.text
        desktop = SocketIODesktop()
        server = processes.Server(role="all", port=port, process=process, log_path=log_path)
        await desktop.connect(server, registered.json()["token"], transports=None)  # polling, then the upgrade
        try:
            conversation = "projects/local-dev-project/conversations/run-local"
            ok, _ = await desktop.join(conversation)
            assert ok is True
            pushed = await http.post("/new-message-event", content=push_body({"conversation": conversation}),
                                     headers={"Content-Type": "application/json"})
            assert pushed.status_code in (200, 204), pushed.text
            await wait_until(lambda: any(isinstance(payload, dict) and payload.get("conversation_name") == conversation
                                         for _, payload in desktop.events), what="the pushed event")
            await wait_until(lambda: desktop.client.transport() == "websocket", what="the upgrade")
        finally:
            await desktop.disconnect()

    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal sends
    process.wait(timeout=30)
    await asyncio.sleep(0.2)
    assert not accepts_connections(port)
    assert not accepts_connections(redis_port), "the private redis-server outlived run-local.sh"


@pytest.mark.parametrize("run_local", [{"LOCAL_REDIS": "off"}], indirect=True)
async def test_without_redis_long_polling_is_refused_and_the_websocket_transport_works(run_local) -> None:
    port, process, log_path = run_local
    assert not STARTED.search(log_path.read_text(errors="replace"))
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        polling = await http.get("/socket.io/", params={"EIO": "4", "transport": "polling"})
        assert polling.status_code == 400 and polling.json()["code"] == 0  # Transport unknown
        registered = await http.post("/register", headers={"Authorization": "anything"})
        desktop = SocketIODesktop()
        server = processes.Server(role="all", port=port, process=process, log_path=log_path)
        await desktop.connect(server, registered.json()["token"], transports=("websocket",))
        try:
            ok, _ = await desktop.join("projects/local-dev-project/conversations/run-local")
            assert ok is True
        finally:
            await desktop.disconnect()
