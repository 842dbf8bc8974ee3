"""Streaming calls through a real connector process: stock clients, the fake WebChannel server, real credentials.

The connector (the image's server, production-like settings) finds its Google credentials
through ``GOOGLE_APPLICATION_CREDENTIALS`` (a key file for the fake token
endpoint of ``testing/fake_dialogflow.py``) and opens each stream against the
fake WebChannel server (``DIALOGFLOW_WEBCHANNEL_ROOT``), which accepts only
the tokens that endpoint issued. Desktops are python-socketio's
``AsyncClient``, the npm ``socket.io-client`` under node, and aiohttp's
WebSocket client on ``/ws/``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from testing import clients, fake_dialogflow, fake_webchannel, processes
from testing.clients import SocketIODesktop, wait_until
from testing.fake_dialogflow import FakeDialogflow
from testing.fake_webchannel import FakeWebChannel, Session

METHOD = "streaming_reactive_companion_suggestions"
PER_CONNECTION = 5
# Only in request payloads: it must never reach the connector's log at INFO.
CONTENT_MARKER = "customer-said-parcel-7731"


def participant(project: str = processes.TEST_PROJECT) -> str:
    return f"projects/{project}/locations/us-central1/conversations/C-{uuid.uuid4().hex[:6]}/participants/P-1"


def opening(stream_id: str, **payload: Any) -> dict[str, Any]:
    """The first stream-request of a stream."""
    return {"streamId": stream_id, "method": METHOD, "payload": {"participant": participant(), **payload}}


@pytest.fixture(scope="module")
def dialogflow() -> Iterator[FakeDialogflow]:
    with fake_dialogflow.serve() as server:
        yield server


@pytest.fixture(scope="module")
def upstream(dialogflow: FakeDialogflow) -> Iterator[FakeWebChannel]:
    with fake_webchannel.serve(lambda: {*dialogflow.issued_tokens}) as server:
        yield server


@pytest.fixture(scope="module")
def key_file(dialogflow: FakeDialogflow, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return dialogflow.write_key_file(Path(tmp_path_factory.mktemp("adc")) / "key.json")


@pytest.fixture(scope="module")
def connector(upstream: FakeWebChannel, key_file: Path,
              redis_server: processes.RedisAddress) -> Iterator[processes.Server]:
    with processes.service_server(
        role="connector", redis=redis_server, GOOGLE_APPLICATION_CREDENTIALS=str(key_file),
        DIALOGFLOW_WEBCHANNEL_ROOT=upstream.url, STREAM_MAX_PER_CONNECTION=str(PER_CONNECTION),
    ) as server:
        yield server


@pytest.fixture(scope="module")
def tight(upstream: FakeWebChannel, key_file: Path,
          redis_server: processes.RedisAddress) -> Iterator[processes.Server]:
    """A connector with two streams per process, a 1.5 s idle timeout and 4 s in all."""
    with processes.service_server(
        role="connector", redis=redis_server, GOOGLE_APPLICATION_CREDENTIALS=str(key_file),
        DIALOGFLOW_WEBCHANNEL_ROOT=upstream.url, STREAM_MAX_PER_PROCESS="2", STREAM_IDLE_TIMEOUT="1.5",
        STREAM_MAX_DURATION="4",
    ) as server:
        yield server


@pytest.fixture
def fake(upstream: FakeWebChannel) -> FakeWebChannel:
    upstream.reset()
    return upstream


@pytest.fixture
def token(settings: Any) -> str:
    return clients.server_token(settings, user="agent-streams")


@pytest.fixture
async def desktops(token: str) -> AsyncIterator[Any]:
    """Connect python-socketio desktops to a server; all are disconnected afterwards."""
    made: list[SocketIODesktop] = []

    async def connect(server: processes.Server) -> SocketIODesktop:
        desktop = SocketIODesktop(f"desktop-{len(made)}")
        await desktop.connect(server, token)
        made.append(desktop)
        return desktop

    yield connect
    await asyncio.gather(*(desktop.disconnect() for desktop in made))


def of(desktop: SocketIODesktop, event: str, stream_id: str) -> list[Any]:
    """The payloads of ``event`` for ``stream_id`` that ``desktop`` received, in order."""
    return [arg["payload"] for name, arg in desktop.events if name == event and arg.get("streamId") == stream_id]


def session_of(fake: FakeWebChannel, marker: str) -> Session | None:
    """The fake's session whose first request carries ``marker``."""
    return fake.session_with(lambda s: bool(s.requests) and s.requests[0].get("marker") == marker)


