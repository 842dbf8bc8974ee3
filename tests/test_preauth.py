"""Pre-authentication limits per client address (connector/desktops/preauth.py) on two connector processes, one Redis.

Each test's client addresses are its own (random ones under 10.0.0.0/8), given
in X-Forwarded-For to servers that trust one proxy (``TRUSTED_PROXY_HOPS=1``),
so one loopback client plays several. Requests alternate between the two
processes: what one process counted, the other enforces.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Iterator

import aiohttp
import httpx
import pytest

from testing import clients, processes

HANDSHAKES = 20  # per address and minute
SHARE = 3  # unauthenticated connections per address
SOCKETIO = "/socket.io/?EIO=4&transport=websocket"
PLAIN = "/ws/"
WAIT = 10.0


@pytest.fixture(scope="module")
def connectors(redis_server: processes.RedisAddress) -> Iterator[tuple[processes.Server, processes.Server]]:
    extra = {"TRUSTED_PROXY_HOPS": "1", "HANDSHAKE_RATE_LIMIT": f"{HANDSHAKES}/minute",
             "WEBSOCKET_MAX_UNAUTHENTICATED_PER_ADDRESS": str(SHARE), "WEBSOCKET_AUTH_TIMEOUT": "60",
             "SOCKETIO_PING_INTERVAL": "60"}
    with processes.service_server(role="connector", redis=redis_server, **extra) as first, \
            processes.service_server(role="connector", redis=redis_server, **extra) as second:
        yield first, second


@pytest.fixture
def token(settings) -> str:
    return clients.server_token(settings, user="agent")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def new_address() -> str:
    return "10." + ".".join(str(byte) for byte in secrets.token_bytes(3))


def by(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


async def polling_handshake(client: httpx.AsyncClient, server: processes.Server, address: str) -> httpx.Response:
    return await client.get(f"{server.http_url}/socket.io/", params={"EIO": "4", "transport": "polling"},
                            headers=by(address))


def sid_of(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return json.loads(response.text[1:])["sid"]


def poll_url(server: processes.Server, sid: str) -> str:
    return f"{server.http_url}/socket.io/?EIO=4&transport=polling&sid={sid}"


async def refused_with(http: aiohttp.ClientSession, url: str, address: str) -> int:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(url, headers=by(address))
    return refused.value.status


# --- handshakes ---------------------------------------------------------------------------------


async def test_a_handshake_flood_from_one_address_gets_429_across_processes_while_another_address_handshakes(
    connectors, http
) -> None:
    """HANDSHAKE_RATE_LIMIT handshakes from one address, alternating between the processes, are answered; the
    next gets 429 {"code": 3, "message"} with Retry-After on either process, and its WebSocket handshakes (both
    paths) 403; another address still handshakes on both transports."""
    flooder, other = new_address(), new_address()
    async with httpx.AsyncClient(timeout=WAIT) as client:
        for number in range(HANDSHAKES):
            sid_of(await polling_handshake(client, connectors[number % 2], flooder))
        for server in connectors:
            refused = await polling_handshake(client, server, flooder)
            assert refused.status_code == 429
            body = refused.json()
            assert body["code"] == 3 and "HANDSHAKE_RATE_LIMIT" in body["message"]
            assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert await refused_with(http, connectors[0].http_url + SOCKETIO, flooder) == 403
        assert await refused_with(http, connectors[1].http_url + PLAIN, flooder) == 403
        sid_of(await polling_handshake(client, connectors[1], other))
    async with http.ws_connect(connectors[0].http_url + PLAIN, headers=by(other)) as ws:
        await ws.send_json({"type": "ping", "id": 1})
        assert (await ws.receive_json(timeout=WAIT))["type"] == "pong"
    assert "reached for " + flooder in connectors[0].log() + connectors[1].log()


async def test_an_upgrade_to_the_websocket_is_no_new_handshake(connectors, http) -> None:
    """A WebSocket with the sid of a polling session continues that session: once the address has used its
    handshakes, the upgrade of a session it opened before is still accepted."""
    address = new_address()
    async with httpx.AsyncClient(timeout=WAIT) as client:
        sids = [sid_of(await polling_handshake(client, connectors[0], address)) for _ in range(HANDSHAKES)]
        assert (await polling_handshake(client, connectors[0], address)).status_code == 429
    url = f"{connectors[1].http_url}{SOCKETIO}&sid={sids[0]}"
    async with http.ws_connect(url, headers=by(address)) as ws:
        await ws.send_str("2probe")
        assert await ws.receive_str(timeout=WAIT) == "3probe"


# --- the share of unauthenticated connections -------------------------------------------------------


async def test_one_address_holding_its_share_of_unauthenticated_websockets_cannot_take_more(
    connectors, http, token
) -> None:
    """SHARE unauthenticated WebSockets of one address, on both processes: its next handshake gets 403 on
    either; another address connects; once one of the first authenticates, or one closes, the address may open
    another."""
    address, other = new_address(), new_address()
    held = [await http.ws_connect(connectors[number % 2].http_url + PLAIN, headers=by(address))
            for number in range(SHARE)]
    try:
        assert await refused_with(http, connectors[0].http_url + PLAIN, address) == 403
        assert await refused_with(http, connectors[1].http_url + SOCKETIO, address) == 403
        async with http.ws_connect(connectors[0].http_url + PLAIN, headers=by(other)):
            pass
        await held[0].send_json({"type": "authenticate", "token": token})
        assert (await held[0].receive_json(timeout=WAIT))["type"] == "authenticated"
        held.append(await connect_soon(http, connectors[1].http_url + PLAIN, address))
        await held.pop(1).close()
        held.append(await connect_soon(http, connectors[0].http_url + SOCKETIO, address))
        assert await refused_with(http, connectors[1].http_url + PLAIN, address) == 403
    finally:
        for ws in held:
            await ws.close()
    assert "WEBSOCKET_MAX_UNAUTHENTICATED_PER_ADDRESS" in connectors[0].log() + connectors[1].log()


async def connect_soon(
    http: aiohttp.ClientSession, url: str, address: str, *, seconds: float = 5.0
) -> aiohttp.ClientWebSocketResponse:
    """A WebSocket from ``address`` once its freed slot shows in Redis (a sign-in's release is not awaited)."""
    for _ in range(int(seconds / 0.1)):
        try:
            return await http.ws_connect(url, headers=by(address))
        except aiohttp.WSServerHandshakeError as error:
            assert error.status == 403
            await asyncio.sleep(0.1)
    raise AssertionError("the address's share was not freed")


async def test_waiting_polls_of_unauthenticated_sessions_count_against_the_share_and_connected_ones_do_not(
    connectors, token
) -> None:
    """SHARE GETs of unconnected sessions from one address wait (on both processes); the next such GET gets
    429 {"code": 3} while another address's waits; a session of the address connected to "/" still polls."""
    address, other = new_address(), new_address()
    async with httpx.AsyncClient(timeout=WAIT * 2) as client:
        sids = [sid_of(await polling_handshake(client, connectors[number % 2], address)) for number in range(SHARE + 2)]
        connected = sids.pop()
        assert (await client.post(poll_url(connectors[0], connected), content=f'40{{"token":"{token}"}}'.encode(),
                                  headers=by(address))).text == "ok"
        waiting = [asyncio.create_task(client.get(poll_url(connectors[number % 2], sid), headers=by(address)))
                   for number, sid in enumerate(sids[:SHARE])]
        await asyncio.sleep(1.0)
        assert not any(task.done() for task in waiting)
        for server in connectors:
            refused = await client.get(poll_url(server, sids[SHARE]), headers=by(address))
            assert refused.status_code == 429 and refused.json()["code"] == 3
            assert refused.headers["retry-after"] == "1"
        others = sid_of(await polling_handshake(client, connectors[1], other))
        admitted = asyncio.create_task(client.get(poll_url(connectors[0], others), headers=by(other)))
        answer = await client.get(poll_url(connectors[1], connected), headers=by(address))
        assert answer.status_code == 200 and answer.text.startswith("40{")
        await asyncio.sleep(0.5)
        assert not admitted.done()
        for server, sid in [(connectors[0], others), *zip(connectors * SHARE, sids[:SHARE])]:
            await client.post(poll_url(server, sid), content=b"1", headers=by(address))  # close: the GETs answer
        assert [(await task).status_code for task in (*waiting, admitted)] == [200] * (SHARE + 1)


async def test_the_holds_of_a_process_that_died_lapse_after_the_authentication_timeout(redis_server, http) -> None:
    """A process killed while an address holds its share there leaves the entries in Redis: the other process
    refuses the address until they lapse (WEBSOCKET_AUTH_TIMEOUT plus the grace), then admits it again."""
    extra = {"TRUSTED_PROXY_HOPS": "1", "WEBSOCKET_MAX_UNAUTHENTICATED_PER_ADDRESS": str(SHARE),
             "WEBSOCKET_AUTH_TIMEOUT": "1"}
    address = new_address()
    with processes.service_server(role="connector", redis=redis_server, **extra) as doomed, \
            processes.service_server(role="connector", redis=redis_server, **extra) as survivor:
        held = [await http.ws_connect(doomed.http_url + PLAIN, headers=by(address)) for _ in range(SHARE)]
        doomed.process.kill()
        assert await refused_with(http, survivor.http_url + PLAIN, address) == 403
        admitted = await connect_soon(http, survivor.http_url + PLAIN, address, seconds=20)
        for ws in (*held, admitted):
            await ws.close()
