"""The Dialogflow proxy in a real connector process (the image's server, production-like settings) with a real HTTP client.

The process finds its Google credentials the production way, through
``GOOGLE_APPLICATION_CREDENTIALS`` in its environment (a key file for the fake
token endpoint), and calls the fake Dialogflow on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testing import clients, fake_dialogflow, processes
from testing.fake_dialogflow import FakeDialogflow

PREFIX = "/v2beta1/projects/test-project/locations/global"
DESKTOP_ORIGIN = "https://desktop.example.com"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeDialogflow]:
    """A fake Dialogflow and token endpoint for the module."""
    with fake_dialogflow.serve() as server:
        yield server


@pytest.fixture(scope="module")
def connector(fake: FakeDialogflow, redis_server: processes.RedisAddress,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[processes.Server]:
    """One connector process whose ADC is a key file for the fake, calling the fake as Dialogflow."""
    key = fake.write_key_file(Path(tmp_path_factory.mktemp("adc")) / "key.json")
    with processes.service_server(
        role="connector", redis=redis_server, GOOGLE_APPLICATION_CREDENTIALS=str(key),
        DIALOGFLOW_API_ROOT=fake.url, CORS_ALLOWED_ORIGINS=DESKTOP_ORIGIN,
    ) as server:
        yield server


@pytest.fixture
def dialogflow(fake: FakeDialogflow) -> FakeDialogflow:
    """The fake with its answers reset (tokens already issued to the process stay valid)."""
    issued = list(fake.issued_tokens)
    fake.reset()
    fake.issued_tokens.extend(issued)
    return fake


async def test_process_proxies_with_application_default_credentials(
    connector: processes.Server, dialogflow: FakeDialogflow, settings: Any
) -> None:
    """A real client's call goes through the connector to Dialogflow with the service's token; gzip arrives intact."""
    dialogflow.gzip_answers = True
    token = clients.server_token(settings, user="agent@example.com")
    body = b'{"textInput": {"text": "where is my parcel?"}}'
    async with httpx.AsyncClient(timeout=clients.CLIENT_TIMEOUT) as client:
        response = await client.post(
            f"{connector.http_url}{PREFIX}/conversations/c-1/participants/p-1:analyzeContent",
            content=body, headers={"Authorization": token, "Content-Type": "application/json"},
        )
    assert response.status_code == 200, response.text
    assert response.headers["content-encoding"] == "gzip"
    assert response.json()["path"] == f"{PREFIX}/conversations/c-1/participants/p-1:analyzeContent"
    [received] = dialogflow.received
    assert received.body == body
    assert received.headers["authorization"] in {f"Bearer {t}" for t in dialogflow.issued_tokens}
    assert token not in json.dumps(received.headers)


async def test_process_has_many_calls_in_flight_at_once(
    connector: processes.Server, dialogflow: FakeDialogflow, settings: Any
) -> None:
    """Twenty concurrent calls are all open at Dialogflow together: the process never serialises them."""
    dialogflow.hold_until_in_flight = 20
    token = clients.server_token(settings, user="agent@example.com")
    async with httpx.AsyncClient(timeout=clients.CLIENT_TIMEOUT,
                                 limits=httpx.Limits(max_connections=20)) as client:
        responses = await asyncio.gather(*(
            client.get(f"{connector.http_url}{PREFIX}/conversations/c-{i}", headers={"Authorization": token})
            for i in range(20)
        ))
    assert [r.status_code for r in responses] == [200] * 20
    assert dialogflow.max_in_flight == 20


async def test_process_grants_cors_preflight_to_the_desktop_origin(connector: processes.Server) -> None:
    """Over real HTTP, the configured desktop origin's preflight for a proxied PATCH is granted; others are not."""
    async with httpx.AsyncClient(timeout=clients.CLIENT_TIMEOUT) as client:
        preflights = {
            origin: await client.options(
                f"{connector.http_url}{PREFIX}/answerRecords/r-1",
                headers={"Origin": origin, "Access-Control-Request-Method": "PATCH",
                         "Access-Control-Request-Headers": "authorization,content-type"},
            )
            for origin in (DESKTOP_ORIGIN, "https://attacker.example")
        }
    granted = preflights[DESKTOP_ORIGIN]
    assert granted.headers.get("access-control-allow-origin") == DESKTOP_ORIGIN
    assert {"authorization", "content-type"} <= {
        h.strip() for h in granted.headers.get("access-control-allow-headers", "").split(",")
    }
    assert "access-control-allow-origin" not in preflights["https://attacker.example"].headers


async def test_process_answers_conversation_name_round_trip(connector: processes.Server, settings: Any) -> None:
    """/conversation-name works in the production process, on its Redis."""
    token = clients.server_token(settings, user="agent@example.com")
    key = "+1-555-0100-process-test"
    name = "projects/test-project/conversations/PROCESS-1"
    async with httpx.AsyncClient(timeout=clients.CLIENT_TIMEOUT, headers={"Authorization": token}) as client:
        posted = await client.post(f"{connector.http_url}/conversation-name",
                                   json={"conversationIntegrationKey": key, "conversationName": name})
        read = await client.get(f"{connector.http_url}/conversation-name", params={"conversationIntegrationKey": key})
        deleted = await client.delete(f"{connector.http_url}/conversation-name",
                                      params={"conversationIntegrationKey": key})
    assert (posted.status_code, posted.json()) == (200, {key: name})
    assert (read.status_code, read.json()) == (200, {"conversationName": name})
    assert (deleted.status_code, deleted.text) == (200, "Success")
