"""``interceptor.payload``: the one argument desktops receive, key for key as Google's sample sends it."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from events.kinds import EventKind
from interceptor.envelope import PushMessage, parse_push
from interceptor.payload import desktop_payload
from testing.pubsub_fixtures import VALID_FIXTURES, decoded_data, fixture_bytes

COMMON_KEYS = {"conversation_name", "data", "data_type", "ack_time", "publish_time", "message_id"}
RECOGNITION_KEYS = COMMON_KEYS | {"participant_role", "new_recognition_result_message_id"}
RECEIVED_AT = datetime(2026, 11, 20, 14, 3, 7, 912345, tzinfo=timezone.utc)


def message(**overrides: object) -> PushMessage:
    """A parsed push with sensible defaults; ``overrides`` replace single fields."""
    fields: dict[str, object] = {
        "message_id": "m-1",
        "publish_time": "2026-11-20T14:03:07.412Z",
        "conversation_name": "projects/p/conversations/c",
        "data": '{"conversation": "projects/p/locations/global/conversations/c"}',
        "notification": {"conversation": "projects/p/locations/global/conversations/c"},
        "attributes": {},
    }
    fields.update(overrides)
    return PushMessage(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(VALID_FIXTURES))
def test_fixture_payload_matches_the_contract_exactly(name: str) -> None:
    """Each contract example yields exactly the contract's keys and values for its event."""
    event, conversation = VALID_FIXTURES[name]
    raw = json.loads(fixture_bytes(name))["message"]
    payload = desktop_payload(parse_push(fixture_bytes(name)), event=event, received_at=RECEIVED_AT)
    expected = {
        "conversation_name": conversation,
        "data": decoded_data(name),
        "data_type": event,
        "ack_time": "2026-11-20T14:03:07Z",
        "publish_time": raw["publishTime"],
        "message_id": raw["messageId"],
    }
    if event == EventKind.NEW_RECOGNITION_RESULT:
        expected["participant_role"] = "HUMAN_AGENT"
        expected["new_recognition_result_message_id"] = "RR-0001"
    assert payload == expected


def test_payload_is_json_serialisable_with_data_as_a_string() -> None:
    """The payload survives JSON encoding, and ``data`` stays a string (the UI modules parse it themselves)."""
    payload = desktop_payload(message(), event=EventKind.NEW_MESSAGE, received_at=RECEIVED_AT)
    assert isinstance(payload["data"], str)
    assert json.loads(json.dumps(payload)) == payload


def test_data_is_passed_through_untouched() -> None:
    """``data`` is the message's decoded text itself, not a re-serialisation of the parsed notification."""
    text = '{ "conversation" : "projects/p/conversations/c",\n "x": "\u00e9" }\n'
    payload = desktop_payload(
        message(data=text, notification={"different": "object"}),
        event=EventKind.HUMAN_AGENT_ASSISTANT,
        received_at=RECEIVED_AT,
    )
    assert payload["data"] == text


@pytest.mark.parametrize(
    "event",
    [EventKind.HUMAN_AGENT_ASSISTANT, EventKind.NEW_MESSAGE, EventKind.CONVERSATION_LIFECYCLE],
)
def test_non_recognition_events_have_exactly_the_common_keys(event: str) -> None:
    """Only recognition results carry the two extra keys, even when the message has those attributes."""
    with_attributes = message(attributes={"participant_role": "END_USER", "message_id": "RR-9"})
    payload = desktop_payload(with_attributes, event=event, received_at=RECEIVED_AT)
    assert set(payload) == COMMON_KEYS
    assert payload["data_type"] == event


def test_recognition_event_takes_role_and_id_from_attributes() -> None:
    """``participant_role`` and ``new_recognition_result_message_id`` come from the Pub/Sub attributes."""
    payload = desktop_payload(
        message(attributes={"participant_role": "END_USER", "message_id": "RR-9"}, message_id="pubsub-1"),
        event=EventKind.NEW_RECOGNITION_RESULT,
        received_at=RECEIVED_AT,
    )
    assert set(payload) == RECOGNITION_KEYS
    assert payload["participant_role"] == "END_USER"
    assert payload["new_recognition_result_message_id"] == "RR-9"
    # The Pub/Sub messageId and the recognition message_id attribute are different things.
    assert payload["message_id"] == "pubsub-1"


def test_recognition_event_without_attributes_has_none_values() -> None:
    """Absent attributes give ``None`` for both recognition keys; the keys are still present."""
    payload = desktop_payload(message(), event=EventKind.NEW_RECOGNITION_RESULT, received_at=RECEIVED_AT)
    assert set(payload) == RECOGNITION_KEYS
    assert payload["participant_role"] is None
    assert payload["new_recognition_result_message_id"] is None


def test_missing_publish_time_and_message_id_are_none() -> None:
    """An envelope without them yields ``None``, not a crash or an invented value."""
    payload = desktop_payload(
        message(message_id=None, publish_time=None), event=EventKind.NEW_MESSAGE, received_at=RECEIVED_AT
    )
    assert payload["message_id"] is None
    assert payload["publish_time"] is None


def test_ack_time_is_whole_seconds_with_z() -> None:
    """``ack_time`` is ``YYYY-MM-DDTHH:MM:SSZ``: no fraction, no offset."""
    payload = desktop_payload(message(), event=EventKind.NEW_MESSAGE, received_at=RECEIVED_AT)
    assert payload["ack_time"] == "2026-11-20T14:03:07Z"


def test_ack_time_is_converted_to_utc() -> None:
    """A receive time in another zone is written in UTC, including across a date boundary."""
    tokyo = timezone(timedelta(hours=9))
    received = datetime(2026, 11, 21, 5, 30, 59, tzinfo=tokyo)
    payload = desktop_payload(message(), event=EventKind.NEW_MESSAGE, received_at=received)
    assert payload["ack_time"] == "2026-11-20T20:30:59Z"


def test_conversation_name_is_the_normalised_one() -> None:
    """The payload names the conversation as parsed (normalised), not as the notification spelled it."""
    payload = desktop_payload(message(), event=EventKind.NEW_MESSAGE, received_at=RECEIVED_AT)
    assert payload["conversation_name"] == "projects/p/conversations/c"
