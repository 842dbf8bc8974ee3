"""Socket.IO's long-polling transport and the upgrade, on two connector processes behind round-robin nginx.

No sticky sessions: nginx hands each request to the next connector in turn,
so one session's handshake, polls and posts land on both processes (the test
checks both served them). The npm socket.io-client (polling only, and its
default of polling then the upgrade) and python-socketio join a conversation
and must receive every event pushed through the interceptor exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import Iterator

import aiohttp
import httpx
import pytest

from connector.desktops import offsets
from testing import clients, processes, redis_kinds
from testing.clients import SocketIODesktop
from testing.engineio_polling import (
    connect_answer,
    connected_session,
    conversation_events,
    eio_keys,
    handshake,
    session_url,
)
from testing.nginx_proxy import round_robin
from testing.push_bodies import push
from testing.tcp_proxy import tcp_proxy
from testing.tokens import short_lived_token

PROJECT = processes.TEST_PROJECT
PING = {"SOCKETIO_PING_INTERVAL": "2", "SOCKETIO_PING_TIMEOUT": "2"}
ALLOWED_ORIGIN = "https://desktop.example"


@pytest.fixture(scope="module")
def polling_redis() -> Iterator[processes.RedisAddress]:
    with processes.redis_server(private=True) as address:
        yield address


def polling_connectors(store: processes.RedisAddress | processes.RedisClusterAddress):
    extra = {**PING, "CORS_ALLOWED_ORIGINS": ALLOWED_ORIGIN, "SOCKETIO_MAX_PAYLOAD": "4096",
             "PRESENCE_KEY_TTL_SECONDS": "3"}
    with processes.service_server(role="connector", redis=store, **extra) as first, \
            processes.service_server(role="connector", redis=store, **extra) as second:
        yield first, second


@pytest.fixture(scope="module")
def standalone_interceptor(polling_redis) -> Iterator[processes.Server]:
    with processes.service_server(role="interceptor", redis=polling_redis) as server:
        yield server


@pytest.fixture(scope="module")
def standalone_connectors(polling_redis) -> Iterator[tuple[processes.Server, processes.Server]]:
    yield from polling_connectors(polling_redis)


@pytest.fixture(scope="module")
def standalone_balancer(standalone_connectors):
    with round_robin([server.port for server in standalone_connectors]) as proxy:
        yield proxy


# The same on the session's Redis Cluster, for the tests marked ON_BOTH (started at the first of them).


@pytest.fixture(scope="module")
def cluster_interceptor(redis_cluster) -> Iterator[processes.Server]:
    with processes.service_server(role="interceptor", redis=redis_cluster) as server:
        yield server


@pytest.fixture(scope="module")
def cluster_connectors(redis_cluster) -> Iterator[tuple[processes.Server, processes.Server]]:
    yield from polling_connectors(redis_cluster)


@pytest.fixture(scope="module")
def cluster_balancer(cluster_connectors):
    with round_robin([server.port for server in cluster_connectors]) as proxy:
        yield proxy


@pytest.fixture
def store_kind(request) -> str:
    """``standalone`` unless a test is marked ON_BOTH: the kind of Redis its servers run on."""
    return getattr(request, "param", "standalone")


ON_BOTH = pytest.mark.parametrize("store_kind", ["standalone", "cluster"], indirect=True)


@pytest.fixture
def interceptor(store_kind, request) -> processes.Server:
    return request.getfixturevalue(f"{store_kind}_interceptor")


@pytest.fixture
def connectors(store_kind, request) -> tuple[processes.Server, processes.Server]:
    return request.getfixturevalue(f"{store_kind}_connectors")


@pytest.fixture
def balancer(store_kind, request):
    return request.getfixturevalue(f"{store_kind}_balancer")


@pytest.fixture
def store(store_kind, request) -> processes.RedisAddress | processes.RedisClusterAddress:
    return request.getfixturevalue("polling_redis" if store_kind == "standalone" else "redis_cluster")


@pytest.fixture
def token(settings) -> str:
    return clients.server_token(settings, user="agent")


def conversation() -> str:
    return f"projects/{PROJECT}/conversations/poll-{uuid.uuid4().hex[:8]}"


def message_ids(events: list) -> list[str]:
    return [payload["message_id"] for _, payload in events if isinstance(payload, dict) and "message_id" in payload]


def polling_requests(server: processes.Server) -> int:
    return server.log().count('/socket.io/"')


async def wait_for_no_eio_keys(address: processes.RedisAddress, sids: list[str], *, timeout: float) -> None:
    await clients.wait_until(lambda: not any(eio_keys(address, sid) for sid in sids), what="the sessions' keys to go",
                             timeout=timeout)


# --- through the round-robin proxy ----------------------------------------------------------------


@ON_BOTH
@pytest.mark.parametrize("transports", ["polling", "default"])
async def test_npm_client_receives_every_event_once_through_round_robin(
    interceptor, connectors, balancer, token, transports
) -> None:
    name = conversation()
    before = [polling_requests(server) for server in connectors]
    async with clients.node_desktop(balancer, token=token, join=(name,), transports=transports, timeout=60) as node:
        await node.wait_for(lambda n: len(n.of_kind("ack")) == 1, what="the join")
        assert node.of_kind("ack")[0]["args"] == [True, name]
        expected = [f"m-{number}" for number in range(12)]
        for message_id in expected:
            await push(interceptor, name, message_id)
        await node.wait_for(lambda n: len(message_ids(n.events)) >= len(expected), what="every event")
        await asyncio.sleep(1.0)  # a duplicate would show up now
        assert message_ids(node.events) == expected
        if transports == "polling":
            assert node.of_kind("upgrade") == []
            # The session's requests were served by both processes.
            assert all(polling_requests(server) > count for server, count in zip(connectors, before))
        else:
            await node.wait_for(lambda n: n.of_kind("upgrade") != [], what="the upgrade")
            assert node.of_kind("upgrade") == [{"kind": "upgrade", "transport": "websocket"}]
        assert node.of_kind("disconnect") == []


@ON_BOTH
async def test_no_event_is_lost_or_doubled_across_the_upgrade(interceptor, balancer, token) -> None:
    """Events pushed all along while the npm client, with its default transports, upgrades from long-polling to
    the WebSocket."""
    name = conversation()
    expected = [f"e-{number}" for number in range(40)]
    async with clients.node_desktop(balancer, token=token, join=(name,), transports="default", timeout=60) as node:
        await node.wait_for(lambda n: len(n.of_kind("ack")) == 1, what="the join")
        for message_id in expected:
            await push(interceptor, name, message_id)
            await asyncio.sleep(0.02)
        await node.wait_for(lambda n: len(message_ids(n.events)) >= len(expected), what="every event")
        await asyncio.sleep(1.0)
        assert message_ids(node.events) == expected
        assert node.of_kind("upgrade") == [{"kind": "upgrade", "transport": "websocket"}]


@ON_BOTH
@pytest.mark.parametrize("transports", [("polling",), None])
async def test_python_socketio_through_round_robin(interceptor, balancer, token, transports) -> None:
    """python-socketio on long-polling only, and with its default (long-polling, then the upgrade)."""
    name = conversation()
    desktop = SocketIODesktop()
    await desktop.connect(balancer, token, transports=transports)
    try:
        assert desktop.client.transport() == ("polling" if transports else "websocket")
        assert list(await desktop.join(name)) == [True, name]
        expected = [f"p-{number}" for number in range(8)]
        for message_id in expected:
            await push(interceptor, name, message_id)
        await clients.wait_until(lambda: len(message_ids(desktop.events)) >= len(expected), what="every event")
        await asyncio.sleep(1.0)
        assert message_ids(desktop.events) == expected
        assert list(await desktop.leave(name)) == [True, name]
        await push(interceptor, name, "after-leave")
        await asyncio.sleep(1.0)
        assert message_ids(desktop.events) == expected
    finally:
        await desktop.disconnect()


async def test_a_polling_session_stays_up_across_heartbeats_and_its_keys_go_when_it_ends(
    interceptor, balancer, polling_redis, token
) -> None:
    """Several ping intervals (2 s) pass: the server's pings and the client's pongs keep it alive, on
    whichever process each request lands; after the disconnect nothing of it is left in Redis."""
    name = conversation()
    desktop = SocketIODesktop()
    await desktop.connect(balancer, token, transports=("polling",))
    sid = desktop.client.eio.sid
    try:
        assert eio_keys(polling_redis, sid)
        assert list(await desktop.join(name)) == [True, name]
        await asyncio.sleep(7)
        assert desktop.client.connected
        await push(interceptor, name, "late")
        await clients.wait_until(lambda: message_ids(desktop.events) == ["late"], what="an event after the pings")
    finally:
        await desktop.disconnect()
    await wait_for_no_eio_keys(polling_redis, [sid], timeout=10)


@ON_BOTH
async def test_a_polling_session_recovers_after_a_dropped_connection(interceptor, balancer, token) -> None:
    """The client's requests fail for a while (the proxy in front of nginx points nowhere): socket.io-client
    reconnects by itself and recovers its conversation and every event it missed, once, in order."""
    name = conversation()
    async with tcp_proxy(balancer.port) as cut_off, clients.node_desktop(
        cut_off, token=token, join=(name,), reconnect=True, transports="polling", timeout=60
    ) as node:
        await node.wait_for(lambda n: len(n.of_kind("ack")) == 1, what="the join")
        await push(interceptor, name, "before")
        await node.wait_for(lambda n: message_ids(n.events) == ["before"], what="the first event")
        cut_off.backend_port = processes.free_port()  # nothing there
        cut_off.cut()
        await node.wait_for(lambda n: n.of_kind("disconnect") != [], what="the client to notice")
        missed = [f"missed-{number}" for number in range(5)]
        for message_id in missed:
            await push(interceptor, name, message_id)
        cut_off.backend_port = balancer.port
        await node.wait_for(lambda n: len(message_ids(n.events)) >= 6, what="the missed events")
        await asyncio.sleep(1.0)
        assert message_ids(node.events) == ["before", *missed]
        assert [line["recovered"] for line in node.of_kind("connected")] == [False, True]
        await push(interceptor, name, "after")
        await node.wait_for(lambda n: message_ids(n.events)[-1:] == ["after"], what="a live event after recovery")


# --- Engine.IO over HTTP, by hand -------------------------------------------------------------------


async def test_engineio_errors_are_answered_with_their_codes(balancer) -> None:
    unknown = {"code": 1, "message": "Session ID unknown"}
    async with httpx.AsyncClient(timeout=10) as client:
        url = balancer.http_url
        # (A sid holding "}" could end the hash tag its session's keys and wake channel are named by: never one.)
        for sid in ("no-such-session", "no}such{session"):
            for method in ("GET", "POST"):
                response = await client.request(method, session_url(url, sid), content=b"40")
                assert (response.status_code, response.json()) == (400, unknown)
        response = await client.get(f"{url}/socket.io/?EIO=4&transport=carrier-pigeon")
        assert (response.status_code, response.json()) == (400, {"code": 0, "message": "Transport unknown"})
        response = await client.get(f"{url}/socket.io/?EIO=3&transport=polling")
        assert (response.status_code, response.json()["code"]) == (400, 5)
        response = await client.post(f"{url}/socket.io/?EIO=4&transport=polling", content=b"40")
        assert (response.status_code, response.json()["code"]) == (400, 2)


async def test_a_payload_over_the_limit_is_refused_with_413(balancer) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        opened = await client.get(f"{balancer.http_url}/socket.io/?EIO=4&transport=polling")
        assert json.loads(opened.text[1:])["maxPayload"] == 4096
        sid = await handshake(client, balancer.http_url)
        response = await client.post(session_url(balancer.http_url, sid), content=b"4" + b"x" * 5000)
        # The JavaScript server's answer (lib/transports/polling.ts: writeHead(413).end()); the session goes on.
        assert (response.status_code, response.content) == (413, b"")
        response = await client.post(session_url(balancer.http_url, sid), content=b"3")
        assert (response.status_code, response.text, response.headers["content-type"]) == (200, "ok", "text/html")


async def test_a_second_concurrent_poll_is_refused_and_ends_the_session_on_either_process(
    balancer, polling_redis, token
) -> None:
    """The first GET waits on one process; the second, on the other (round robin), is refused, and the session
    ends, as Engine.IO's servers do (its protocol's test suite: "closes the session upon duplicate poll
    requests"): the first answers CLOSE, later requests 400 code 1, nothing left in Redis. The refused GET's
    answer is the JavaScript server's (lib/transports/polling.ts: writeHead(400).end()), with no body."""
    async with httpx.AsyncClient(timeout=10) as client:
        url = balancer.http_url
        sid = await connected_session(client, url, token)
        waiting = asyncio.create_task(client.get(session_url(url, sid)))
        await asyncio.sleep(0.5)
        second = await client.get(session_url(url, sid))
        assert (second.status_code, second.content) == (400, b"")
        first = await waiting
        assert (first.status_code, first.text) == (200, "1")
        for method in ("GET", "POST"):
            later = await client.request(method, session_url(url, sid), content=b"3")
            assert (later.status_code, later.json()) == (400, {"code": 1, "message": "Session ID unknown"})
        assert eio_keys(polling_redis, sid) == []