async def test_responses_arrive_in_order_as_camel_case_stream_data(connector, fake, desktops, dialogflow) -> None:
    """Three requests on one stream reach Dialogflow in order; their six replies arrive in order, keys in camelCase."""
    fake.replies_per_request = 2
    desktop = await desktops(connector)
    ack = await desktop.client.call("stream-request", opening("s-1", marker="a", text=CONTENT_MARKER),
                                    timeout=clients.CLIENT_TIMEOUT)
    assert list(ack) == [True, "s-1"]
    for n in (1, 2):
        await desktop.client.emit("stream-request", {"streamId": "s-1", "payload": {"n": n}})
    await wait_until(lambda: len(of(desktop, "stream-data", "s-1")) == 6, what="six stream-data")
    data = of(desktop, "stream-data", "s-1")
    assert [(d["requestNumber"], d["replyNumber"]) for d in data] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    assert data[2]["echoRequest"] == {"n": 1} and "sentAt" in data[0]
    session = session_of(fake, "a")
    assert session is not None and session.requests[1:] == [{"n": 1}, {"n": 2}]
    assert session.path == "/google.cloud.dialogflow.v2beta1.Participants/StreamingReactiveCompanionSuggestions/channel"
    assert fake.refused == []  # every exchange carried a token the fake token endpoint issued, and a valid shape
    assert of(desktop, "stream-error", "s-1") == []
    assert CONTENT_MARKER not in connector.log()


async def test_two_streams_on_one_socket_stay_apart(connector, fake, desktops) -> None:
    desktop = await desktops(connector)
    await desktop.client.emit("stream-request", opening("left", marker="L"))
    await desktop.client.emit("stream-request", opening("right", marker="R"))
    for n in range(3):
        await desktop.client.emit("stream-request", {"streamId": "left", "payload": {"side": "left", "n": n}})
        await desktop.client.emit("stream-request", {"streamId": "right", "payload": {"side": "right", "n": n}})
    await wait_until(lambda: len(of(desktop, "stream-data", "left")) == 4 == len(of(desktop, "stream-data", "right")),
                     what="four replies on each stream")
    for side, marker in (("left", "L"), ("right", "R")):
        echoes = [d["echoRequest"] for d in of(desktop, "stream-data", side)]
        assert echoes[0]["marker"] == marker
        assert echoes[1:] == [{"side": side, "n": n} for n in range(3)]
    left, right = session_of(fake, "L"), session_of(fake, "R")
    assert left is not None and right is not None and left.sid != right.sid


async def test_end_stream_closes_the_upstream_back_channel(connector, fake, desktops) -> None:
    """After end-stream the fake sees its GET closed; the same id then opens a new stream."""
    desktop = await desktops(connector)
    await desktop.client.emit("stream-request", opening("s-end", marker="E"))
    await wait_until(lambda: len(of(desktop, "stream-data", "s-end")) == 1, what="the first reply")
    ack = await desktop.client.call("end-stream", {"streamId": "s-end"}, timeout=clients.CLIENT_TIMEOUT)
    assert list(ack) == [True, "s-end"]
    session = session_of(fake, "E")
    assert session is not None
    await wait_until(lambda: session.closed_by_client, what="the back channel to be closed")
    await desktop.client.emit("stream-request", opening("s-end", marker="E2"))
    await wait_until(lambda: len(of(desktop, "stream-data", "s-end")) == 2, what="a reply on the new stream")
    assert of(desktop, "stream-data", "s-end")[1]["echoRequest"]["marker"] == "E2"
    assert session_of(fake, "E2").sid != session.sid


async def test_disconnect_closes_every_upstream_back_channel(connector, fake, desktops) -> None:
    desktop = await desktops(connector)
    for marker in ("D1", "D2"):
        await desktop.client.emit("stream-request", opening(marker, marker=marker))
    await wait_until(lambda: all(of(desktop, "stream-data", m) for m in ("D1", "D2")), what="a reply on each")
    await desktop.disconnect()
    sessions = [session_of(fake, m) for m in ("D1", "D2")]
    await wait_until(lambda: all(s.closed_by_client for s in sessions), what="both back channels to be closed")


