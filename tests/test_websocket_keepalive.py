"""WebSocket-level keepalive pings of the image's server (``aa_site.serve_uvicorn``), against a real connector.

A ``/ws/`` connection has no heartbeat of its own, so the server pings it
every ``WEBSOCKET_KEEPALIVE_SECONDS`` and closes a peer that stops answering.
A ``/socket.io/`` connection has Engine.IO's heartbeat (``SOCKETIO_PING_INTERVAL``)
and gets no WebSocket pings on top of it. aiohttp's client with ``autoping``
off shows every ping frame and answers none.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiohttp
import pytest

from testing import processes
from testing.processes import Server

KEEPALIVE = 1  # seconds
WATCH = 4 * KEEPALIVE


@pytest.fixture(scope="module")
def connector(redis_server) -> Iterator[Server]:
    with processes.service_server(
        role="connector",
        redis=redis_server,
        WEBSOCKET_KEEPALIVE_SECONDS=str(KEEPALIVE),
        SOCKETIO_PING_INTERVAL="600",  # no Engine.IO ping while these tests watch
        WEBSOCKET_AUTH_TIMEOUT="60",
    ) as server:
        yield server


async def frames_within(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> list[aiohttp.WSMessage]:
    """Every frame the server sends in ``seconds`` (or until it closes the connection), answering none."""
    frames: list[aiohttp.WSMessage] = []
    loop = asyncio.get_running_loop()
    until = loop.time() + seconds
    while (left := until - loop.time()) > 0:
        try:
            frame = await asyncio.wait_for(ws.receive(), left)
        except TimeoutError:
            break
        frames.append(frame)
        if frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            break
    return frames


async def test_a_plain_websocket_is_pinged_and_closed_when_it_stops_answering(connector) -> None:
    async with aiohttp.ClientSession() as http, \
            http.ws_connect(f"ws://127.0.0.1:{connector.port}/ws/", autoping=False, autoclose=False) as ws:
        frames = await frames_within(ws, WATCH)
    kinds = [frame.type for frame in frames]
    assert aiohttp.WSMsgType.PING in kinds, kinds
    # websockets closes a peer whose pong is KEEPALIVE late with 1011 (keepalive ping timeout).
    assert kinds[-1] == aiohttp.WSMsgType.CLOSE and frames[-1].data == 1011, frames


async def test_a_plain_websocket_that_answers_the_pings_stays_open(connector) -> None:
    async with aiohttp.ClientSession() as http, \
            http.ws_connect(f"ws://127.0.0.1:{connector.port}/ws/", autoping=True) as ws:
        frames = await frames_within(ws, WATCH)  # aiohttp answers each ping as it reads it
        await ws.send_json({"type": "ping"})
        answer = await asyncio.wait_for(ws.receive_json(), WATCH)
    assert frames == [], frames
    assert answer == {"type": "pong"}


@pytest.mark.parametrize("path", ["/socket.io/", "/socket.io"])
async def test_a_socket_io_websocket_gets_engine_io_s_heartbeat_only(connector, path) -> None:
    url = f"ws://127.0.0.1:{connector.port}{path}?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as http, http.ws_connect(url, autoping=False, autoclose=False) as ws:
        frames = await frames_within(ws, WATCH)
        still_open = not ws.closed
    kinds = [frame.type for frame in frames]
    assert kinds == [aiohttp.WSMsgType.TEXT], frames  # Engine.IO's OPEN packet, then nothing: no ping, no close
    assert frames[0].data.startswith("0{")
    assert still_open
