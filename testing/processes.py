"""Real servers for tests and benchmarks: a private redis-server and server processes (the image's, or daphne).

Every server binds to 127.0.0.1 only and is stopped by the caller (the
context managers below). Used by ``tests/conftest.py`` and ``benchmarks/``; the clients that talk to
these servers are in ``testing/clients.py``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from testing.tls_files import TlsFiles

REPOSITORY = Path(__file__).resolve().parent.parent
# Random (secrets.token_urlsafe): the servers run in production mode, which refuses predictable secrets.
TEST_JWT_SECRET = "test-jwt-8z4bVNBnYh2NqrUHmWKXJh-uUTmcO1Qbzoa_WeAmpS1m"
TEST_PROJECT = "test-project"
# The module scripts/run-local.sh runs (daphne's CLI, path-only access log).
SERVE_MODULE = "aa_site.serve"
#: Server commands ``service_server`` can run, by the module each runs; ``IMAGE_SERVER`` is the one the
#: Dockerfile's CMD runs, and the one every test server runs unless a test asks for another.
SERVE_MODULES = {"daphne": SERVE_MODULE, "uvicorn": "aa_site.serve_uvicorn"}
SERVERS = tuple(SERVE_MODULES)
IMAGE_SERVER = "uvicorn"
# Settings the image's ENV sets that change how its server performs (tests/test_dockerfile.py checks they are
# there): the benchmarks run the image's server with them; the tests run it with the defaults.
IMAGE_ENV = {"ACCESS_LOG": "errors"}


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
    # A redis-server started with requirepass and/or TLS (its CA's certificate) by ``redis_server``.
    password: str | None = None
    tls_ca_file: Path | None = None

    @property
    def url(self) -> str:
        credentials = f":{self.password}@" if self.password else ""
        return f"{'rediss' if self.tls_ca_file else 'redis'}://{credentials}{self.host}:{self.port}"

    def environment(self) -> dict[str, str]:
        """The service's settings for this Redis: REDISHOST/REDISPORT, or REDIS_URL with the CA and AUTH string."""
        if self.password is None and self.tls_ca_file is None:
            return {"REDISHOST": self.host, "REDISPORT": str(self.port)}
        environment = {"REDIS_URL": f"{'rediss' if self.tls_ca_file else 'redis'}://{self.host}:{self.port}"}
        if self.tls_ca_file:
            environment["REDIS_TLS_CA_FILE"] = str(self.tls_ca_file)
        if self.password:
            environment["REDIS_AUTH_STRING"] = self.password
        return environment


