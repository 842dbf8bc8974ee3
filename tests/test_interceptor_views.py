"""The four Pub/Sub push endpoints, driven through the real ASGI application and the real Redis channel layer.

A test "desktop" is a channel subscribed to the conversation's group on the
pub/sub layer; whatever the endpoint publishes must arrive there.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from datetime import datetime, timezone
from typing import Any

import pytest
from channels.testing import HttpCommunicator

from aa_site.asgi import application
from events import redis_client
from events.history import conversation_key
from events.kinds import EventKind
from testing import processes
from testing.event_listener import EventListener, listen
from testing.pubsub_fixtures import BAD_FIXTURES, VALID_FIXTURES, decoded_data, fixture_bytes
from testing.push_bodies import push_body

RESPONSE_TIMEOUT = 10.0
EVENT_TIMEOUT = 5.0
ACK_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


async def post(path: str, body: bytes, *, method: str = "POST") -> dict[str, Any]:
    """One request to the real ``application``; returns the ASGI response (status, headers, body)."""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    communicator = HttpCommunicator(application, method, path, body=body, headers=headers)
    return await communicator.get_response(timeout=RESPONSE_TIMEOUT)


async def subscribe(layer: Any, conversation: str) -> EventListener:
    """A listener in ``conversation`` (either name form), like a desktop that joined it."""
    return await listen(conversation)


def header(response: dict[str, Any], name: str) -> str | None:
    """The value of response header ``name`` (case-insensitive), or ``None``."""
    for key, value in response["headers"]:
        if key.decode("latin-1").lower() == name.lower():
            return value.decode("latin-1")
    return None


def warnings_from(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Every record at WARNING or above."""
    return [record for record in caplog.records if record.levelno >= logging.WARNING]


def whole_second(moment: datetime) -> datetime:
    """``moment`` truncated to the second, as ``ack_time`` is written."""
    return moment.astimezone(timezone.utc).replace(microsecond=0)


@pytest.mark.parametrize("name", sorted(VALID_FIXTURES))
async def test_valid_push_is_delivered_to_the_conversation_group(name: str, redis_events: Any) -> None:
    """A contract example answers 204 and its contract payload reaches the conversation's group on Redis."""
    event, conversation = VALID_FIXTURES[name]
    raw = json.loads(fixture_bytes(name))["message"]
    channel = await subscribe(redis_events, conversation)

    before = whole_second(datetime.now(timezone.utc))
    response = await post(f"/{event}", fixture_bytes(name))
    after = whole_second(datetime.now(timezone.utc))
    assert response["status"] == 204
    assert response["body"] == b""

    received = await channel.receive(EVENT_TIMEOUT)
    assert received["event"] == event
    payload = received["payload"]
    ack_time = payload.pop("ack_time")
    assert ACK_TIME.match(ack_time)
    # ack_time is the receive time: between the moments around the request (whole seconds, UTC).
    assert before <= datetime.strptime(ack_time, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc) <= after
    expected = {
        "conversation_name": conversation,
        "data": decoded_data(name),
        "data_type": event,
        "publish_time": raw["publishTime"],
        "message_id": raw["messageId"],
    }
    if event == EventKind.NEW_RECOGNITION_RESULT:
        expected["participant_role"] = raw["attributes"]["participant_role"]
        expected["new_recognition_result_message_id"] = raw["attributes"]["message_id"]
    assert payload == expected


async def test_desktop_joined_with_locations_receives_push_without_locations(redis_events: Any) -> None:
    """A desktop joined with the locations form receives an event published without locations."""
    channel = await subscribe(redis_events, "projects/acme/locations/europe-west1/conversations/CONV-loc")
    body = push_body({"conversation": "projects/acme/conversations/CONV-loc", "type": "NEW_MESSAGE"}, messageId="77")
    response = await post("/new-message-event", body)
    assert response["status"] == 204
    received = await channel.receive(EVENT_TIMEOUT)
    assert received["payload"]["conversation_name"] == "projects/acme/conversations/CONV-loc"
    assert received["payload"]["message_id"] == "77"


async def test_desktop_joined_without_locations_receives_push_with_locations(redis_events: Any) -> None:
    """The reverse: joining with the short form receives a notification that names a location."""
    channel = await subscribe(redis_events, "projects/acme/conversations/CONV-short")
    body = push_body({"conversation": "projects/acme/locations/global/conversations/CONV-short"}, messageId="78")
    assert (await post("/conversation-lifecycle-event", body))["status"] == 204
    received = await channel.receive(EVENT_TIMEOUT)
    assert received["payload"]["message_id"] == "78"