async def test_an_idle_poll_answers_the_ping_within_the_ping_interval(balancer, token) -> None:
    """A connected session's GET with nothing to send waits, at most until the next ping is due (2 s here)."""
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(timeout=10) as client:
        url = balancer.http_url
        sid = await connected_session(client, url, token)
        started = loop.time()
        answer = await client.get(session_url(url, sid))
        assert (answer.status_code, answer.text) == (200, "2")
        assert loop.time() - started < 2 + 1.0
        assert (await client.post(session_url(url, sid), content=b"3")).text == "ok"  # the pong
        started = loop.time()
        assert (await client.get(session_url(url, sid))).text == "2"  # the next ping, a whole interval later
        assert 1.5 < loop.time() - started < 2 + 1.0


async def test_several_packets_in_one_body_and_a_broken_one_ending_the_session(balancer, polling_redis, token) -> None:
    """Packets in one POST are separated by the record separator, and so are those of one answer; a body with a
    packet that is not Engine.IO's is refused (400) and ends the session."""
    names = [conversation(), conversation()]
    async with httpx.AsyncClient(timeout=10) as client:
        url = balancer.http_url
        sid = await connected_session(client, url, token)
        body = "\x1e".join(f'42{number}["join-conversation","{name}"]' for number, name in enumerate(names))
        assert (await client.post(session_url(url, sid), content=body.encode())).text == "ok"
        frames = (await client.get(session_url(url, sid))).text.split("\x1e")
        acknowledgements = [frame for frame in frames if frame != "2"]  # a ping may be due by now
        assert acknowledgements == [f'43{number}[true,"{name}"]' for number, name in enumerate(names)]
        broken = await client.post(session_url(url, sid), content=b"3\x1ex-not-a-packet")
        assert (broken.status_code, broken.json()["code"]) == (400, 3)
        later = await client.get(session_url(url, sid))
        assert (later.status_code, later.json()["code"]) == (400, 1)
        assert eio_keys(polling_redis, sid) == []