@contextlib.contextmanager
def redis_server(
    *, private: bool = False, password: str | None = None, tls: TlsFiles | None = None
) -> Iterator[RedisAddress]:
    """The Redis given by ``AA_TEST_REDIS`` (host:port), else (or when ``private``) a private redis-server on a
    free port; a test that stops its Redis asks for a private one.

    ``password`` starts it with ``requirepass``; ``tls`` serves TLS only (``--port 0 --tls-port``), with that
    server certificate, not asking clients for one (as Memorystore's SERVER_AUTHENTICATION mode). Either makes
    the server private.
    """
    given = os.environ.get("AA_TEST_REDIS")
    if given and not private and password is None and tls is None:
        host, _, port = given.rpartition(":")
        yield RedisAddress(host or "127.0.0.1", int(port))
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server), and AA_TEST_REDIS is not set")
    port = free_port()
    listen = ["--port", str(port)]
    if tls is not None:
        listen = ["--port", "0", "--tls-port", str(port), "--tls-cert-file", str(tls.server_certificate),
                  "--tls-key-file", str(tls.server_key), "--tls-ca-cert-file", str(tls.ca_certificate),
                  "--tls-auth-clients", "no"]
    with tempfile.TemporaryDirectory(prefix="aa-redis-") as directory:
        arguments = [binary, "--bind", "127.0.0.1", *listen, "--save", "", "--appendonly", "no",
                     "--dir", directory, "--protected-mode", "yes"]
        if password is not None:
            # From a config file on stdin ("-"), so the password is not in the process list.
            arguments.insert(1, "-")
        process = subprocess.Popen(
            arguments,
            stdin=subprocess.PIPE if password is not None else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        if password is not None:
            assert process.stdin is not None
            process.stdin.write(f'requirepass "{password}"\n'.encode())
            process.stdin.close()
        try:
            wait_for_port(port, process=process)
            yield RedisAddress("127.0.0.1", port, password=password,
                               tls_ca_file=tls.ca_certificate if tls is not None else None)
        finally:
            process.terminate()
            process.wait(timeout=10)


@dataclass
class RedisReplica:
    """A redis-server replicating another (``redis_replica``): a fault test pauses it or promotes it."""

    address: RedisAddress
    process: subprocess.Popen

    def pause(self) -> None:
        """Freeze it (SIGSTOP): it acknowledges nothing more to its primary until ``resume``."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def promote(self) -> None:
        """Make it a primary (``REPLICAOF NO ONE``), as a failover does, with what it holds."""
        _redis_cli("-h", self.address.host, "-p", str(self.address.port), "replicaof", "no", "one")

    def replication(self) -> str:
        """Its ``INFO replication``."""
        return _redis_cli("-h", self.address.host, "-p", str(self.address.port), "info", "replication")


@contextlib.contextmanager
def redis_replica(primary: RedisAddress, *, timeout: float = 20.0) -> Iterator[RedisReplica]:
    """A redis-server on a free loopback port replicating ``primary`` (no password, no TLS), once its link is up
    and its first copy loaded; stopped when the block ends."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="aa-redis-replica-") as directory:
        process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(port), "--replicaof", primary.host, str(primary.port),
             "--save", "", "--appendonly", "no", "--dir", directory, "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        replica = RedisReplica(RedisAddress("127.0.0.1", port), process)
        try:
            wait_for_port(port, process=process)
            deadline = time.monotonic() + timeout
            while "master_link_status:up" not in replica.replication():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the replica on {port} has no link to its primary after {timeout}s")
                time.sleep(0.05)
            yield replica
        finally:
            replica.resume()
            stop(process)


CLUSTER_NODES = 6  # three primaries, each with one replica (Memorystore's default shape)
CLUSTER_NODE_TIMEOUT_MS = 2000  # a node not answering for this long is failed (by default)


@dataclass
class ClusterNode:
    """One redis-server of a ``redis_cluster``: its port and process (a fault test may stop it)."""

    port: int
    process: subprocess.Popen | None
    command: tuple[str, ...] = ()  # what started it (``start`` runs it again)

    def kill(self) -> None:
        """Stop this node at once (SIGKILL): its replica takes over after ``cluster-node-timeout``."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def start(self) -> None:
        """Start a killed node again: with its configuration file it rejoins the cluster (a primary that was
        failed over comes back as its successor's replica)."""
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for_port(self.port, process=self.process)


@dataclass(frozen=True)
class RedisClusterAddress:
    """A Redis Cluster: ``host``/``port`` is the discovery endpoint the service is given (any node, as
    Memorystore's discovery endpoint), ``nodes`` every node (no process when ``AA_TEST_REDIS_CLUSTER`` named it)."""

    host: str
    port: int
    nodes: tuple[ClusterNode, ...] = ()

    def environment(self) -> dict[str, str]:
        """The service's settings for this cluster."""
        return {"REDISHOST": self.host, "REDISPORT": str(self.port), "REDIS_CLUSTER": "true"}

    def node(self, port: int) -> ClusterNode:
        """The node listening on ``port`` (to find the process of a primary a client reported, say)."""
        return next(node for node in self.nodes if node.port == port)


def _redis_cli(*arguments: str, timeout: float = 60.0) -> str:
    binary = shutil.which("redis-cli")
    if binary is None:
        raise RuntimeError("redis-cli is not installed (apt-get install redis-tools), and AA_TEST_REDIS_CLUSTER is "
                           "not set")
    done = subprocess.run([binary, *arguments], capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"redis-cli {' '.join(arguments)} failed: {done.stdout}{done.stderr}")
    return done.stdout


def _wait_for_cluster_ok(ports: list[int], *, timeout: float = 60.0) -> None:
    """Until every node says ``cluster_state:ok`` (slots assigned, the configuration agreed everywhere) and lists
    every node in ``CLUSTER SLOTS`` (a replica only once its primary has sent it something: clients learn the
    cluster's shape from there)."""
    deadline = time.monotonic() + timeout
    for port in ports:
        node = ("-h", "127.0.0.1", "-p", str(port))
        while ("cluster_state:ok" not in _redis_cli(*node, "cluster", "info")
               or _redis_cli(*node, "cluster", "slots").split().count("127.0.0.1") < len(ports)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Redis Cluster node on {port} is not ready after {timeout}s")
            time.sleep(0.1)


@contextlib.contextmanager
def redis_cluster(*, private: bool = False, node_timeout_ms: int = CLUSTER_NODE_TIMEOUT_MS) -> Iterator[RedisClusterAddress]:
    """The Redis Cluster given by ``AA_TEST_REDIS_CLUSTER`` (host:port of any node), else (or when ``private``:
    a test that stops nodes) a private one: six redis-servers on free loopback ports (three primaries, one
    replica each, a node failed after ``node_timeout_ms`` without answering), created with ``redis-cli --cluster
    create``, and stopped when the block ends."""
    given = os.environ.get("AA_TEST_REDIS_CLUSTER")
    if given and not private:
        host, _, port = given.rpartition(":")
        yield RedisClusterAddress(host or "127.0.0.1", int(port))
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server), and AA_TEST_REDIS_CLUSTER "
                           "is not set")
    nodes: list[ClusterNode] = []
    with tempfile.TemporaryDirectory(prefix="aa-redis-cluster-") as directory:
        try:
            for _ in range(CLUSTER_NODES):
                # The bus on a port of its own: the default (port + 10000) may be taken, or past 65535.
                port, bus = free_port(), free_port()
                command = (binary, "--bind", "127.0.0.1", "--port", str(port), "--cluster-port", str(bus),
                           "--cluster-enabled", "yes",
                           "--cluster-config-file", f"{directory}/nodes-{port}.conf",
                           "--cluster-node-timeout", str(node_timeout_ms),
                           # A replica shows in CLUSTER SLOTS once its offset moves: the primary's ping moves it.
                           "--repl-ping-replica-period", "1",
                           # A replica's first sync at once, not after the diskless sync's default 5 s wait.
                           "--repl-diskless-sync-delay", "0",
                           "--save", "", "--appendonly", "no", "--dir", directory, "--protected-mode", "yes")
                process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
                nodes.append(ClusterNode(port, process, command))
                wait_for_port(port, process=process)
            ports = [node.port for node in nodes]
            _redis_cli("--cluster", "create", *(f"127.0.0.1:{port}" for port in ports), "--cluster-replicas", "1",
                       "--cluster-yes")
            _wait_for_cluster_ok(ports)
            yield RedisClusterAddress("127.0.0.1", ports[0], tuple(nodes))
        finally:
            for node in nodes:
                if node.process is not None and node.process.poll() is None:
                    stop(node.process)


def postgres_binaries() -> Path:
    """The newest installed PostgreSQL's bin directory (Debian: /usr/lib/postgresql/<major>/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
                   if p.parent.parent.name.isdigit() else 0)
    if not found:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql; .ci/run installs it), "
                           "and AA_TEST_DATABASE_URL is not set")
    return found[-1].parent


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A PostgreSQL URL: ``AA_TEST_DATABASE_URL`` when given, else a private server on a free loopback port.

    The private one is a fresh cluster in a temporary directory (trust authentication, loopback only, no
    fsync), run as the ``postgres`` user when the tests run as root (PostgreSQL refuses to run as root).
    """
    given = os.environ.get("AA_TEST_DATABASE_URL")
    if given:
        yield given
        return
    binaries = postgres_binaries()
    as_user: list[str] = []
    directory = Path(tempfile.mkdtemp(prefix="aa-postgres-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = directory / "data", free_port()

    def run(*command: str) -> None:
        subprocess.run([*as_user, *command], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       timeout=120)

    try:
        run(str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "aa", "-E", "UTF8", "--no-sync")
        run(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(directory / "log"), "-w", "-t", "60", "-o",
            f"-h 127.0.0.1 -p {port} -k {directory} -F", "start")
        try:
            yield f"postgresql://aa@127.0.0.1:{port}/postgres"
        finally:
            run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class RedisProcess:
    """A private redis-server on a fixed loopback port that a fault test can stop and start again."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.address = RedisAddress("127.0.0.1", free_port())
        self.directory = tempfile.mkdtemp(prefix="aa-redis-")
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        """Start it (empty: no persistence, as after a Memorystore restart without it)."""
        self.process = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", str(self.address.port), "--save", "",
             "--appendonly", "no", "--dir", self.directory, "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.address.port, process=self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


@contextlib.contextmanager
def restartable_redis() -> Iterator[RedisProcess]:
    """A ``RedisProcess``, started, and stopped (its directory removed) when the block ends."""
    redis = RedisProcess()
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()
        shutil.rmtree(redis.directory, ignore_errors=True)


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


def server_environment(*, role: str, redis: RedisAddress | RedisClusterAddress | None, **extra: str) -> dict[str, str]:
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
        environment.update(redis.environment())
    environment.update(extra)
    return environment


@contextlib.contextmanager
def service_server(
    *, role: str, redis: RedisAddress | RedisClusterAddress | None, cwd: Path = REPOSITORY, server: str = IMAGE_SERVER,
    **extra: str,
) -> Iterator[Server]:
    """Run the image's server command (``python -m aa_site.serve_uvicorn aa_site.asgi:application``, from ``cwd``;
    or another of ``SERVERS``, such as daphne's for local runs) on a free loopback port until the block ends."""
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
        stop(process)
        log_path.unlink(missing_ok=True)


def stop(process: subprocess.Popen) -> None:
    """Terminate ``process``; kill it if it has not exited within 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def service_exit(
    *, role: str, redis: RedisAddress | RedisClusterAddress | None, without: tuple[str, ...] = (),
    timeout: float = 60.0, **extra: str,
) -> subprocess.CompletedProcess[str]:
    """Run the server (as ``service_server`` does), expected to refuse to start; return its exit code and output.

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