@pytest.mark.parametrize(("request_", "says"), [
    ({"streamId": "x", "method": "streaming_analyze_content", "payload": {"participant": participant()}},
     "unknown streaming method 'streaming_analyze_content'"),
    ({"streamId": "x", "payload": {"participant": participant()}}, "must name its method"),
    ({"streamId": "x", "method": METHOD, "payload": {"participant": "projects/test-project/conversations/C"}},
     "has no location"),
    ({"streamId": "x", "method": METHOD, "payload": {"participant": participant("someone-elses")}},
     "Project someone-elses is not served by this backend."),
    ({"streamId": {"not": "an id"}, "method": METHOD}, "streamId must be"),
])
async def test_a_request_that_cannot_open_a_stream_gets_stream_error(connector, fake, desktops, request_, says) -> None:
    """Each refusal is a stream-error with code 13 and a message saying why; nothing reaches upstream."""
    desktop = await desktops(connector)
    ack = await desktop.client.call("stream-request", request_, timeout=clients.CLIENT_TIMEOUT)
    assert ack[0] is False and says in ack[1]
    [error] = [arg for name, arg in desktop.events if name == "stream-error"]
    assert error["streamId"] == (request_["streamId"] if isinstance(request_["streamId"], str) else None)
    assert error["payload"]["error"]["code"] == 13 and says in error["payload"]["error"]["message"]
    assert fake.sessions == {}


async def test_an_upstream_error_frame_is_a_stream_error_with_googles_code(connector, fake, desktops) -> None:
    """The stream is then forgotten: a request without a method for the same id is refused as a first one."""
    fake.error_after = 1
    fake.error = {"code": 9, "message": "Conversation is not active", "status": "FAILED_PRECONDITION"}
    desktop = await desktops(connector)
    await desktop.client.emit("stream-request", opening("s-err"))
    await desktop.client.emit("stream-request", {"streamId": "s-err", "payload": {"n": 1}})
    await wait_until(lambda: of(desktop, "stream-error", "s-err"), what="the stream-error")
    assert of(desktop, "stream-error", "s-err") == [{"error": {"message": "Conversation is not active", "code": 9}}]
    assert len(of(desktop, "stream-data", "s-err")) == 1
    await desktop.client.emit("stream-request", {"streamId": "s-err", "payload": {"n": 2}})
    await wait_until(lambda: len(of(desktop, "stream-error", "s-err")) == 2, what="a second stream-error")
    assert "must name its method" in of(desktop, "stream-error", "s-err")[1]["error"]["message"]


async def test_an_abrupt_upstream_close_is_a_stream_error_with_code_13(connector, fake, desktops) -> None:
    fake.abrupt_close_after = 1
    desktop = await desktops(connector)
    await desktop.client.emit("stream-request", opening("s-cut"))
    await desktop.client.emit("stream-request", {"streamId": "s-cut", "payload": {"n": 1}})
    await wait_until(lambda: of(desktop, "stream-error", "s-cut"), what="the stream-error")
    [error] = of(desktop, "stream-error", "s-cut")
    assert error["error"]["code"] == 13 and "connection" in error["error"]["message"]


async def test_a_slow_handshake_blocks_neither_the_socket_nor_the_order(connector, fake, desktops) -> None:
    """While the handshake takes 3 s the same socket's join is answered; requests sent meanwhile arrive in order."""
    fake.handshake_delay = 3.0
    desktop = await desktops(connector)
    await desktop.client.emit("stream-request", opening("s-slow", marker="S"))
    for n in range(1, 4):
        await desktop.client.emit("stream-request", {"streamId": "s-slow", "payload": {"n": n}})
    joined = await desktop.join("projects/test-project/conversations/SLOW-1")
    assert list(joined) == [True, "projects/test-project/conversations/SLOW-1"]
    assert fake.sessions == {}  # the handshake had not been answered when the join was
    await wait_until(lambda: len(of(desktop, "stream-data", "s-slow")) == 4, what="four replies")
    assert [d["requestNumber"] for d in of(desktop, "stream-data", "s-slow")] == [0, 1, 2, 3]