@ON_BOTH
async def test_a_close_packet_ends_the_session_and_its_pending_poll(balancer, store, token) -> None:
    """The client's CLOSE, POSTed while its GET waits (on the other process): the GET answers at once with a
    NOOP, not a CLOSE (the JavaScript server's lib/transports/polling.ts: the client closed, its pending poll
    is merely ended), the session's keys go, and its sid is unknown from then on, on both processes."""
    async with httpx.AsyncClient(timeout=10) as client:
        url = balancer.http_url
        sid = await connected_session(client, url, token)
        waiting = asyncio.create_task(client.get(session_url(url, sid)))
        await asyncio.sleep(0.3)
        assert (await client.post(session_url(url, sid), content=b"1")).text == "ok"
        answer = await waiting
        assert (answer.status_code, answer.text) == (200, "6")
        with redis_kinds.sync_client(store) as direct:
            assert direct.exists(f"aa:eio:{{{sid}}}", f"aa:eio:{{{sid}}}:out") == 0
        for method in ("GET", "POST", "GET", "POST"):
            later = await client.request(method, session_url(url, sid), content=b"3")
            assert (later.status_code, later.json()) == (400, {"code": 1, "message": "Session ID unknown"})


async def test_a_post_after_the_token_expired_leaves_the_close_to_the_next_poll(balancer, polling_redis, token) -> None:
    """The token expires while no GET waits, and the client's next request is a POST (its pong, say): the session
    ends, but the next GET, on either process, answers CLOSE, which the client takes for the server's close
    ("transport close"); a 400 would be a transport error to it. The POST's packets are not run."""
    name = conversation()
    async with httpx.AsyncClient(timeout=10) as client:
        url = balancer.http_url
        sid = await connected_session(client, url, short_lived_token(1.5))
        await asyncio.sleep(2.0)
        late = f'3\x1e420["join-conversation","{name}"]'.encode()
        assert (await client.post(session_url(url, sid), content=late)).text == "ok"
        answer = await client.get(session_url(url, sid))
        assert (answer.status_code, answer.text) == (200, "1")
        assert eio_keys(polling_redis, sid) == []
        later = await client.get(session_url(url, sid))
        assert (later.status_code, later.json()) == (400, {"code": 1, "message": "Session ID unknown"})


