"""SIGTERM: a connector hands its desktops to another instance, an interceptor finishes its pushes, a rolling
deploy loses nothing.

Real server processes on a private Redis and real clients: the npm
socket.io-client and python-socketio (both must reconnect after the drain's
close, which carries no Engine.IO CLOSE packet: python-socketio stops for good
on one), a ``/ws/`` client (close code 4012), a long-poll waiting on the
stopped process (answered at once, its session going on elsewhere). The
draining paths of the application (readiness, refused handshakes and pushes,
a long-poll that does not wait) run in process too, with the drain flag set.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time

import httpx
import pytest
import redis.asyncio as redis
import socketio
from aiohttp import web
from asgiref.testing import ApplicationCommunicator
from channels.testing import HttpCommunicator, WebsocketCommunicator

from aa_site import drain as server_drain
from aa_site.asgi import application
from common import draining
from connector.desktops import close_codes
from testing import clients, processes
from testing import engineio_polling as polling
from testing.fault_scenarios import PubSub, Tally, token
from testing.rolling_deploy import rolling_deploy, until
from testing.tcp_proxy import tcp_proxy

pytestmark = pytest.mark.faults

WAIT = 20.0


# --- the drain's paths in process ---------------------------------------------------------------


@pytest.fixture
def drained(monkeypatch):
    """The process drains (as after SIGTERM) for the test's length."""
    monkeypatch.setattr(draining, "_since", time.monotonic())


async def http(path: str, *, method: str = "GET", body: bytes = b"") -> dict:
    communicator = HttpCommunicator(server_drain.RefuseWhileDraining(application), method, path, body=body)
    return await communicator.get_response(timeout=WAIT)


async def test_draining_readiness_fails_and_health_stays(drained) -> None:
    ready = await http("/readyz")
    assert ready["status"] == 503
    assert b'"draining"' in ready["body"]
    assert (await http("/healthz"))["status"] == 200


async def test_draining_refuses_new_sessions_and_pushes_with_503(drained) -> None:
    handshake = await http("/socket.io/?EIO=4&transport=polling")
    assert handshake["status"] == 503
    assert (b"Retry-After", b"0") in handshake["headers"]
    push = await http("/new-message-event", method="POST", body=b"{}")
    assert push["status"] == 503
    websocket = WebsocketCommunicator(server_drain.RefuseWhileDraining(application), "/ws/")
    accepted, _ = await websocket.connect()
    assert not accepted


async def test_draining_answers_a_websocket_handshake_503_where_the_server_can(drained) -> None:
    """Under uvicorn (the ASGI denial-response extension) the handshake gets 503, which a client retries."""
    scope = {"type": "websocket", "path": "/socket.io/", "query_string": b"EIO=4&transport=websocket",
             "headers": [], "subprotocols": [], "extensions": {"websocket.http.response": {}}}
    communicator = ApplicationCommunicator(server_drain.RefuseWhileDraining(application), scope)
    await communicator.send_input({"type": "websocket.connect"})
    start = await communicator.receive_output(WAIT)
    body = await communicator.receive_output(WAIT)
    assert (start["type"], start["status"]) == ("websocket.http.response.start", 503)
    assert (b"retry-after", b"0") in start["headers"]
    assert body["type"] == "websocket.http.response.body" and b"draining" in body["body"]


async def test_draining_long_poll_answers_at_once(settings, redis_events) -> None:
    """A GET that would wait answers a noop instead: the session's next GET goes to another instance."""
    settings.SOCKETIO_PING_INTERVAL, settings.SOCKETIO_PING_TIMEOUT = 25, 20  # no ping due meanwhile
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://test") as client:
        sid = await polling.connected_session(client, "http://test", clients.server_token(settings, user="agent"),
                                              ping_ms=(25000, 20000))
        draining._since = time.monotonic()
        try:
            started = time.monotonic()
            answer = await client.get(polling.session_url("http://test", sid))
        finally:
            draining._since = None
    assert (answer.status_code, answer.text) == (200, "6")
    assert time.monotonic() - started < settings.SOCKETIO_PING_INTERVAL


# --- a connector's SIGTERM, with real clients -------------------------------------------------------