async def test_fifty_concurrent_streams_do_not_block_other_requests(connector, fake, desktops) -> None:
    """Fifty streams on ten sockets hold fifty back channels open at once while HTTP and socket requests answer."""
    fake.hold = True
    sockets = await asyncio.gather(*(desktops(connector) for _ in range(10)))
    for s, desktop in enumerate(sockets):
        for k in range(PER_CONNECTION):
            await desktop.client.emit("stream-request", opening(f"c-{s}-{k}", marker=f"c-{s}-{k}"))
    await wait_until(lambda: sum(s.back_channels for s in fake.sessions.values()) == 50 == fake.open_back_channels,
                     what="fifty open back channels", timeout=60)
    async with httpx.AsyncClient(timeout=clients.CLIENT_TIMEOUT) as client:
        status = await client.get(f"{connector.http_url}/status")
    assert status.status_code == 200
    other = await desktops(connector)
    assert list(await other.join("projects/test-project/conversations/BUSY-1"))[0] is True
    fake.hold = False
    for n in (1, 2):
        for s, desktop in enumerate(sockets):
            for k in range(PER_CONNECTION):
                await desktop.client.emit("stream-request", {"streamId": f"c-{s}-{k}", "payload": {"n": n}})
    await wait_until(lambda: all(len(of(d, "stream-data", f"c-{s}-{k}")) == 3
                                 for s, d in enumerate(sockets) for k in range(PER_CONNECTION)),
                     what="three replies on each of fifty streams", timeout=60)
    for s, desktop in enumerate(sockets):
        for k in range(PER_CONNECTION):
            echoes = [d["echoRequest"] for d in of(desktop, "stream-data", f"c-{s}-{k}")]
            assert echoes[0]["marker"] == f"c-{s}-{k}" and echoes[1:] == [{"n": 1}, {"n": 2}]
    assert fake.max_open_back_channels >= 50


async def test_a_connection_may_hold_only_its_bound_of_streams(connector, fake, desktops) -> None:
    desktop = await desktops(connector)
    for k in range(PER_CONNECTION):
        await desktop.client.emit("stream-request", opening(f"b-{k}"))
    ack = await desktop.client.call("stream-request", opening("one-too-many"), timeout=clients.CLIENT_TIMEOUT)
    assert ack[0] is False
    assert of(desktop, "stream-error", "one-too-many") == [
        {"error": {"message": f"a connection may have at most {PER_CONNECTION} open streams", "code": 13}}]


async def test_the_process_bound_and_the_idle_and_total_timeouts(tight, fake, desktops) -> None:
    """Two streams per process: a third socket's is refused; idle streams end after 1.5 s, busy ones after 4 s."""
    first, second, third = [await desktops(tight) for _ in range(3)]
    await first.client.emit("stream-request", opening("idle", marker="I"))
    await second.client.emit("stream-request", opening("busy", marker="B"))
    await wait_until(lambda: of(first, "stream-data", "idle") and of(second, "stream-data", "busy"),
                     what="both streams open")
    ack = await third.client.call("stream-request", opening("refused"), timeout=clients.CLIENT_TIMEOUT)
    assert ack[0] is False and "too many open streams" in ack[1]

    async def keep_busy() -> None:
        for n in range(40):
            if of(second, "stream-error", "busy"):
                return
            await second.client.emit("stream-request", {"streamId": "busy", "payload": {"n": n}})
            await asyncio.sleep(0.5)

    await asyncio.gather(keep_busy(), wait_until(lambda: of(first, "stream-error", "idle"), what="the idle error"))
    assert of(first, "stream-error", "idle") == [{"error": {"message": "the stream was idle for 1.5 s", "code": 13}}]
    await wait_until(lambda: of(second, "stream-error", "busy"), what="the total-duration error")
    assert of(second, "stream-error", "busy") == [
        {"error": {"message": "the stream was open longer than 4 s", "code": 13}}]
    assert len(of(second, "stream-data", "busy")) >= 6  # it was served until then
    await wait_until(lambda: session_of(fake, "I").closed_by_client and session_of(fake, "B").closed_by_client,
                     what="both back channels closed")
    # Both slots are free again.
    ack = await third.client.call("stream-request", opening("now-fine"), timeout=clients.CLIENT_TIMEOUT)
    assert list(ack) == [True, "now-fine"]


