"""The access log of a real server, started the way the image starts it, never records a query string.

Query strings carry what must not be logged: ``/conversation-name?conversationIntegrationKey=<key>``
(often a customer's phone number) and a token a client wrongly put in a URL (refused, but still valid).
The server runs the command of ``testing.processes`` (the Dockerfile's ``CMD``, see tests/test_dockerfile.py);
each request must still leave an access line with its method, path and status, so the log is on and
only the query is missing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import httpx
import pytest

from testing import clients, processes
from testing.processes import Server

PHONE_NUMBER = "15551234"


@pytest.fixture(scope="module", params=processes.SERVERS)
def connector(request: pytest.FixtureRequest, redis_server: processes.RedisAddress) -> Iterator[Server]:
    """A connector on each server command: the image's (uvicorn) and daphne's (local runs)."""
    with processes.service_server(role="connector", redis=redis_server, server=request.param) as running:
        yield running


def wait_for_log(server: Server, text: str, *, timeout: float = 10.0) -> str:
    """The server's output once it contains ``text`` (access lines are written after the response)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = server.log()
        if text in log:
            return log
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared in the server's output:\n{server.log()}")


def test_http_query_values_are_not_in_the_access_log(connector: Server, settings: Any) -> None:
    """A conversation key and a URL token reach the server; the log names the paths and statuses only."""
    token = clients.server_token(settings, user="alice")
    headers = {"Authorization": token}
    lookup = httpx.get(
        f"{connector.http_url}/conversation-name?conversationIntegrationKey=%2B{PHONE_NUMBER}", headers=headers
    )
    assert lookup.status_code == 200
    refused = httpx.get(f"{connector.http_url}/status?token={token}")
    assert refused.status_code == 200  # /status is public: the token in its URL is simply ignored
    refused = httpx.get(f"{connector.http_url}/conversation-name?token={token}")
    assert refused.status_code == 401
    log = wait_for_log(connector, '"GET /conversation-name" 401')
    assert '"GET /conversation-name" 200' in log and '"GET /status" 200' in log
    assert PHONE_NUMBER not in log
    assert token not in log and token.split(".")[1] not in log
    assert "conversationIntegrationKey" not in log and "?token" not in log


async def test_websocket_query_values_are_not_in_the_access_log(connector: Server, settings: Any) -> None:
    """A token in a WebSocket URL (ignored there) stays out of the handshake's access lines too."""
    token = clients.server_token(settings, user="alice")
    url = connector.http_url.replace("http://", "ws://")
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{url}/ws/?token={token}") as socket:
            await socket.close()
        async with session.ws_connect(f"{url}/socket.io/?EIO=4&transport=websocket&token={token}") as socket:
            await socket.receive(timeout=clients.CLIENT_TIMEOUT)  # Engine.IO OPEN
            await socket.close()
    log = wait_for_log(connector, "WSDISCONNECT /socket.io/")
    assert "WSCONNECT /ws/" in log
    assert token not in log and token.split(".")[1] not in log
    assert "transport=websocket" not in log


@pytest.fixture(scope="module", params=[(server, mode) for server in processes.SERVERS for mode in ("errors", "off")],
                ids=lambda param: "-".join(param))
def quieter_connector(request: pytest.FixtureRequest,
                      redis_server: processes.RedisAddress) -> Iterator[tuple[Server, str]]:
    """A connector on each server command with ``ACCESS_LOG`` at ``errors`` (the image's) or ``off``."""
    server, mode = request.param
    with processes.service_server(role="connector", redis=redis_server, server=server, ACCESS_LOG=mode) as running:
        yield running, mode


async def test_access_log_errors_keeps_only_refusals_and_off_keeps_nothing(quieter_connector) -> None:
    connector, mode = quieter_connector
    url = connector.http_url
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/status") as answered:
            assert answered.status == 200
        async with session.ws_connect(f"{url.replace('http://', 'ws://')}/ws/") as socket:
            await socket.close()
        with pytest.raises(aiohttp.WSServerHandshakeError):  # an Origin no setting allows
            await session.ws_connect(f"{url.replace('http://', 'ws://')}/ws/",
                                     headers={"Origin": "https://elsewhere.example"})
        async with session.get(f"{url}/conversation-name") as refused:
            assert refused.status == 401
    if mode == "errors":
        log = wait_for_log(connector, '"GET /conversation-name" 401')
        assert "WSREJECT /ws/" in log
    else:
        time.sleep(1.0)  # long enough for any line of those requests to have been written
        log = connector.log()
        assert '"GET /conversation-name"' not in log and "WSREJECT" not in log
    assert '"GET /status"' not in log
    assert "WSCONNECTING" not in log and "WSCONNECT /ws/" not in log and "WSDISCONNECT" not in log
