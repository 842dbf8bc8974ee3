"""The push endpoints served ahead of Django (``interceptor.fast_push``) answer as Django's stack does, and the
orjson-encoded payload reaches desktops as the same JSON python-socketio would send.

Driven through the real ``aa_site.asgi.application`` and the real Redis.
A push carrying ``Origin`` is handed to Django (corsheaders decides its
headers), so comparing it with one without shows the handler writes Django's answer.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import socketio
from channels.testing import HttpCommunicator

from aa_site.asgi import application
from connector.desktops.socketio import protocol
from events.publish import encode_payload
from interceptor import push_samples
from interceptor.fast_push import FastPush
from testing.event_listener import listen

CONVERSATION = "projects/fast-cx/conversations/FAST-1"
# Quotes, backslashes, non-ASCII, the JavaScript line separators and an emoji: what escaping could get wrong.
AWKWARD_TEXT = 'Jürgen said "ok" \\ 東京 \u2028 \u2029 \U0001f600 </script>'


async def post(path: str, body: bytes, *, method: str = "POST", origin: str | None = None) -> dict[str, Any]:
    """One request to the real application; the ASGI response."""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return await HttpCommunicator(application, method, path, body=body, headers=headers).get_response(timeout=10)


def headers(response: dict[str, Any]) -> dict[bytes, bytes]:
    return dict(response["headers"])


def awkward_push(message_id: str) -> bytes:
    notification = push_samples.sample_notification(push_samples.NEW_MESSAGE_EVENT, CONVERSATION)
    notification["newMessagePayload"]["content"] = AWKWARD_TEXT
    return push_samples.encode(push_samples.push_envelope(notification, message_id=message_id,
                                                          publish_time="2026-12-01T10:00:00.000Z"))


@pytest.mark.parametrize("body", [b"", b"not json", awkward_push("fast-1")], ids=["empty", "poison", "valid"])
async def test_answer_and_headers_match_what_django_writes(body: bytes, settings: Any) -> None:
    """Fast path (no Origin) and Django's stack (with an Origin it does not allow): same status, body, headers."""
    settings.CORS_ALLOWED_ORIGINS = ["https://desktop.example"]
    # The tests' role serves pushes: the fast handler, inside the trace middleware.
    assert isinstance(application.application_mapping["http"].application, FastPush)
    path = f"/{push_samples.NEW_MESSAGE_EVENT}"
    fast = await post(path, body)
    django = await post(path, body.replace(b"fast-1", b"fast-2"), origin="https://elsewhere.example")
    assert fast["status"] == django["status"]
    assert fast["body"].replace(b"fast-1", b"fast-2") == django["body"]
    assert headers(fast) == headers(django)  # the ids are of one length: so are the bodies


async def test_the_answer_s_security_headers_follow_a_setting_changed_after_the_first_push(settings: Any) -> None:
    """The headers are made once, not per push: made again when a setting changes."""
    body, path = b"not json", f"/{push_samples.NEW_MESSAGE_EVENT}"
    settings.SECURE_REFERRER_POLICY = "same-origin"
    assert headers(await post(path, body))[b"Referrer-Policy"] == b"same-origin"
    settings.SECURE_REFERRER_POLICY = "no-referrer"
    assert headers(await post(path, body))[b"Referrer-Policy"] == b"no-referrer"


async def test_other_methods_still_get_django_405() -> None:
    response = await post(f"/{push_samples.NEW_MESSAGE_EVENT}", b"", method="PUT")
    assert response["status"] == 405
    assert dict(response["headers"])[b"Allow"] == b"POST"


async def test_non_ascii_content_reaches_the_desktop_verbatim() -> None:
    listener = await listen(CONVERSATION)
    assert (await post(f"/{push_samples.NEW_MESSAGE_EVENT}", awkward_push("fast-3")))["status"] == 204
    event = await listener.receive()
    assert json.loads(event["payload"]["data"])["newMessagePayload"]["content"] == AWKWARD_TEXT


@pytest.mark.parametrize("offset", [None, "0-1700000000000-7"])
def test_socketio_frame_with_orjson_payload_parses_as_python_socketios_own(offset: str | None) -> None:
    payload = {"conversation_name": CONVERSATION, "data": json.dumps({"content": AWKWARD_TEXT}),
               "data_type": "new-message-event", "ack_time": "2026-12-01T10:00:00Z", "publish_time": None,
               "message_id": "m-1"}
    ours = protocol.event_with_json_argument("new-message-event", encode_payload(payload), offset)
    data = ["new-message-event", payload] + ([offset] if offset else [])
    theirs = socketio.packet.Packet(socketio.packet.EVENT, data).encode()
    assert ours[0] == theirs[0] == "2"
    assert json.loads(ours[1:]) == json.loads(theirs[1:])
    ours.encode("utf-8")  # valid UTF-8 text: no lone surrogate