async def test_push_reaches_only_its_own_conversation(redis_events: Any) -> None:
    """A desktop in another conversation receives nothing; the right one receives the event."""
    bystander = await subscribe(redis_events, "projects/acme/conversations/OTHER")
    member = await subscribe(redis_events, "projects/acme/conversations/MINE")
    body = push_body({"conversation": "projects/acme/conversations/MINE"}, messageId="79")
    assert (await post("/new-message-event", body))["status"] == 204
    assert (await member.receive(EVENT_TIMEOUT))["payload"]["message_id"] == "79"
    # The member already got it, so anything meant for the bystander would have been published by now.
    with pytest.raises(asyncio.TimeoutError):
        await bystander.receive(0.3)


@pytest.mark.parametrize("event", list(EventKind))
@pytest.mark.parametrize("name", sorted(BAD_FIXTURES))
async def test_poison_push_is_acknowledged_and_logged_once(
    event: str, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A poison message gets 200 ``discarded`` (so Pub/Sub stops) and one WARNING with reason and messageId."""
    _, message_id = BAD_FIXTURES[name]
    caplog.set_level(logging.DEBUG)
    response = await post(f"/{event}", fixture_bytes(name))
    assert response["status"] == 200
    body = json.loads(response["body"])
    assert body["status"] == "discarded"
    assert body["messageId"] == message_id
    assert body["reason"]

    warnings = warnings_from(caplog)
    assert len(warnings) == 1, [record.getMessage() for record in warnings]
    line = warnings[0].getMessage()
    assert warnings[0].levelno == logging.WARNING
    assert body["reason"] in line
    assert f"messageId={message_id}" in line
    assert event in line


async def test_push_whose_conversation_name_is_not_unicode_text_is_discarded() -> None:
    """A lone surrogate (a JSON "\\ud800" escape) in the conversation name is poison: 200 discarded, not a 500."""
    body = push_body({"conversation": "projects/acme/conversations/c\ud800"}, messageId="80")
    response = await post("/new-message-event", body)
    assert response["status"] == 200
    assert json.loads(response["body"])["status"] == "discarded"


async def test_push_whose_message_id_is_longer_than_pub_sub_s_is_discarded_and_not_recorded(settings) -> None:
    """A messageId of 257 characters cannot be Pub/Sub's: 200 discarded, and not kept in the de-duplication
    record; one of 256 is accepted."""
    conversation = "projects/acme/conversations/long-message-id"
    body = push_body({"conversation": conversation}, messageId="7" * 257)
    response = await post("/new-message-event", body)
    assert response["status"] == 200
    assert json.loads(response["body"]) == {"status": "discarded", "messageId": "7" * 257,
                                            "reason": "messageId is longer than 256 characters"}
    client = redis_client.get_redis()
    assert not await client.exists(conversation_key(conversation, "seen"))
    accepted = await post("/new-message-event", push_body({"conversation": conversation}, messageId="7" * 256))
    assert accepted["status"] == 204
    assert await client.zcard(conversation_key(conversation, "seen")) == 1


async def test_push_with_an_integer_beyond_the_digit_limit_is_discarded() -> None:
    """Valid JSON that json.loads refuses (a number of 5000 digits) is poison: 200 discarded, not a 500."""
    body = b'{"message": {"data": "e30=", "messageId": ' + b"1" * 5000 + b"}}"
    response = await post("/new-message-event", body)
    assert response["status"] == 200
    assert json.loads(response["body"])["status"] == "discarded"


async def test_push_whose_attribute_is_not_unicode_text_is_discarded_not_retried() -> None:
    """A lone surrogate in an attribute can never be delivered: 200 discarded, not a 503 that Pub/Sub retries."""
    body = push_body(
        {"conversation": "projects/acme/conversations/c"}, attributes={"participant_role": "\udc00"}, messageId="81"
    )
    response = await post("/new-recognition-result-notification-event", body)
    assert response["status"] == 200
    assert json.loads(response["body"]) | {"reason": ""} == {"status": "discarded", "reason": "", "messageId": "81"}


async def test_poison_log_line_cannot_be_split_by_the_message_id(caplog: pytest.LogCaptureFixture) -> None:
    """A messageId with a line break (or of any length) is logged quoted and cut short, on one line."""
    forged = "1\n2026-11-20 14:03:07,000 WARNING interceptor.views forged line " + "x" * 5000
    response = await post("/new-message-event", push_body(data="not base64!", messageId=forged))
    assert json.loads(response["body"])["messageId"] == forged
    (warning,) = warnings_from(caplog)
    line = warning.getMessage()
    assert "\n" not in line and len(line) < 300


async def test_poison_log_line_never_contains_the_content(caplog: pytest.LogCaptureFixture) -> None:
    """The warning for a notification without a valid conversation does not repeat any of its content."""
    caplog.set_level(logging.DEBUG)
    notification = {"conversation": "customer-4111-1111", "transcript": "my card number is 4111 1111"}
    raw = base64.b64encode(json.dumps(notification).encode()).decode()
    body = push_body(data=raw, messageId="poison-1")
    response = await post("/new-recognition-result-notification-event", body)
    assert response["status"] == 200
    (warning,) = warnings_from(caplog)
    line = warning.getMessage()
    assert "messageId=poison-1" in line
    for secret in ("4111", "customer", "transcript", raw):
        assert secret not in line


async def test_fixture_poison_log_lines_omit_decoded_content(caplog: pytest.LogCaptureFixture) -> None:
    """For the fixture without a conversation, neither its decoded text nor its base64 appears in the log."""
    name = "bad.no-conversation.json"
    raw = json.loads(fixture_bytes(name))["message"]["data"]
    caplog.set_level(logging.DEBUG)
    await post("/conversation-lifecycle-event", fixture_bytes(name))
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "CONVERSATION_STARTED" not in text
    assert raw not in text


@pytest.mark.parametrize("event", list(EventKind))
async def test_get_is_method_not_allowed(event: str) -> None:
    """Push endpoints accept POST only."""
    response = await post(f"/{event}", b"", method="GET")
    assert response["status"] == 405
    assert "POST" in (header(response, "Allow") or "")


@pytest.mark.parametrize("event", list(EventKind))
async def test_unreachable_redis_answers_503_with_retry_after(
    event: str, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """With Redis unreachable a valid push gets 503 and Retry-After, so Pub/Sub redelivers it later."""
    closed_port = processes.free_port()
    settings.REDISPORT = closed_port
    name = next(fixture for fixture, (fixture_event, _) in VALID_FIXTURES.items() if fixture_event == event)
    caplog.set_level(logging.DEBUG)
    response = await post(f"/{event}", fixture_bytes(name))
    assert response["status"] == 503
    retry_after = header(response, "Retry-After")
    assert retry_after is not None and retry_after.isdigit() and int(retry_after) > 0
    # The failure is reported by messageId, never with the transcript or suggestion it carried.
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name == "interceptor.push"]
    assert len(errors) == 1
    assert json.loads(fixture_bytes(name))["message"]["messageId"] in errors[0]
    assert decoded_data(name) not in errors[0]


async def test_each_503_logs_one_error_line(settings: Any, caplog: pytest.LogCaptureFixture) -> None:
    """One ERROR line per 503, the interceptor's own (before: a second one, ``Service Unavailable: /...``, from
    Django's ``django.request`` logger, which logs every 5xx answer)."""
    settings.REDISPORT = processes.free_port()
    caplog.set_level(logging.DEBUG)
    response = await post("/new-message-event", fixture_bytes(next(iter(VALID_FIXTURES))))
    assert response["status"] == 503
    errors = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith("interceptor.push: "), errors


def notification_of_size(conversation: str, size: int) -> dict[str, Any]:
    """A notification whose JSON encoding (what Pub/Sub carries base64'd in ``data``) is exactly ``size`` bytes."""
    notification = {"conversation": conversation, "pad": ""}
    notification["pad"] = "x" * (size - len(json.dumps(notification)))
    assert len(json.dumps(notification)) == size
    return notification


@pytest.mark.parametrize("size", [3 * 1024 * 1024, 10 * 1024 * 1024], ids=["3MiB", "10MiB"])
async def test_push_of_any_size_pubsub_can_send_is_delivered(size: int, redis_events: Any) -> None:
    """Pub/Sub messages carry up to 10 MiB of data (about 13.4 MB once base64'd into the push body): such a push
    is delivered (204), not discarded as poison by Django's 2.5 MB DATA_UPLOAD_MAX_MEMORY_SIZE."""
    conversation = f"projects/p/conversations/big-{size}"
    channel = await subscribe(redis_events, conversation)
    body = push_body(notification_of_size(conversation, size), messageId=f"big-{size}")
    response = await post("/new-message-event", body)
    assert response["status"] == 204, response["body"][:200]
    received = await channel.receive(EVENT_TIMEOUT)
    assert len(received["payload"]["data"]) == size


async def test_push_over_the_documented_limit_is_discarded(settings: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A body over PUSH_MAX_BODY_BYTES is acknowledged as poison (200 discarded) with one WARNING naming the limit."""
    settings.PUSH_MAX_BODY_BYTES = 4096
    body = push_body({"conversation": "projects/p/conversations/c", "pad": "x" * 4096}, messageId="big-2")
    response = await post("/new-message-event", body)
    assert response["status"] == 200
    assert json.loads(response["body"]) == {
        "status": "discarded", "reason": "body is larger than 4096 bytes", "messageId": None,
    }
    assert len(warnings_from(caplog)) == 1