@pytest.fixture(scope="module")
def slow_ping_connector(polling_redis) -> Iterator[processes.Server]:
    """A connector whose polls wait 20 s for their ping: what ends a session sooner is not the heartbeat."""
    with processes.service_server(role="connector", redis=polling_redis, SOCKETIO_PING_INTERVAL="20",
                                 SOCKETIO_PING_TIMEOUT="20") as server:
        yield server


async def abandoned_poll(port: int, sid: str) -> None:
    """A GET of the session whose client closes its connection half a second in, as a closed tab does."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    await asyncio.sleep(0.5)
    assert not reader.at_eof()  # still waiting
    writer.close()
    await writer.wait_closed()


@pytest.mark.parametrize("via", ["direct", "nginx"])
async def test_a_client_dropping_its_waiting_poll_ends_the_session_and_can_recover(
    polling_redis, slow_ping_connector, token, via
) -> None:
    """The session ends when its client goes, not 20 s later at the ping (and its keys' expiry after that), as
    the JavaScript server ends it; the client that comes back with its pid and offset recovers its conversation."""
    name = conversation()
    with contextlib.ExitStack() as stack:
        port = (stack.enter_context(round_robin([slow_ping_connector.port])).port if via == "nginx"
                else slow_ping_connector.port)
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(timeout=10) as client:
            sid = await handshake(client, url, ping_ms=(20000, 20000))
            await client.post(session_url(url, sid), content=f'40{{"token":"{token}"}}'.encode())
            pid = connect_answer((await client.get(session_url(url, sid))).text)["pid"]
            await client.post(session_url(url, sid), content=f'420["join-conversation","{name}"]'.encode())
            assert (await client.get(session_url(url, sid))).text == f'430[true,"{name}"]'
            await abandoned_poll(port, sid)
            await wait_for_no_eio_keys(polling_redis, [sid], timeout=3)
            again = await handshake(client, url, ping_ms=(20000, 20000))
            auth = json.dumps({"token": token, "pid": pid})  # no event yet: no offset, as socket.io-client sends it
            await client.post(session_url(url, again), content=f"40{auth}".encode())
            answer = connect_answer((await client.get(session_url(url, again))).text)
            assert answer["pid"] == pid


async def test_cors_for_the_allowed_origins_with_credentials(balancer) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        url = balancer.http_url
        preflight = await client.options(f"{url}/socket.io/?EIO=4&transport=polling", headers={
            "Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        assert preflight.headers["access-control-allow-credentials"] == "true"
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert preflight.headers["access-control-allow-headers"] == "content-type"
        opened = await client.get(f"{url}/socket.io/?EIO=4&transport=polling", headers={"Origin": ALLOWED_ORIGIN})
        assert opened.status_code == 200
        assert opened.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        assert opened.headers["access-control-allow-credentials"] == "true"
        refused = await client.get(f"{url}/socket.io/?EIO=4&transport=polling",
                                   headers={"Origin": "https://evil.example"})
        assert (refused.status_code, refused.json()) == (403, {"code": 4, "message": "Forbidden"})
        assert "access-control-allow-origin" not in refused.headers


async def test_abandoned_sessions_leave_no_keys(balancer, polling_redis, token) -> None:
    """One never connects to the namespace (gone after WEBSOCKET_AUTH_TIMEOUT), one connects and then stops
    polling (gone after the ping interval and timeout): neither leaves a key behind."""
    async with httpx.AsyncClient(timeout=10) as client:
        url = balancer.http_url
        never_connected = await handshake(client, url)
        sid = await connected_session(client, url, token)
        assert eio_keys(polling_redis, never_connected) and eio_keys(polling_redis, sid)
        await wait_for_no_eio_keys(polling_redis, [never_connected, sid], timeout=20)
        for expired in (never_connected, sid):  # an expired sid is an unknown one
            for method in ("GET", "POST"):
                response = await client.request(method, session_url(url, expired), content=b"3")
                assert (response.status_code, response.json()) == (400, {"code": 1, "message": "Session ID unknown"})


async def test_long_polls_waiting_per_process_are_bounded(polling_redis, token) -> None:
    with processes.service_server(role="connector", redis=polling_redis, SOCKETIO_MAX_WAITING_POLLS="1",
                                 **PING) as server:
        async with httpx.AsyncClient(timeout=10) as client:
            sessions = [await handshake(client, server.http_url) for _ in range(2)]
            for sid in sessions:
                await client.post(session_url(server.http_url, sid), content=f'40{{"token":"{token}"}}'.encode())
                assert (await client.get(session_url(server.http_url, sid))).text.startswith("40{")
            waiting = asyncio.create_task(client.get(session_url(server.http_url, sessions[0])))
            await asyncio.sleep(0.5)
            refused = await client.get(session_url(server.http_url, sessions[1]))
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert (await waiting).status_code == 200


@ON_BOTH
async def test_joins_past_the_rate_are_refused_with_the_reason_on_any_process(store, token) -> None:
    """A long-polling session's joins are counted in Redis (its POSTs may reach any process): past
    DESKTOP_JOIN_BURST in the window, a join is acknowledged ``[false, reason]`` and takes no position (no key
    for the refused name); the session goes on."""
    extra = {**PING, "DESKTOP_JOIN_BURST": "3", "DESKTOP_JOINS_PER_SECOND": "0.1"}
    with processes.service_server(role="connector", redis=store, **extra) as first, \
            processes.service_server(role="connector", redis=store, **extra) as second, \
            round_robin([first.port, second.port]) as proxy:
        async with httpx.AsyncClient(timeout=10) as client:
            url = proxy.http_url
            sid = await connected_session(client, url, token)
            names = [conversation() for _ in range(4)]
            for number, name in enumerate(names):
                body = f'42{number}["join-conversation","{name}"]\x1e42{number + 10}["leave-conversation","{name}"]'
                assert (await client.post(session_url(url, sid), content=body.encode())).text == "ok"
            frames = (await client.get(session_url(url, sid))).text.split("\x1e")
            answers = {int(match[1]): json.loads(match[2]) for frame in frames
                       if (match := re.fullmatch(r"43(\d+)(\[.*\])", frame))}
            assert [answers[number] for number in range(3)] == [[True, name] for name in names[:3]]
            assert answers[3][0] is False and answers[3][1].startswith("joining conversations too fast")
            assert [answers[number] for number in range(10, 14)] == [[True, name] for name in names]
            with redis_kinds.sync_client(store) as direct:
                assert direct.keys(f"*{names[3]}*") == []  # on a cluster: every primary's


async def test_a_refused_second_poll_on_one_process_ends_the_first_at_once_and_leaves_the_bound(
    polling_redis, token
) -> None:
    """Two GETs of one session on one process: the second is refused (400 code 3) and the first answers CLOSE at
    once, woken by the session's end long before the 60 s ping; the bound of two waiting polls still admits two."""
    with processes.service_server(role="connector", redis=polling_redis, SOCKETIO_MAX_WAITING_POLLS="2",
                                 SOCKETIO_PING_INTERVAL="60") as server:
        url = server.http_url
        loop = asyncio.get_running_loop()
        async with httpx.AsyncClient(timeout=20) as client:
            sessions = [await connected_session(client, url, token, ping_ms=(60000, 20000)) for _ in range(3)]
            first = asyncio.create_task(client.get(session_url(url, sessions[0])))
            await asyncio.sleep(0.5)
            started = loop.time()
            second = await client.get(session_url(url, sessions[0]))
            assert (second.status_code, second.content) == (400, b"")
            assert (await first).text == "1"
            assert loop.time() - started < 5
            waiting = [asyncio.create_task(client.get(session_url(url, sid))) for sid in sessions[1:]]
            await asyncio.sleep(0.5)
            for sid in sessions[1:]:
                await client.post(session_url(url, sid), content=b"1")  # close: each waiting GET answers
            assert [(await answer).status_code for answer in waiting] == [200, 200]


async def test_the_upgrade_probe_ends_the_pending_poll_and_the_websocket_takes_the_session_over(
    balancer, polling_redis, token
) -> None:
    """By hand, as Engine.IO specifies it: 2probe / 3probe, a noop for the waiting GET, then 5; afterwards the
    polling session is gone (400 on HTTP, no keys) and the WebSocket carries it (acknowledgements arrive)."""
    url = balancer.http_url
    name = conversation()
    async with httpx.AsyncClient(timeout=10) as client, aiohttp.ClientSession() as http:
        sid = await connected_session(client, url, token)
        waiting = asyncio.create_task(client.get(session_url(url, sid)))
        await asyncio.sleep(0.3)
        async with http.ws_connect(f"{url}/socket.io/?EIO=4&transport=websocket&sid={sid}") as socket:
            await socket.send_str("2probe")
            assert (await socket.receive(timeout=10)).data == "3probe"
            assert (await waiting).text == "6"
            await socket.send_str("5")
            await socket.send_str(f'421["join-conversation","{name}"]')
            assert (await socket.receive(timeout=10)).data == f'431[true,"{name}"]'
            for method in ("GET", "POST", "GET", "POST"):  # on both processes
                response = await client.request(method, session_url(url, sid), content=b"3")
                assert (response.status_code, response.json()["code"]) == (400, 1), method
            assert eio_keys(polling_redis, sid) == []


async def test_an_abandoned_upgrade_leaves_polling_working(balancer, token) -> None:
    url = balancer.http_url
    async with httpx.AsyncClient(timeout=10) as client, aiohttp.ClientSession() as http:
        sid = await connected_session(client, url, token)
        async with http.ws_connect(f"{url}/socket.io/?EIO=4&transport=websocket&sid={sid}") as socket:
            await socket.send_str("2probe")
            assert (await socket.receive(timeout=10)).data == "3probe"
        await asyncio.sleep(0.5)  # the server notices the close
        name = conversation()
        assert (await client.post(session_url(url, sid), content=f'421["join-conversation","{name}"]'.encode())
                ).status_code == 200
        assert (await client.get(session_url(url, sid))).text == f'431[true,"{name}"]'


async def test_streaming_calls_are_refused_over_long_polling_with_the_reason(balancer, token) -> None:
    desktop = SocketIODesktop()
    await desktop.connect(balancer, token, transports=("polling",))
    try:
        answer = await desktop.client.call("stream-request", {"streamId": "s-1", "method": "x"}, timeout=10)
        assert list(answer) == [False, "streaming calls need the websocket transport"]
    finally:
        await desktop.disconnect()


# --- the history no longer reaching back, Redis restarted, presence keys -----------------------------


@pytest.mark.parametrize("then", ["poll", "upgrade"])
async def test_a_session_behind_the_kept_history_is_closed_and_its_recovery_says_so(
    polling_redis, connectors, token, then
) -> None:
    """Events a session was not sent yet are trimmed away (EVENT_HISTORY_MAX_EVENTS=10): neither its next poll
    nor an upgrade to the WebSocket passes what is left off as the whole stream. The session is closed (a CLOSE
    packet; the WebSocket closes), and the client's recovery is refused the same way: a new pid."""
    url = connectors[0].http_url
    name = conversation()
    with processes.service_server(role="interceptor", redis=polling_redis, EVENT_HISTORY_MAX_EVENTS="10") as small:
        async with httpx.AsyncClient(timeout=10) as client, aiohttp.ClientSession() as http:
            sid = await handshake(client, url)
            await client.post(session_url(url, sid), content=f'40{{"token":"{token}"}}'.encode())
            pid = connect_answer((await client.get(session_url(url, sid))).text)["pid"]
            await client.post(session_url(url, sid), content=f'420["join-conversation","{name}"]'.encode())
            assert f'430[true,"{name}"]' in (await client.get(session_url(url, sid))).text.split("\x1e")
            await push(small, name, "seen")
            (seen,) = [frame for frame in (await client.get(session_url(url, sid))).text.split("\x1e")
                       if frame.startswith("42")]
            assert json.loads(seen[2:])[1]["message_id"] == "seen"
            offset = json.loads(seen[2:])[-1]
            for number in range(12):
                await push(small, name, f"trimmed-{number}")
            if then == "poll":
                assert (await client.get(session_url(url, sid))).text.split("\x1e")[-1] == "1"
            else:
                async with http.ws_connect(f"{url}/socket.io/?EIO=4&transport=websocket&sid={sid}") as socket:
                    await socket.send_str("2probe")
                    assert (await socket.receive(timeout=10)).data == "3probe"
                    await socket.send_str("5")
                    closing = await socket.receive(timeout=10)
                    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), closing
                    assert socket.close_code == 1000
            assert eio_keys(polling_redis, sid) == []
            # The client comes back with its pid and offset, as socket.io-client does: not recovered.
            again = await handshake(client, url)
            auth = json.dumps({"token": token, "pid": pid, "offset": offset})
            await client.post(session_url(url, again), content=f"40{auth}".encode())
            answer = connect_answer((await client.get(session_url(url, again))).text)
            assert answer["pid"] != pid


