"""How the image's server (``aa_site.serve_uvicorn``) reads requests, against real processes.

- A client that never finishes its request headers is closed after
  ``HTTP_HEADER_TIMEOUT`` (before: a header line every half second kept it open for good).
- A ``multipart/form-data`` push that Twisted could not parse as a form reached no view
  (before: Twisted's own 400, nothing logged); it is acknowledged as poison like any other.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import aiohttp
import httpx
import pytest

from testing import processes
from testing.processes import Server

HEADER_TIMEOUT = 2
# Far longer than the timeout: a connection still open by then was never going to be closed.
OBSERVATION_SECONDS = 4 * HEADER_TIMEOUT + 4


@pytest.fixture(scope="module")
def connector(redis_server: processes.RedisAddress) -> Iterator[Server]:
    with processes.service_server(
        role="all", redis=redis_server, HTTP_HEADER_TIMEOUT=str(HEADER_TIMEOUT), WEBSOCKET_AUTH_TIMEOUT="60"
    ) as running:
        yield running


def trickle_headers(server: Server, *, seconds: float) -> float | None:
    """Send a request line, then one header line every 0.5 s for ``seconds``; when the server closed, how soon."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as connection:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        connection.settimeout(0.5)
        line = 0
        while time.monotonic() - started < seconds:
            try:
                connection.sendall(f"X-Slow-{line}: {'a' * 10}\r\n".encode())
                if connection.recv(1024) == b"":
                    return time.monotonic() - started
            except TimeoutError:
                line += 1
                continue
            except (ConnectionResetError, BrokenPipeError):
                return time.monotonic() - started
    return None


def test_a_client_trickling_headers_is_closed_after_the_header_timeout(connector: Server) -> None:
    closed_after = trickle_headers(connector, seconds=OBSERVATION_SECONDS)
    assert closed_after is not None, f"still open after {OBSERVATION_SECONDS}s of trickled headers"
    # The deadline runs from the request line; Twisted checks nothing sooner.
    assert closed_after >= HEADER_TIMEOUT - 0.5
    assert "request headers incomplete" in connector.log()


def test_slow_but_complete_requests_and_websockets_outlive_the_header_timeout(connector: Server) -> None:
    """Only incomplete headers count: a request whose headers end in time is answered, and a WebSocket
    (its handshake's headers complete) stays open and answers long after the deadline."""
    with socket.create_connection(("127.0.0.1", connector.port), timeout=10) as connection:
        connection.sendall(b"GET /healthz HTTP/1.1\r\n")
        time.sleep(HEADER_TIMEOUT / 2)
        connection.sendall(b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := connection.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]

    async def websocket_after_the_deadline() -> dict:
        async with aiohttp.ClientSession() as session, session.ws_connect(f"{connector.http_url}/ws/") as ws:
            await asyncio.sleep(HEADER_TIMEOUT * 2)
            await ws.send_json({"type": "ping", "id": 1})
            return await ws.receive_json(timeout=10)

    assert asyncio.run(websocket_after_the_deadline()) == {"type": "pong", "id": 1}


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", b"--x\r\nnot a form\r\n"),  # no boundary: Twisted's form parser fails
        ("multipart/form-data; boundary=XX", b"garbage"),
        ("application/x-www-form-urlencoded", b"a=1&b=2"),
    ],
    ids=["multipart without boundary", "multipart garbage", "url-encoded"],
)
def test_a_form_push_is_acknowledged_as_poison_with_one_warning(
    connector: Server, content_type: str, body: bytes
) -> None:
    before = connector.log().count("Discarding push")
    response = httpx.post(
        f"{connector.http_url}/new-message-event", content=body, headers={"Content-Type": content_type}, timeout=20
    )
    assert response.status_code == 200, (response.status_code, response.text)
    assert response.json() == {"status": "discarded", "reason": "body is not JSON", "messageId": None}
    deadline = time.monotonic() + 5
    while connector.log().count("Discarding push") == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert connector.log().count("Discarding push") == before + 1