async def test_node_socket_io_client_streams(connector, fake, token) -> None:
    """The npm socket.io-client: two streams on one socket, replies in order and apart, end-stream closes upstream."""
    async with clients.node_desktop(connector, token=token) as node:
        await node.wait_for(lambda n: n.of_kind("connected"), what="connected")
        for stream_id in ("n-a", "n-b"):
            await node.command("emit stream-request " + json.dumps(opening(stream_id, marker=stream_id)))
        for n in (1, 2):
            for stream_id in ("n-a", "n-b"):
                await node.command("emit stream-request " + json.dumps(
                    {"streamId": stream_id, "payload": {"n": n, "on": stream_id}}))

        def data(n: clients.NodeDesktop, stream_id: str) -> list[Any]:
            return [arg["payload"] for name, arg in n.events if name == "stream-data" and arg["streamId"] == stream_id]

        await node.wait_for(lambda n: len(data(n, "n-a")) == 3 == len(data(n, "n-b")), what="three replies each")
        for stream_id in ("n-a", "n-b"):
            echoes = [d["echoRequest"] for d in data(node, stream_id)]
            assert echoes[0]["marker"] == stream_id
            assert echoes[1:] == [{"n": 1, "on": stream_id}, {"n": 2, "on": stream_id}]
        await node.command("emit end-stream " + json.dumps({"streamId": "n-a"}))
        await wait_until(lambda: session_of(fake, "n-a").closed_by_client, what="n-a's back channel closed")
        assert not session_of(fake, "n-b").closed_by_client
        await node.command("exit")
    await wait_until(lambda: session_of(fake, "n-b").closed_by_client, what="n-b's back channel closed on exit")


# --- the plain JSON WebSocket -------------------------------------------------------------


