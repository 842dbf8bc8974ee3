"""Real servers for tests and benchmarks: a private redis-server and server processes (the image's, or daphne).

Every server binds to 127.0.0.1 only and is stopped by the caller (the
context managers below). Used by ``tests/conftest.py`` and ``benchmarks/``; the clients that talk to
these servers are in ``tests/clients.py``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
# Random (secrets.token_urlsafe): the servers run in production mode, which refuses predictable secrets.
TEST_JWT_SECRET = "test-jwt-8z4bVNBnYh2NqrUHmWKXJh-uUTmcO1Qbzoa_WeAmpS1m"
TEST_PROJECT = "test-project"
# The module scripts/run-local.sh runs (daphne's CLI, path-only access log).
SERVE_MODULE = "aa_site.serve"
#: Server commands ``daphne_server`` can run, by the module each runs; ``IMAGE_SERVER`` is the one the
#: Dockerfile's CMD runs, and the one every test server runs unless a test asks for another.
SERVE_MODULES = {"daphne": SERVE_MODULE, "uvicorn": "aa_site.serve_uvicorn"}
SERVERS = tuple(SERVE_MODULES)
IMAGE_SERVER = "uvicorn"


def server_command(server: str, port: int) -> list[str]:
    """The command line of ``server`` serving ``aa_site.asgi:application`` on 127.0.0.1:``port``."""
    if server not in SERVE_MODULES:
        raise ValueError(f"unknown server {server!r}; one of {SERVERS}")
    return [sys.executable, "-m", SERVE_MODULES[server], "--bind", "127.0.0.1", "--port", str(port),
            "aa_site.asgi:application"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, *, process: subprocess.Popen | None = None, timeout: float = 20.0) -> None:
    """Block until something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@dataclass(frozen=True)
class RedisAddress:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"


@contextlib.contextmanager
def redis_server(*, private: bool = False) -> Iterator[RedisAddress]:
    """The Redis given by ``AA_TEST_REDIS`` (host:port), else (or when ``private``) a private redis-server on a
    free port; a test that stops its Redis asks for a private one."""
    given = os.environ.get("AA_TEST_REDIS")
    if given and not private:
        host, _, port = given.rpartition(":")
        yield RedisAddress(host or "127.0.0.1", int(port))
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server), and AA_TEST_REDIS is not set")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="aa-redis-") as directory:
        process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
             "--dir", directory, "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(port, process=process)
            yield RedisAddress("127.0.0.1", port)
        finally:
            process.terminate()
            process.wait(timeout=10)


@dataclass
class Server:
    """A running server process (``IMAGE_SERVER`` unless asked otherwise)."""

    role: str
    port: int
    process: subprocess.Popen
    log_path: Path

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def server_environment(*, role: str, redis: RedisAddress | None, **extra: str) -> dict[str, str]:
    """Environment for a production-like process: not development mode, real secret."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "AA_", "REDIS", "JWT_", "AUTH_OPTION", "DEVELOPMENT_MODE", "GCP_"))
    }
    environment.update(
        SERVICE_ROLE=role,
        GCP_PROJECT_ID=TEST_PROJECT,
        JWT_SECRET_KEY=TEST_JWT_SECRET,
        DJANGO_SETTINGS_MODULE="aa_site.settings",
        PYTHONPATH=str(REPOSITORY),
    )
    if redis is not None:
        environment.update(REDISHOST=redis.host, REDISPORT=str(redis.port))
    environment.update(extra)
    return environment


@contextlib.contextmanager
def daphne_server(
    *, role: str, redis: RedisAddress | None, cwd: Path = REPOSITORY, server: str = IMAGE_SERVER, **extra: str
) -> Iterator[Server]:
    """Run ``python -m aa_site.serve aa_site.asgi:application`` (the image's command, from ``cwd``; or another of
    ``SERVERS``) on a free loopback port until the block ends."""
    port = free_port()
    with tempfile.NamedTemporaryFile(prefix=f"aa-{role}-", suffix=".log", delete=False) as log:
        log_path = Path(log.name)
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            server_command(server, port),
            cwd=cwd,
            env=server_environment(role=role, redis=redis, **extra),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = Server(role=role, port=port, process=process, log_path=log_path)
    try:
        try:
            wait_for_port(port, process=process)
        except (RuntimeError, TimeoutError) as error:
            raise RuntimeError(f"{role} did not start: {error}\n{server.log()}") from None
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log_path.unlink(missing_ok=True)


def daphne_exit(
    *, role: str, redis: RedisAddress | None, without: tuple[str, ...] = (), timeout: float = 60.0, **extra: str
) -> subprocess.CompletedProcess[str]:
    """Run the server (as ``daphne_server`` does), expected to refuse to start; return its exit code and output.

    ``without`` names variables removed from the environment ``server_environment`` builds.
    """
    environment = server_environment(role=role, redis=redis, **extra)
    for name in without:
        environment.pop(name, None)
    return subprocess.run(
        server_command(IMAGE_SERVER, free_port()),
        cwd=REPOSITORY,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
