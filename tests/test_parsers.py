"""Request bodies of the connector's DRF endpoints (connector/http/api/parsers.py): size limits and JSON objects.

Through the real ASGI application: a body over ``API_MAX_BODY_BYTES`` on ``/register``, ``/register-app``
or ``/conversation-name`` is a JSON 413, never Django's HTML 400 page or an ERROR traceback.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from channels.testing import HttpCommunicator

from aa_site.asgi import application
from connector import tokens

RESPONSE_TIMEOUT = 20.0
NAME = "projects/test-project/locations/global/conversations/CONV-1"


async def call(method: str, path: str, body: bytes, *, authorization: str = "") -> dict[str, Any]:
    """One request with ``body`` (and its Content-Length) to the real application."""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if authorization:
        headers.append((b"authorization", authorization.encode()))
    return await HttpCommunicator(application, method, path, body=body, headers=headers).get_response(
        timeout=RESPONSE_TIMEOUT
    )


def big_body(size: int, **fields: str) -> bytes:
    """A JSON object of exactly ``size`` bytes holding ``fields`` and padding."""
    body = {**fields, "pad": ""}
    body["pad"] = "x" * (size - len(json.dumps(body)))
    encoded = json.dumps(body).encode()
    assert len(encoded) == size
    return encoded


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.ERROR or record.exc_info]


@pytest.mark.parametrize("path", ["/register", "/register-app", "/conversation-name"])
async def test_body_over_the_limit_is_413_json_without_a_traceback(
    path: str, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """3 MB (over Django's 2.5 MB default and the 256 KiB limit) is 413 {"message"} naming the limit; nothing at ERROR."""
    settings.APP_AUTH_OPTION = "Skip"
    caplog.set_level(logging.INFO)
    body = big_body(3 * 1024 * 1024, conversationIntegrationKey="k", conversationName=NAME)
    response = await call("POST", path, body, authorization=tokens.issue_token(user="agent"))
    assert response["status"] == 413, response["body"][:300]
    content = json.loads(response["body"])
    assert set(content) == {"message"} and str(settings.API_MAX_BODY_BYTES) in content["message"]
    assert errors_logged(caplog) == []


@pytest.mark.parametrize("path", ["/register", "/conversation-name"])
async def test_limit_is_the_setting(path: str, settings: Any) -> None:
    """One byte over API_MAX_BODY_BYTES is 413; a body at the limit is read."""
    settings.API_MAX_BODY_BYTES = 2048
    token = tokens.issue_token(user="agent")
    fields = {"conversationIntegrationKey": "limit-key", "conversationName": NAME}
    assert (await call("POST", path, big_body(2049, **fields), authorization=token))["status"] == 413
    assert (await call("POST", path, big_body(2048, **fields), authorization=token))["status"] == 200