async def test_sigterm_tells_every_desktop_to_reconnect_and_they_come_back_elsewhere() -> None:
    name = clients.new_conversation("drain")
    with processes.redis_server(private=True) as store, \
            processes.service_server(role="connector", redis=store) as first, \
            processes.service_server(role="connector", redis=store) as second:
        async with tcp_proxy(first.port) as proxy, clients.node_desktop(
            proxy, token=token(), join=(name,), reconnect=True, timeout=120
        ) as node:
            await node.wait_for(lambda n: len(n.of_kind("ack")) == 1, what="the npm desktop's join")
            python = socketio.AsyncClient(reconnection=True, reconnection_delay=0.3, reconnection_delay_max=0.3,
                                          randomization_factor=0)
            happened: list[tuple[str, object]] = []
            python.on("connect", lambda: happened.append(("connect", None)))
            python.on("disconnect", lambda reason=None: happened.append(("disconnect", reason)))
            await python.connect(proxy.http_url, transports=["websocket"], auth={"token": token()})
            assert (await python.call("join-conversation", name))[0] is True
            plain = await clients.PlainDesktop.connect(first, token())
            assert (await plain.join(name))["type"] == "joined"
            async with httpx.AsyncClient(base_url=first.http_url, timeout=WAIT) as poller:
                sid = await polling.connected_session(poller, first.http_url, token(), ping_ms=(25000, 20000))
                waiting = asyncio.ensure_future(poller.get(polling.session_url(first.http_url, sid)))
                await asyncio.sleep(0.5)  # the GET waits on the first connector
                proxy.backend_port = second.port
                proxy.hold()  # the Socket.IO desktops come back once their records are looked at
                records = await session_records(store)
                assert len(records) == 3 and all(ttl > 120 for ttl in records.values()), records
                stopped_at = time.monotonic()
                first.process.send_signal(signal.SIGTERM)

                assert await plain.closed_with() == close_codes.RECONNECT
                answered = await asyncio.wait_for(waiting, WAIT)
                assert (answered.status_code, answered.text) == (200, "6")
                await asyncio.get_running_loop().run_in_executor(None, first.process.wait, 15)
                assert time.monotonic() - stopped_at < 9.0, "the connector outlived Cloud Run's budget"
                # The two Socket.IO sessions' records now end with their recovery window; the polling session's
                # goes on (it lives in Redis, not on the stopped process).
                after = await session_records(store)
                assert sorted(ttl <= 120 for ttl in after.values()) == [False, True, True], after
                proxy.release()
                # The polling session goes on from the other connector, as it would through a load balancer.
                posted = await poller.post(polling.session_url(second.http_url, sid), content=b"2")
                assert (posted.status_code, posted.text) == (200, "ok")
                again = await poller.get(polling.session_url(second.http_url, sid))
                assert (again.status_code, again.text) == (200, "3"), again.text

            await node.wait_for(lambda n: len(n.of_kind("connected")) == 2, what="the npm desktop's reconnection")
            (disconnect,) = node.of_kind("disconnect")
            assert (disconnect["reason"], disconnect["code"]) == ("transport close", close_codes.RECONNECT)
            assert [line["recovered"] for line in node.of_kind("connected")] == [False, True]
            await clients.wait_until(lambda: happened.count(("connect", None)) == 2,
                                     what="python-socketio's reconnection")
            assert ("disconnect", "transport error") in happened
            await python.disconnect()
            await plain.close()

        log = first.log()
    assert re.search(r"Drained for shutdown: told 3 desktops to reconnect \(2 Socket\.IO, 1 /ws/; \d closes completed\), "
                     r"started 2 recovery windows in batches \(0 left as they were\) in [\d.]+ s, answered 1 waiting "
                     r"long-polls, in [\d.]+ s", log), log
    assert "Traceback" not in log and '"severity": "ERROR"' not in log


async def test_sigterm_with_redis_gone_still_tells_every_desktop_and_exits_in_time() -> None:
    """The records cannot be written (their desktops recover all the same: the records keep their longer
    lifetime); the desktops are told, and the process exits within the budget."""
    with processes.restartable_redis() as store, \
            processes.service_server(role="connector", redis=store.address) as connector:
        python = socketio.AsyncClient(reconnection=False)
        closed: list[object] = []
        python.on("disconnect", lambda reason=None: closed.append(reason))
        await python.connect(connector.http_url, transports=["websocket"], auth={"token": token()})
        plain = await clients.PlainDesktop.connect(connector, token())
        store.stop()
        stopped_at = time.monotonic()
        connector.process.send_signal(signal.SIGTERM)
        assert await plain.closed_with() == close_codes.RECONNECT
        await asyncio.get_running_loop().run_in_executor(None, connector.process.wait, 15)
        assert time.monotonic() - stopped_at < 9.0
        await clients.wait_until(lambda: closed == ["transport error"], what="python-socketio's disconnect")
        await plain.close()
        log = connector.log()
    assert "Could not start 1 recovery windows in the drain" in log, log
    assert "Could not start a session's recovery window" not in log, "a disconnect tried the record again"
    assert re.search(r"told 2 desktops to reconnect .* started 0 recovery windows in batches \(1 left as they "
                     r"were\)", log), log
    assert "Traceback" not in log


