"""Real clients for the real servers of ``testing/processes.py``, and what they push and expect.

The Pub/Sub fixtures pushed to an interceptor, the contract's payload checks,
and desktops: python-socketio's ``AsyncClient`` and the npm ``socket.io-client``
run by node (``tests/node``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import socketio

from connector.desktops import offsets as vector_offsets
from events.kinds import EventKind
from testing.processes import REPOSITORY, TEST_JWT_SECRET, TEST_PROJECT, Server

# --- Pub/Sub fixtures ----------------------------------------------------------------

# The contract's own copy (``../shared`` beside the clone, as CI has it) wins; the
# vendored copy lets a clone without it still run, and test_envelope checks they agree.
SHARED_PUBSUB_FIXTURES = REPOSITORY.parent / "shared" / "fixtures" / "pubsub"
VENDORED_PUBSUB_FIXTURES = REPOSITORY / "tests" / "fixtures" / "pubsub"
PUBSUB_FIXTURE_DIRECTORIES = (
    SHARED_PUBSUB_FIXTURES,
    VENDORED_PUBSUB_FIXTURES,
)
RECOGNITION_EVENT = "new-recognition-result-notification-event"
ACK_TIME_FORMAT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
# How long a client waits for any one answer or event (generous: machines are shared).
CLIENT_TIMEOUT = 20.0


@dataclass(frozen=True)
class Push:
    """One valid Pub/Sub push fixture, with its conversation renamed so tests never share one."""

    fixture: str  # file name
    event: str  # endpoint path and the event name desktops receive
    conversation: str  # normalised name
    published_as: str  # the name as the notification carries it (with locations/L)
    data: str  # the notification text, as desktops must receive it
    message_id: str
    publish_time: str
    attributes: dict[str, str]
    body: bytes

    def expected_payload(self, ack_time: str) -> dict[str, Any]:
        """The argument desktops receive (as from Google's sample); ``ack_time`` is the server's to choose."""
        payload: dict[str, Any] = {
            "conversation_name": self.conversation,
            "data": self.data,
            "data_type": self.event,
            "ack_time": ack_time,
            "publish_time": self.publish_time,
            "message_id": self.message_id,
        }
        if self.event == RECOGNITION_EVENT:
            payload["participant_role"] = self.attributes["participant_role"]
            payload["new_recognition_result_message_id"] = self.attributes["message_id"]
        return payload


def fixture_directory() -> Path:
    """The directory holding the Pub/Sub fixtures; fails loudly rather than yielding no pushes to test with."""
    for candidate in PUBSUB_FIXTURE_DIRECTORIES:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no Pub/Sub fixtures in any of {[str(c) for c in PUBSUB_FIXTURE_DIRECTORIES]}")


def valid_pushes(*, conversation_suffix: str, message_suffix: str = "") -> list[Push]:
    """Every valid fixture in ``fixture_directory()``, in file-name order.

    Each conversation id ``C`` becomes ``C-<conversation_suffix>`` everywhere in the
    notification, and each messageId gets ``message_suffix``, so a server that keeps
    history or drops redeliveries sees distinct conversations and messages per test.
    """
    pushes = []
    for path in sorted(fixture_directory().glob("*.json")):
        if path.name.startswith("bad."):
            continue
        envelope = json.loads(path.read_text())
        message = envelope["message"]
        original = base64.b64decode(message["data"]).decode("utf-8")
        conversation_id = json.loads(original)["conversation"].rsplit("/", 1)[1]
        data = original.replace(
            f"conversations/{conversation_id}", f"conversations/{conversation_id}-{conversation_suffix}"
        )
        message["data"] = base64.b64encode(data.encode("utf-8")).decode("ascii")
        for key in ("messageId", "message_id"):
            if key in message:
                message[key] += message_suffix
        published_as = json.loads(data)["conversation"]
        project, _, rest = published_as.removeprefix("projects/").partition("/")
        pushes.append(
            Push(
                fixture=path.name,
                event=path.name.split(".", 1)[0],
                conversation=f"projects/{project}/conversations/{rest.rsplit('/', 1)[1]}",
                published_as=published_as,
                data=data,
                message_id=message["messageId"],
                publish_time=message["publishTime"],
                attributes=dict(message.get("attributes") or {}),
                body=json.dumps(envelope).encode("utf-8"),
            )
        )
    return pushes


def one_per_conversation(pushes: list[Push]) -> list[Push]:
    """The first push of each conversation the fixtures use, to join or leave with."""
    return list({fixture.conversation: fixture for fixture in pushes}.values())


def bad_fixtures() -> list[Path]:
    """The poison-message fixtures (``bad.*``), which can never be delivered."""
    return sorted(fixture_directory().glob("bad.*"))


async def push(client: httpx.AsyncClient, server: Server, fixture: Push) -> httpx.Response:
    """POST ``fixture`` to its push endpoint on ``server``, as Pub/Sub would."""
    return await client.post(
        f"{server.http_url}/{fixture.event}", content=fixture.body, headers={"Content-Type": "application/json"}
    )


async def push_all(server: Server, pushes: list[Push]) -> None:
    """POST each push in turn; every one must be delivered (204)."""
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        for fixture in pushes:
            response = await push(client, server, fixture)
            assert response.status_code == 204, (fixture.fixture, response.status_code, response.text)


def assert_contract_payload(payload: Any, fixture: Push, *, received_between: tuple[datetime, datetime]) -> None:
    """``payload`` is exactly the contract's argument for ``fixture``, acknowledged within the window."""
    assert isinstance(payload, dict), payload
    ack_time = payload.get("ack_time")
    assert isinstance(ack_time, str) and ACK_TIME_FORMAT.match(ack_time), payload
    assert payload == fixture.expected_payload(ack_time)
    # ack_time has whole seconds; compare on that granularity.
    earliest, latest = (moment.strftime("%Y-%m-%dT%H:%M:%SZ") for moment in received_between)
    assert earliest <= ack_time <= latest, (earliest, ack_time, latest)


def assert_received_exactly(
    events: list[tuple[str, Any]], pushes: list[Push], *, received_between: tuple[datetime, datetime]
) -> None:
    """``events`` (name, argument) holds each push exactly once with its contract payload, and nothing else.

    Order is not compared: the contract does not promise it, and Pub/Sub does not either.
    """
    by_message = {fixture.message_id: fixture for fixture in pushes}
    received_ids = sorted(str(payload.get("message_id")) if isinstance(payload, dict) else repr(payload)
                          for _, payload in events)
    assert received_ids == sorted(by_message), f"expected each of {sorted(by_message)} once, got {events}"
    for name, payload in events:
        fixture = by_message[payload["message_id"]]
        assert name == fixture.event, (name, fixture.fixture)
        assert_contract_payload(payload, fixture, received_between=received_between)


# --- Real desktops -----------------------------------------------------------------

NODE_DIRECTORY = REPOSITORY / "tests" / "node"


async def wait_until(condition: Callable[[], bool], *, what: str, timeout: float = CLIENT_TIMEOUT) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


CONVERSATION_EVENTS = frozenset(EventKind)


def _without_offset(event: str, args: list[Any], offsets: list[str]) -> list[Any]:
    """A conversation event's arguments without the trailing offset (connection state recovery), which
    must be there; the offset is appended to ``offsets``."""
    if event not in CONVERSATION_EVENTS:
        return args
    assert len(args) == 2 and isinstance(args[-1], str) and vector_offsets.is_vector(args[-1]), (event, args)
    offsets.append(args[-1])
    return args[:-1]


class SocketIODesktop:
    """An agent desktop on python-socketio's ``AsyncClient`` that records what the server emits."""

    def __init__(self, name: str = "desktop") -> None:
        self.name = name
        # A dropped connection must fail the test, not be silently re-made.
        self.client = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []
        self.offsets: list[str] = []  # the offset each conversation event carried, in order
        self.unauthenticated_seen = False
        self.connect_errors: list[Any] = []
        self.client.on("*", self._record)
        self.client.on("unauthenticated", self._on_unauthenticated)
        self.client.on("connect_error", self._on_connect_error)
        self.pid: str | None = None  # the recovery session the CONNECT answer named
        handle_connect = self.client._handle_connect

        async def keep_pid(namespace: str | None, data: Any) -> None:
            # python-socketio keeps only the answer's sid; connection state recovery needs its pid too.
            if isinstance(data, dict) and isinstance(data.get("pid"), str):
                self.pid = data["pid"]
            await handle_connect(namespace, data)

        self.client._handle_connect = keep_pid

    async def connect(
        self, server: Server, token: str, *, transports: tuple[str, ...] | None = ("websocket",),
        auth: dict[str, Any] | None = None,
    ) -> None:
        """Connect with ``auth: {token}`` (and ``auth``'s other fields), over the websocket transport unless
        ``transports`` says otherwise (None: python-socketio's default, long-polling then the upgrade)."""
        await self.client.connect(
            server.http_url, transports=None if transports is None else list(transports),
            auth={"token": token, **(auth or {})}, wait_timeout=CLIENT_TIMEOUT,
        )

    def recovery(self) -> dict[str, Any]:
        """What socket.io-client sends back to recover this desktop's session: its pid and its last offset."""
        return {"pid": self.pid, **({"offset": self.offsets[-1]} if self.offsets else {})}

    async def cut_then_recover(self, proxy: Any, server: Server, token: str,
                               while_away: Callable[[], Awaitable[None]]) -> SocketIODesktop:
        """Cut this desktop's connection at ``proxy`` (a ``testing.tcp_proxy``), run ``while_away`` (the pushes
        it misses), then connect a new desktop to ``server`` with this one's recovery fields, as
        socket.io-client would on reconnecting; the new desktop (the caller disconnects it)."""
        proxy.cut()
        await wait_until(lambda: not self.client.connected, what="the cut")
        await while_away()
        back = SocketIODesktop(self.name)
        await back.connect(server, token, auth=self.recovery())
        return back

    async def join(self, conversation: str) -> Any:
        """Emit ``join-conversation`` and return the acknowledgement."""
        return await self.client.call("join-conversation", conversation, timeout=CLIENT_TIMEOUT)

    async def leave(self, conversation: str) -> Any:
        """Emit ``leave-conversation`` and return the acknowledgement."""
        return await self.client.call("leave-conversation", conversation, timeout=CLIENT_TIMEOUT)

    async def disconnect(self) -> None:
        """Disconnect (a no-op when not connected)."""
        await self.client.disconnect()

    async def _record(self, event: str, *args: Any) -> None:
        args = _without_offset(event, list(args), self.offsets)
        self.events.append((event, args[0] if len(args) == 1 else args))

    async def _on_unauthenticated(self, *args: Any) -> None:
        self.unauthenticated_seen = True

    async def _on_connect_error(self, data: Any = None) -> None:
        self.connect_errors.append(data)


class NodeDesktop:
    """The npm socket.io-client in a node process (``tests/node/desktop.mjs``); one JSON line per happening."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []
        self.stderr = b""
        self._readers = [asyncio.create_task(self._read_stdout()), asyncio.create_task(self._read_stderr())]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        """The lines node printed with this ``kind``, in order."""
        return [line for line in self.lines if line["kind"] == kind]

    @property
    def events(self) -> list[tuple[str, Any]]:
        """Every event received as (name, single argument), in order; a conversation event's trailing offset
        is checked and left out (``offsets`` has them)."""
        events = []
        for line in self.of_kind("event"):
            args = _without_offset(line["event"], list(line["args"]), [])
            events.append((line["event"], args[0] if len(args) == 1 else args))
        return events

    @property
    def offsets(self) -> list[str]:
        """The offset each conversation event carried, in order."""
        return [line["args"][-1] for line in self.of_kind("event") if line["event"] in CONVERSATION_EVENTS]

    async def wait_for(self, condition: Callable[[NodeDesktop], bool], *, what: str) -> None:
        """Wait until ``condition(self)``; on failure show everything node printed."""

        def holds() -> bool:
            if condition(self):
                return True
            if all(reader.done() for reader in self._readers):
                raise AssertionError(f"node exited before {what}")
            return False

        try:
            await wait_until(holds, what=what)
        except AssertionError as error:
            raise AssertionError(f"{error}; node printed {self.lines}, stderr {self.stderr!r}") from None

    async def command(self, line: str) -> None:
        """Send a ``join NAME`` / ``leave NAME`` / ``exit`` line to the script."""
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    async def exited(self) -> int:
        """Wait for the script to exit by itself; return its exit code."""
        code = await asyncio.wait_for(self.process.wait(), CLIENT_TIMEOUT * 3)
        await asyncio.gather(*self._readers)
        return code

    async def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self.lines.append(json.loads(line))

    async def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        self.stderr = await self.process.stderr.read()


@contextlib.asynccontextmanager
async def node_desktop(
    server: Server,
    *,
    token: str,
    join: tuple[str, ...] = (),
    events: int | None = None,
    linger: float = 0.0,
    timeout: float = CLIENT_TIMEOUT * 3,
    reconnect: bool = False,
    transports: str = "websocket",
) -> AsyncIterator[NodeDesktop]:
    """Run ``tests/node/desktop.mjs`` against ``server``; it exits by itself after ``events`` events
    (plus ``linger`` seconds) or ``timeout`` seconds, and is killed when the block ends."""
    node = shutil.which("node")
    if node is None or not (NODE_DIRECTORY / "node_modules" / "socket.io-client").is_dir():
        raise RuntimeError("node and tests/node/node_modules are needed: (cd tests/node && npm ci)")
    arguments = ["--url", server.http_url, "--timeout", str(int(timeout * 1000)), "--linger", str(int(linger * 1000))]
    for conversation in join:
        arguments += ["--join", conversation]
    if events is not None:
        arguments += ["--events", str(events)]
    if reconnect:
        arguments.append("--reconnect")
    arguments += ["--transports", transports]
    process = await asyncio.create_subprocess_exec(
        node, str(NODE_DIRECTORY / "desktop.mjs"), *arguments,
        cwd=NODE_DIRECTORY,
        # The token stays out of the process list.
        env={**os.environ, "DESKTOP_TOKEN": token},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    desktop = NodeDesktop(process)
    try:
        yield desktop
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await asyncio.gather(*desktop._readers, return_exceptions=True)


def server_token(settings: Any, *, user: str) -> str:
    """A desktop JWT the server processes of ``testing.processes`` accept (their secret and project, production mode).

    ``settings`` is pytest-django's fixture; the changes end with the test.
    """
    from connector import tokens

    settings.DEVELOPMENT_MODE = False
    settings.GCP_PROJECT_ID = TEST_PROJECT
    settings.JWT_SECRET_KEY = TEST_JWT_SECRET
    return tokens.issue_token(user=user)


def new_conversation(label: str) -> str:
    """A conversation of the test project that no other test uses (``label`` shows which test made it)."""
    return f"projects/{TEST_PROJECT}/conversations/{label}-{uuid.uuid4().hex[:8]}"



class PlainDesktop:
    """A desktop on the plain ``/ws/`` protocol (aiohttp's WebSocket client): authenticate, join, read frames."""

    def __init__(self, session: Any, socket: Any) -> None:
        self.session, self.socket = session, socket

    @classmethod
    async def connect(cls, server: Server, token: str) -> PlainDesktop:
        """Open ``/ws/`` on ``server`` and authenticate with ``token``."""
        session = aiohttp.ClientSession()
        socket = await session.ws_connect(server.http_url.replace("http://", "ws://") + "/ws/")
        desktop = cls(session, socket)
        answer = await desktop.request({"type": "authenticate", "token": token})
        assert answer["type"] == "authenticated", answer
        return desktop

    async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send ``frame`` and return the next frame the server sends."""
        await self.socket.send_json(frame)
        return await self.socket.receive_json(timeout=CLIENT_TIMEOUT)

    async def join(self, conversation: str) -> dict[str, Any]:
        return await self.request({"type": "join", "conversation": conversation})

    async def next_frame(self) -> dict[str, Any]:
        return await self.socket.receive_json(timeout=CLIENT_TIMEOUT)

    async def closed_with(self) -> int | None:
        """Wait for the server to close the socket; its close code."""
        while True:
            message = await self.socket.receive(timeout=CLIENT_TIMEOUT)
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                return self.socket.close_code

    async def close(self) -> None:
        await self.socket.close()
        await self.session.close()
