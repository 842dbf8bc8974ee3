"""``interceptor.push_samples``: the envelopes ``send_test_event`` sends are ones the interceptor accepts."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pytest

from events.kinds import EventKind
from interceptor import push_samples
from interceptor.envelope import parse_push
from interceptor.urls import urlpatterns

CONVERSATION = "projects/acme-cx/locations/global/conversations/CONV-1"


def test_kinds_are_the_interceptors_endpoints() -> None:
    """The builder's kinds are the event core's and the URLconf's."""
    assert push_samples.EVENT_KINDS == tuple(EventKind)
    assert [str(pattern.pattern) for pattern in urlpatterns] == list(push_samples.EVENT_KINDS)


@pytest.mark.parametrize("kind", push_samples.EVENT_KINDS)
def test_every_sample_parses_as_a_valid_push(kind: str) -> None:
    """Each kind parses; conversation normalised, data verbatim, messageId and publishTime kept."""
    moment = datetime(2026, 11, 20, 14, 3, 7, 412_345, tzinfo=timezone.utc)
    envelope = push_samples.sample_push(kind, CONVERSATION, message_id="m-1", publish_time=moment)
    message = parse_push(push_samples.encode(envelope))
    assert message.conversation_name == "projects/acme-cx/conversations/CONV-1"
    assert message.notification == push_samples.sample_notification(kind, CONVERSATION)
    assert (message.message_id, message.publish_time) == ("m-1", "2026-11-20T14:03:07.412Z")
    if kind == push_samples.NEW_RECOGNITION_RESULT_EVENT:
        assert set(message.attributes) == {"participant_role", "message_id"}
    else:
        assert message.attributes == {}


def test_message_ids_are_fresh_by_default() -> None:
    """Two samples never share a messageId (a server that drops redeliveries would skip the second)."""
    first, second = (push_samples.sample_push(push_samples.NEW_MESSAGE_EVENT, CONVERSATION) for _ in range(2))
    assert first["message"]["messageId"] != second["message"]["messageId"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["message"]["publishTime"])


@pytest.mark.parametrize("conversation", ["CONV-1", "conversations/C", "projects/p/conversations/", "projects/p/x/c",
                                          None, "projects/p/conversations/a b"])
def test_bad_conversation_names_are_refused(conversation: object) -> None:
    with pytest.raises(push_samples.InvalidConversation):
        push_samples.sample_notification(push_samples.NEW_MESSAGE_EVENT, conversation)  # type: ignore[arg-type]


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(push_samples.UnknownEventKind, match="new-message-event"):
        push_samples.sample_notification("new-message", CONVERSATION)


def test_push_envelope_omits_what_is_not_given_and_passes_raw_data() -> None:
    """The low-level builder the malformed-input tests use: ``data`` as given, absent fields absent."""
    envelope = push_samples.push_envelope(data="not base64!", odd_field=1)
    assert envelope["message"] == {"data": "not base64!", "odd_field": 1}
    assert json.loads(push_samples.encode(envelope)) == envelope