async def session_records(store: processes.RedisAddress) -> dict[bytes, int]:
    """Every Socket.IO session record's key and seconds to live."""
    inspector = redis.Redis(host=store.host, port=store.port)
    try:
        return {key: await inspector.ttl(key) async for key in inspector.scan_iter("aa:session:*")}
    finally:
        await inspector.aclose()


@pytest.mark.parametrize("close_packet", [False, True], ids=["websocket-close", "engineio-close-packet"])
async def test_python_socketio_reconnects_after_a_websocket_close_and_not_after_an_engineio_close(close_packet) -> None:
    """Why the drain's close carries no Engine.IO CLOSE packet: python-socketio gives up for good after one (its
    Engine.IO client is 'disconnecting' when it reports it), and reconnects after the WebSocket simply closes."""
    opened = 0

    async def engineio_server(request: web.Request) -> web.WebSocketResponse:
        nonlocal opened
        opened += 1
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        await socket.send_str("0" + json.dumps({"sid": f"s{opened}", "upgrades": [], "pingInterval": 25000,
                                                "pingTimeout": 20000, "maxPayload": 1000000}))
        async for message in socket:
            if message.data.startswith("40"):
                await socket.send_str("40" + json.dumps({"sid": f"n{opened}"}))
                if opened == 1:
                    if close_packet:
                        await socket.send_str("1")
                    await socket.close(code=close_codes.RECONNECT)
        return socket

    app = web.Application()
    app.router.add_get("/socket.io/", engineio_server)
    runner = web.AppRunner(app)
    await runner.setup()
    port = processes.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    client = socketio.AsyncClient(reconnection=True, reconnection_delay=0.1, reconnection_delay_max=0.1,
                                  randomization_factor=0)
    try:
        await client.connect(f"http://127.0.0.1:{port}", transports=["websocket"])
        reconnected = await until(lambda: opened == 2 and client.connected, timeout=3.0)
    finally:
        await client.shutdown()
        await runner.cleanup()
    assert reconnected is (not close_packet)


# --- an interceptor's SIGTERM ---------------------------------------------------------------------


async def test_sigterm_lets_a_push_in_flight_finish_stored_and_takes_no_new_one() -> None:
    """A push waiting on Redis when SIGTERM comes is answered 2xx once stored; one sent after is never
    acknowledged (the connection is refused, or 503), so Pub/Sub sends it again, elsewhere."""
    name = clients.new_conversation("drain-push")
    with processes.redis_server(private=True) as store, \
            processes.service_server(role="connector", redis=store) as connector:
        with processes.service_server(role="interceptor", redis=store) as interceptor:
            pubsub, late = PubSub(interceptor, Tally("drain")), PubSub(interceptor, Tally("drain"))
            inspector = redis.Redis(host=store.host, port=store.port)
            try:
                assert await pubsub.post(name, "warm-up")  # the interceptor's connections and scripts are ready
                await inspector.execute_command("CLIENT", "PAUSE", "1500", "WRITE")
                in_flight = asyncio.ensure_future(pubsub.post(name, "in-flight"))
                await asyncio.sleep(0.5)  # it waits on the paused Redis
                interceptor.process.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.3)
                assert not await late.post(name, "after-sigterm")
                assert await asyncio.wait_for(in_flight, WAIT), "the push in flight was not acknowledged"
                await asyncio.get_running_loop().run_in_executor(None, interceptor.process.wait, 15)
            finally:
                await inspector.aclose()
                await pubsub.close()
                await late.close()
            log = interceptor.log()
        plain = await clients.PlainDesktop.connect(connector, token())
        try:
            answer = await plain.request({"type": "join", "conversation": name, "history": True})
            assert answer["type"] == "joined" and answer["replayed"] == 2, answer
            stored = [(await plain.next_frame())["payload"]["message_id"] for _ in range(2)]
        finally:
            await plain.close()
    assert stored == ["warm-up", "in-flight"]
    assert "Traceback" not in log


# --- a rolling deploy --------------------------------------------------------------------------------


async def test_a_rolling_deploy_behind_a_load_balancer_loses_and_repeats_nothing() -> None:
    tally = await rolling_deploy(desktops=150)
    assert tally.pushed > 0 and tally.expected > 0, tally.line()
    assert tally.ok, tally.line()
    assert tally.close_codes and set(tally.close_codes) == {close_codes.RECONNECT}, tally.line()
    assert "Drained for shutdown" in tally.drain_line, tally.line()
    assert tally.pool_exhausted == 0