async def test_the_wake_subscription_comes_back_after_a_redis_restart(token) -> None:
    """A GET waiting when Redis restarts (empty) is woken and told its session ended; a new session's GET,
    waiting on one process, is woken by its own POST's acknowledgement through the restored subscription
    (the ping interval, 60 s, is longer than the client's patience) and then by a pushed event."""
    with processes.restartable_redis() as store, \
            processes.service_server(role="connector", redis=store.address, SOCKETIO_PING_INTERVAL="60") as server, \
            processes.service_server(role="interceptor", redis=store.address) as pushes:
        url = server.http_url
        async with httpx.AsyncClient(timeout=20) as client:

            async def connected() -> str:
                opened = await client.get(f"{url}/socket.io/", params={"EIO": "4", "transport": "polling"})
                sid = json.loads(opened.text[1:])["sid"]
                await client.post(session_url(url, sid), content=f'40{{"token":"{token}"}}'.encode())
                connect_answer((await client.get(session_url(url, sid))).text)
                return sid

            sid = await connected()
            waiting = asyncio.create_task(client.get(session_url(url, sid)))
            await asyncio.sleep(0.5)
            store.stop()
            store.start()
            assert (await waiting).text == "1"
            await clients.wait_until(lambda: "wake subscription restored" in server.log(), what="the restored log")
            sid = await connected()
            name = conversation()
            waiting = asyncio.create_task(client.get(session_url(url, sid)))
            await asyncio.sleep(0.5)
            await client.post(session_url(url, sid), content=f'420["join-conversation","{name}"]'.encode())
            assert (await waiting).text == f'430[true,"{name}"]'
            waiting = asyncio.create_task(client.get(session_url(url, sid)))
            await asyncio.sleep(0.5)
            await push(pushes, name, "after-restart")
            assert '"after-restart"' in (await waiting).text
        assert "Traceback" not in server.log()


