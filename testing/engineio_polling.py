"""Engine.IO's long-polling transport over HTTP, by hand: the handshake, a session's URL and its connected
state, what a poll's payload holds, and the sessions' keys in Redis."""

from __future__ import annotations

import json

import httpx
import redis

from testing.processes import RedisAddress


async def handshake(client: httpx.AsyncClient, url: str, *, ping_ms: tuple[int, int] = (2000, 2000)) -> str:
    """A new session's sid; its OPEN packet offers the upgrade and names ``ping_ms`` (interval, timeout)."""
    response = await client.get(f"{url}/socket.io/", params={"EIO": "4", "transport": "polling"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain; charset=UTF-8"
    assert response.text.startswith("0{")
    opened = json.loads(response.text[1:])
    assert (opened["upgrades"], opened["pingInterval"], opened["pingTimeout"]) == (["websocket"], *ping_ms)
    return opened["sid"]


def session_url(url: str, sid: str) -> str:
    return f"{url}/socket.io/?EIO=4&transport=polling&sid={sid}"


async def connected_session(client: httpx.AsyncClient, url: str, token: str, **expected) -> str:
    """A polling session connected to ``/``, its CONNECT answer read (``expected``: ``handshake``'s)."""
    sid = await handshake(client, url, **expected)
    assert (await client.post(session_url(url, sid), content=f'40{{"token":"{token}"}}'.encode())).text == "ok"
    assert (await client.get(session_url(url, sid))).text.startswith("40{")
    return sid


def connect_answer(text: str) -> dict:
    """The CONNECT answer's data, from a GET's payload that starts with it."""
    assert text.startswith("40{"), text
    return json.loads(text[2:].split("\x1e")[0])


def conversation_events(text: str) -> list[list]:
    """The conversation events (name, payload, offset) among the frames of a GET's payload or a WebSocket frame."""
    return [json.loads(frame[2:]) for frame in text.split("\x1e") if frame.startswith("42")]


def eio_keys(address: RedisAddress, sid: str = "") -> list[bytes]:
    """The long-polling sessions' keys (of ``sid`` only, when given)."""
    return list(redis.Redis(host=address.host, port=address.port).scan_iter(f"aa:eio:{{{sid}}}*"))
