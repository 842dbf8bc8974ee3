"""A desktop's connection does not outlive its token: at ``exp`` the server closes its socket (4401), or its
long-polling session (a CLOSE packet), and a client that refreshed its token reconnects and recovers every
event in between (``WEBSOCKET_CLOSE_AT_TOKEN_EXPIRY``)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from connector.desktops import close_codes
from testing import clients, processes
from testing.plain_ws_client import PlainTestClient
from testing.push_bodies import push_body
from testing.tokens import short_lived_token

SHORT_NAME = "projects/p/conversations/expiring"


async def test_plain_socket_is_told_and_closed_when_its_token_expires() -> None:
    client = PlainTestClient()
    await client.open()
    assert (await client.request({"type": "authenticate", "token": short_lived_token(2)}))["type"] == "authenticated"
    notice = await client.receive()
    assert (notice["type"], notice["code"]) == ("error", "token_expired")
    assert await client.close_code() == close_codes.UNAUTHENTICATED


async def test_no_close_at_expiry_when_turned_off(settings) -> None:
    settings.WEBSOCKET_CLOSE_AT_TOKEN_EXPIRY = False
    client = PlainTestClient()
    await client.open()
    assert (await client.request({"type": "authenticate", "token": short_lived_token(2)}))["type"] == "authenticated"
    assert await client.communicator.receive_nothing(3.5)
    assert (await client.request({"type": "ping"}))["type"] == "pong"
    await client.communicator.disconnect()


@pytest.fixture(scope="module")
def servers(redis_server):
    with processes.service_server(role="all", redis=redis_server, SOCKETIO_PING_INTERVAL="2") as server:
        yield server


@pytest.mark.parametrize("transports", ["websocket", "polling"])
async def test_socketio_client_refreshing_its_token_recovers_across_the_expiry_close(
    servers, settings, transports
) -> None:
    """On the websocket transport the socket closes (4401); over long-polling the session's poll answers
    Engine.IO's CLOSE at ``exp``, whichever GET is waiting then. Either way the client comes back and recovers."""
    clients.server_token(settings, user="agent")  # the server process's secret and project
    name = f"projects/{processes.TEST_PROJECT}/conversations/expiry-{transports}-{id(settings)}"
    expiring = short_lived_token(3)
    async with clients.node_desktop(servers, token=expiring, join=(name,), reconnect=True, timeout=60,
                                    transports=transports) as node:
        await node.wait_for(lambda n: len(n.of_kind("ack")) == 1, what="the join")
        await node.command(f"token {short_lived_token(600)}")  # what the UI modules' setAuthToken does

        async def push(message_id: str) -> None:
            body = push_body({"conversation": name, "text": message_id}, messageId=message_id)
            async with httpx.AsyncClient(timeout=10) as http:
                response = await http.post(f"{servers.http_url}/new-message-event", content=body,
                                           headers={"Content-Type": "application/json"})
            assert response.status_code == 204

        await push("before")
        await node.wait_for(lambda n: len(n.of_kind("disconnect")) == 1, what="the close at expiry")
        await push("during")
        await node.wait_for(lambda n: len(n.of_kind("connected")) == 2, what="the reconnection")
        await push("after")
        await node.wait_for(lambda n: len(n.events) == 3, what="three events")
        await asyncio.sleep(0.5)
        assert [payload["message_id"] for _, payload in node.events] == ["before", "during", "after"]
        assert [line["recovered"] for line in node.of_kind("connected")] == [False, True]
        assert [line["transport"] for line in node.of_kind("connected")] == [transports, transports]
        assert [line["reason"] for line in node.of_kind("disconnect")] == ["transport close"]  # not a ping timeout
