"""Engine.IO 4 long-polling where the JavaScript reference server (engine.io: lib/server.ts, lib/socket.ts,
lib/transports/polling.ts) decides what a client sees: the pong deadline, and a WebSocket opened for a
session that another one is upgrading or has upgraded.

Two connector processes behind round-robin nginx: consecutive requests of one session land on both. The ping
interval (5 s) is longer than the ping timeout (2 s), as with the defaults (25 s and 20 s), so that a session
missing its pong deadline is seen to end at the deadline rather than at the next ping.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import aiohttp
import httpx
import pytest

from testing import clients, processes
from testing.engineio_polling import connected_session, eio_keys, session_url
from testing.nginx_proxy import round_robin

PING_MS = (5000, 2000)
UNKNOWN = {"code": 1, "message": "Session ID unknown"}


@pytest.fixture(scope="module")
def conformance_redis() -> Iterator[processes.RedisAddress]:
    with processes.redis_server(private=True) as address:
        yield address


@pytest.fixture(scope="module")
def balancer(conformance_redis):
    extra = {"SOCKETIO_PING_INTERVAL": "5", "SOCKETIO_PING_TIMEOUT": "2"}
    with processes.service_server(role="connector", redis=conformance_redis, **extra) as first, \
            processes.service_server(role="connector", redis=conformance_redis, **extra) as second, \
            round_robin([first.port, second.port]) as proxy:
        yield proxy


@pytest.fixture
def token(settings) -> str:
    return clients.server_token(settings, user="agent")


def websocket_url(url: str, sid: str) -> str:
    return f"{url.replace('http://', 'ws://')}/socket.io/?EIO=4&transport=websocket&sid={sid}"


async def assert_unknown_everywhere(client: httpx.AsyncClient, url: str, sid: str) -> None:
    """POSTs and GETs of ``sid``, two of each so that both processes answer: 400 Session ID unknown."""
    for method in ("POST", "GET", "POST", "GET"):
        response = await client.request(method, session_url(url, sid), content=b"3")
        assert (response.status_code, response.text) == (400, json.dumps(UNKNOWN)), method


# --- the pong deadline -------------------------------------------------------------------------------


async def test_a_poll_waiting_when_the_pong_deadline_passes_answers_close_then(balancer, conformance_redis,
                                                                               token) -> None:
    """The client takes the ping and polls again without answering it: the waiting GET answers CLOSE at the pong
    deadline (2 s), as the JavaScript server closes the session ("ping timeout") and its pending poll with it,
    not at the next ping (5 s); from then on its sid is unknown on every process."""
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(timeout=15) as client:
        url = balancer.http_url
        sid = await connected_session(client, url, token, ping_ms=PING_MS)
        assert (await client.get(session_url(url, sid))).text == "2"
        started = loop.time()
        answer = await client.get(session_url(url, sid))
        assert (answer.status_code, answer.text) == (200, "1")
        assert 1.5 < loop.time() - started < 3.5
        await assert_unknown_everywhere(client, url, sid)
        assert eio_keys(conformance_redis, sid) == []


async def test_a_request_after_the_pong_deadline_finds_the_session_gone(balancer, conformance_redis, token) -> None:
    """No request of the session is there when its pong deadline passes: its late pong (a POST) and every later
    request are answered 400 Session ID unknown, as the JavaScript server answers once it dropped the session,
    although its keys would otherwise live on for the ping interval."""
    async with httpx.AsyncClient(timeout=15) as client:
        url = balancer.http_url
        sid = await connected_session(client, url, token, ping_ms=PING_MS)
        assert (await client.get(session_url(url, sid))).text == "2"
        await asyncio.sleep(2.5)
        await assert_unknown_everywhere(client, url, sid)
        assert eio_keys(conformance_redis, sid) == []


# --- one WebSocket upgrades a session ----------------------------------------------------------------


async def test_a_second_websocket_is_refused_while_one_upgrades_and_after(balancer, conformance_redis,
                                                                         token) -> None:
    """While one WebSocket upgrades the session, and after it took the session over, another WebSocket opened
    with its sid is refused (403), as the JavaScript server closes it ("transport has already been trying to
    upgrade", "transport had already been upgraded"); the first one's upgrade goes on."""
    url = balancer.http_url
    name = clients.new_conversation("eio")
    async with httpx.AsyncClient(timeout=10) as client, aiohttp.ClientSession() as http:
        sid = await connected_session(client, url, token, ping_ms=PING_MS)
        async with http.ws_connect(websocket_url(url, sid)) as socket:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(websocket_url(url, sid))
            assert refused.value.status == 403
            await socket.send_str("2probe")
            assert (await socket.receive(timeout=10)).data == "3probe"
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(websocket_url(url, sid))
            assert refused.value.status == 403
            await socket.send_str("5")
            for _ in range(2):  # on both processes
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await http.ws_connect(websocket_url(url, sid))
                assert refused.value.status == 403
            await socket.send_str(f'421["join-conversation","{name}"]')
            assert (await socket.receive(timeout=10)).data == f'431[true,"{name}"]'
        assert eio_keys(conformance_redis, sid) == []


async def test_an_upgrade_not_completed_in_time_is_closed_and_polling_goes_on(balancer, token) -> None:
    """A WebSocket that opens with the session's sid and does not complete the upgrade is closed when the
    upgrade's time (the ping timeout, 2 s here) is up, as the JavaScript server closes it ("client did not
    complete upgrade"); the session goes on polling, and a later WebSocket may upgrade it."""
    url = balancer.http_url
    name = clients.new_conversation("eio")
    async with httpx.AsyncClient(timeout=10) as client, aiohttp.ClientSession() as http:
        sid = await connected_session(client, url, token, ping_ms=PING_MS)
        async with http.ws_connect(websocket_url(url, sid)) as idle:
            closing = await idle.receive(timeout=5)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), closing
            assert idle.close_code == 1000
        await client.post(session_url(url, sid), content=f'421["join-conversation","{name}"]'.encode())
        assert f'431[true,"{name}"]' in (await client.get(session_url(url, sid))).text.split("\x1e")
        async with http.ws_connect(websocket_url(url, sid)) as socket:
            await socket.send_str("2probe")
            assert (await socket.receive(timeout=10)).data == "3probe"
            await socket.send_str("5")
            await socket.send_str(f'422["leave-conversation","{name}"]')
            assert (await socket.receive(timeout=10)).data == f'432[true,"{name}"]'