async def receive(socket: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = await socket.receive(timeout=clients.CLIENT_TIMEOUT)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    return json.loads(message.data)


async def test_plain_websocket_streams(connector, fake, token) -> None:
    """stream_request before authenticate is refused; then data in order, a refusal, end_stream, upstream closed."""
    fake.replies_per_request = 2
    async with aiohttp.ClientSession() as http, http.ws_connect(f"ws://127.0.0.1:{connector.port}/ws/") as socket:
        await socket.send_json({"type": "stream_request", "id": 1, **opening("w-1")})
        assert await receive(socket) == {"type": "error", "code": "unauthenticated",
                                         "message": "send an authenticate frame first", "id": 1}
        await socket.send_json({"type": "authenticate", "token": token, "id": 2})
        assert (await receive(socket))["type"] == "authenticated"
        await socket.send_json({"type": "stream_request", **opening("w-1", marker="W")})
        await socket.send_json({"type": "stream_request", "streamId": "w-1", "payload": {"n": 1}})
        frames = [await receive(socket) for _ in range(4)]
        assert [f["type"] for f in frames] == ["stream_data"] * 4
        assert [(f["streamId"], f["payload"]["requestNumber"], f["payload"]["replyNumber"]) for f in frames] == [
            ("w-1", 0, 0), ("w-1", 0, 1), ("w-1", 1, 0), ("w-1", 1, 1)]
        await socket.send_json({"type": "stream_request", "streamId": "w-2", "method": "nope", "payload": {}})
        assert await receive(socket) == {"type": "stream_error", "streamId": "w-2", "payload": {"error": {
            "message": "unknown streaming method 'nope'; known: streaming_reactive_companion_suggestions",
            "code": 13}}}
        await socket.send_json({"type": "end_stream", "streamId": "w-1", "id": 3})
        assert await receive(socket) == {"type": "stream_ended", "streamId": "w-1", "id": 3}
        await wait_until(lambda: session_of(fake, "W").closed_by_client, what="the back channel closed")


async def test_plain_websocket_hears_a_clean_upstream_end(connector, fake, token) -> None:
    fake.end_after = 1
    async with aiohttp.ClientSession() as http, http.ws_connect(f"ws://127.0.0.1:{connector.port}/ws/") as socket:
        await socket.send_json({"type": "authenticate", "token": token})
        assert (await receive(socket))["type"] == "authenticated"
        await socket.send_json({"type": "stream_request", **opening("w-end")})
        assert (await receive(socket))["type"] == "stream_data"
        assert await receive(socket) == {"type": "stream_ended", "streamId": "w-end"}


# Byte bounds of waiting requests, small enough for a test, with every request's bytes known exactly.
QUEUED_PER_STREAM, QUEUED_PER_CONNECTION, QUEUED_PER_PROCESS = 1_000_000, 2_500_000, 4_000_000
METRICS_TOKEN = "stream-bytes-metrics-token-0123456789abcdef"


@pytest.fixture(scope="module")
def byte_bounded(upstream: FakeWebChannel, key_file: Path,
                 redis_server: processes.RedisAddress) -> Iterator[processes.Server]:
    """A connector whose waiting stream requests are bounded at 1 MB a stream, 2.5 MB a socket, 4 MB in all."""
    with processes.service_server(
        role="connector", redis=redis_server, GOOGLE_APPLICATION_CREDENTIALS=str(key_file),
        DIALOGFLOW_WEBCHANNEL_ROOT=upstream.url, METRICS_TOKEN=METRICS_TOKEN,
        STREAM_MAX_QUEUED_BYTES_PER_STREAM=str(QUEUED_PER_STREAM),
        STREAM_MAX_QUEUED_BYTES=str(QUEUED_PER_CONNECTION),
        STREAM_MAX_QUEUED_BYTES_PER_PROCESS=str(QUEUED_PER_PROCESS),
    ) as server:
        yield server


def queued_bytes(server: processes.Server) -> float:
    """What the process reports holding for waiting stream requests (its own accounting, through /metrics)."""
    answer = httpx.get(f"{server.http_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
                       timeout=clients.CLIENT_TIMEOUT)
    assert answer.status_code == 200, answer.text
    (line,) = [line for line in answer.text.splitlines() if line.startswith("aa_stream_queued_bytes ")]
    return float(line.split()[1])


async def test_waiting_requests_are_bounded_in_bytes_per_stream_socket_and_process(byte_bounded, fake,
                                                                                     desktops) -> None:
    """While the handshakes hang, requests of 400 kB wait: the one that would pass a byte bound gets a stream-error
    saying which and ends its stream (its bytes freed); the process holds exactly the requests it accepted."""
    fake.handshake_delay = 60.0  # nothing is posted upstream: every request waits in the connector
    blob = "x" * 400_000
    held: dict[str, int] = {}  # bytes waiting per stream, as the process should count them

    def size(payload: dict[str, Any]) -> int:
        return len(json.dumps(payload, separators=(",", ":")).encode("utf-8"))

    async def send(desktop: SocketIODesktop, stream_id: str, *, first: bool = False) -> list[Any]:
        frame = opening(stream_id, blob=blob) if first else {"streamId": stream_id, "payload": {"blob": blob}}
        ack = await desktop.client.call("stream-request", frame, timeout=clients.CLIENT_TIMEOUT)
        if ack[0]:
            held[stream_id] = held.get(stream_id, 0) + size(frame["payload"])
        else:
            held.pop(stream_id, None)  # a refused stream ends
        return list(ack)

    one, two = await desktops(byte_bounded), await desktops(byte_bounded)
    # One stream: two requests wait (800 kB), a third would make 1.2 MB.
    assert await send(one, "a", first=True) == [True, "a"]
    assert await send(one, "a") == [True, "a"]
    refusal = f"more than {QUEUED_PER_STREAM} bytes of requests would wait on this stream"
    assert await send(one, "a") == [False, refusal]
    assert of(one, "stream-error", "a") == [{"error": {"message": refusal, "code": 13}}]
    assert queued_bytes(byte_bounded) == 0  # the ended stream's requests went with it
    # One socket: three streams of two requests each (2.4 MB); a fourth stream's first would pass 2.5 MB.
    for stream_id in ("b", "c", "d"):
        assert await send(one, stream_id, first=True) == [True, stream_id]
        assert await send(one, stream_id) == [True, stream_id]
    refusal = f"more than {QUEUED_PER_CONNECTION} bytes of requests would wait on this connection"
    assert await send(one, "e", first=True) == [False, refusal]
    assert of(one, "stream-error", "e") == [{"error": {"message": refusal, "code": 13}}]
    assert queued_bytes(byte_bounded) == sum(held.values())
    # The process: another socket's requests take it to 3.6 MB; one more would pass 4 MB.
    assert await send(two, "f", first=True) == [True, "f"]
    assert await send(two, "f") == [True, "f"]
    assert await send(two, "g", first=True) == [True, "g"]
    refusal = "the server has too many stream requests waiting; try again later"
    assert await send(two, "g") == [False, refusal]
    assert of(two, "stream-error", "g") == [{"error": {"message": refusal, "code": 13}}]
    assert queued_bytes(byte_bounded) == sum(held.values()) <= QUEUED_PER_PROCESS
    # A socket that goes frees what its streams held.
    await one.disconnect()
    await wait_until(lambda: queued_bytes(byte_bounded) == held["f"], what="the first socket's bytes released")
    await two.client.emit("end-stream", {"streamId": "f"})
    await wait_until(lambda: queued_bytes(byte_bounded) == 0, what="every byte released")