@ON_BOTH
async def test_the_presence_key_follows_a_polling_session_on_any_process(balancer, store, token) -> None:
    """Companion services poll ``EXISTS <conversation>``: it is there while the polling desktop (its requests
    spread over both processes) has joined, renewed past its 3 s lifetime, and goes when it leaves or ends."""
    name = conversation()
    client = redis_kinds.sync_client(store)
    desktop = SocketIODesktop()
    await desktop.connect(balancer, token, transports=("polling",))
    try:
        assert client.exists(name) == 0
        assert list(await desktop.join(name)) == [True, name]
        assert client.exists(name) == 1  # set before the acknowledgement went out
        await asyncio.sleep(4)  # longer than the key's lifetime, two ping intervals
        assert client.exists(name) == 1
        assert list(await desktop.leave(name)) == [True, name]
        await clients.wait_until(lambda: client.exists(name) == 0, what="the key to go after the leave")
        assert list(await desktop.join(name)) == [True, name]
        assert client.exists(name) == 1
    finally:
        await desktop.disconnect()
    await clients.wait_until(lambda: client.exists(name) == 0, what="the key to go with the session")
    client.close()


async def test_a_history_join_upgraded_before_its_poll_keeps_the_offset_the_polls_reached(
    interceptor, connectors, token
) -> None:
    """A history join POSTed over polling and replayed over the WebSocket that takes the session over: the
    replayed event's offset keeps the position the polls reached in the other conversation, so that
    socket.io-client's last offset does not move back there (its recovery would send those events again)."""
    url = connectors[0].http_url
    live, late = conversation(), conversation()
    await push(interceptor, late, "old")
    async with httpx.AsyncClient(timeout=10) as client, aiohttp.ClientSession() as http:
        sid = await connected_session(client, url, token)
        await client.post(session_url(url, sid), content=f'420["join-conversation","{live}"]'.encode())
        assert f'430[true,"{live}"]' in (await client.get(session_url(url, sid))).text.split("\x1e")
        await push(interceptor, live, "live")
        ((_, payload, live_offset),) = conversation_events((await client.get(session_url(url, sid))).text)
        assert payload["message_id"] == "live"
        join = json.dumps(["join-conversation", late, {"history": True}])
        await client.post(session_url(url, sid), content=f"421{join}".encode())
        async with http.ws_connect(f"{url}/socket.io/?EIO=4&transport=websocket&sid={sid}") as socket:
            await socket.send_str("2probe")
            assert (await socket.receive(timeout=10)).data == "3probe"
            await socket.send_str("5")
            frames = []
            while not any(conversation_events(frame) for frame in frames):
                frames.append((await socket.receive(timeout=10)).data)
            assert f'431[true,"{late}"]' in frames
            ((_, payload, offset),) = conversation_events(frames[-1])
            assert payload["message_id"] == "old"
            assert offsets.position(offset, live) == offsets.position(live_offset, live)
            assert offsets.position(offset, late).seq == 1


# --- recovery across transports, by hand -------------------------------------------------------------


class ByHand:
    """One Engine.IO connection on ``transport`` ("websocket" or "polling") made by hand, so that the test sets
    the CONNECT auth (``pid``, ``offset``) and reads the CONNECT answer's ``pid``, as socket.io-client does.
    Pings are answered; ``collect`` gathers every other packet."""

    def __init__(self, transport: str, client: httpx.AsyncClient, http: aiohttp.ClientSession, url: str) -> None:
        self.transport, self.client, self.http, self.url = transport, client, http, url
        self.sid = ""
        self.socket: aiohttp.ClientWebSocketResponse | None = None
        self.frames: list[str] = []

    async def connect(self, auth: dict) -> dict:
        if self.transport == "websocket":
            self.socket = await self.http.ws_connect(f"{self.url}/socket.io/?EIO=4&transport=websocket")
            assert (await self.socket.receive(timeout=10)).data.startswith("0{")
        else:
            self.sid = await handshake(self.client, self.url)
        await self.send(f"40{json.dumps(auth)}")
        await self.collect(lambda frames: any(frame.startswith("40") for frame in frames))
        answer = next(frame for frame in self.frames if frame.startswith("40"))
        return json.loads(answer[2:])

    async def send(self, frame: str) -> None:
        if self.socket is not None:
            await self.socket.send_str(frame)
        else:
            assert (await self.client.post(session_url(self.url, self.sid), content=frame.encode())).text == "ok"

    async def collect(self, condition, *, timeout: float = 15) -> None:
        """Receive until ``condition(self.frames)`` holds."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition(self.frames):
            remaining = deadline - asyncio.get_running_loop().time()
            assert remaining > 0, f"timed out; frames so far: {self.frames}"
            if self.socket is not None:
                try:
                    message = await self.socket.receive(timeout=min(remaining, 1.0))
                except asyncio.TimeoutError:
                    continue
                assert message.type == aiohttp.WSMsgType.TEXT, message
                received = [message.data]
            else:
                answer = await self.client.get(session_url(self.url, self.sid))
                assert answer.status_code == 200, answer.text
                received = answer.text.split("\x1e")
            for frame in received:
                if frame == "2":
                    await self.send("3")
                else:
                    self.frames.append(frame)

    def events(self) -> list[list]:
        return [json.loads(frame[2:]) for frame in self.frames if frame.startswith("42")]

    async def drop(self) -> None:
        """End the connection as a transport would (no Socket.IO DISCONNECT): the session stays recoverable."""
        if self.socket is not None:
            await self.socket.close()
        else:
            await self.send("1")  # Engine.IO's CLOSE: the session's recovery window begins


@ON_BOTH
@pytest.mark.parametrize(("first", "second"), [("websocket", "polling"), ("polling", "websocket")])
async def test_a_session_recovers_on_the_other_transport(interceptor, balancer, token, first, second) -> None:
    """A session started on one transport, its connection ended, comes back on the other through round-robin
    nginx with its pid and last offset: the same pid (socket.recovered), its conversation without a join, every
    missed event once and in order, then live events."""
    name = conversation()
    url = balancer.http_url
    async with httpx.AsyncClient(timeout=10) as client, aiohttp.ClientSession() as http:
        one = ByHand(first, client, http, url)
        pid = (await one.connect({"token": token}))["pid"]
        await one.send(f'420["join-conversation","{name}"]')
        await one.collect(lambda frames: f'430[true,"{name}"]' in frames)
        await push(interceptor, name, "before")
        await one.collect(lambda frames: len(one.events()) == 1)
        ((event, payload, offset),) = one.events()
        assert (event, payload["message_id"]) == ("new-message-event", "before")
        await one.drop()
        missed = [f"missed-{number}" for number in range(5)]
        for message_id in missed:
            await push(interceptor, name, message_id)

        two = ByHand(second, client, http, url)
        answer = await two.connect({"token": token, "pid": pid, "offset": offset})
        assert answer["pid"] == pid  # recovered
        await two.collect(lambda frames: len(two.events()) >= len(missed))
        await asyncio.sleep(1.0)  # a duplicate would come before the live event
        await push(interceptor, name, "after")
        await two.collect(lambda frames: any(event[1]["message_id"] == "after" for event in two.events()))
        assert [payload["message_id"] for _, payload, _ in two.events()] == [*missed, "after"]
        offsets = [event[-1] for event in two.events()]
        assert len(set(offsets)) == len(offsets) and offset not in offsets
        assert not any(frame.startswith("43") for frame in two.frames)  # no join was needed
        await two.drop()
