"""``interceptor.envelope`` as pure parsing: push body bytes in, ``PushMessage`` or a precise ``PoisonMessage`` out.

Like python-socketio's ``tests/common/test_packet.py``: no server, no channel
layer. The Pub/Sub fixtures (found by ``testing.clients.fixture_directory``) are the
contract's examples, classified in ``testing.pubsub_fixtures``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from interceptor import envelope
from interceptor.envelope import PushMessage, parse_push
from testing import clients
from testing.clients import fixture_directory
from testing.pubsub_fixtures import BAD_FIXTURES, VALID_FIXTURES, decoded_data, fixture_bytes
from testing.push_bodies import push_body


def test_every_fixture_is_classified() -> None:
    """Each file in the fixture directory is listed here as valid or poison, so none goes untested."""
    on_disk = {path.name for path in fixture_directory().iterdir() if path.is_file()}
    assert on_disk == set(VALID_FIXTURES) | set(BAD_FIXTURES)


@pytest.mark.parametrize("name", sorted(VALID_FIXTURES))
def test_valid_fixture_parses_with_normalised_conversation(name: str) -> None:
    """A contract example parses; its conversation name loses the locations part."""
    message = parse_push(fixture_bytes(name))
    raw = json.loads(fixture_bytes(name))["message"]
    assert isinstance(message, PushMessage)
    assert message.conversation_name == VALID_FIXTURES[name][1]
    assert message.message_id == raw["messageId"]
    assert message.publish_time == raw["publishTime"]
    assert message.data == decoded_data(name)
    assert message.notification == json.loads(decoded_data(name))
    assert message.attributes == raw.get("attributes", {})


@pytest.mark.parametrize("name", sorted(BAD_FIXTURES))
def test_bad_fixture_raises_its_precise_poison_type(name: str) -> None:
    """Each poison example raises exactly its own ``PoisonMessage`` subclass, carrying the messageId it had."""
    expected_type, expected_id = BAD_FIXTURES[name]
    with pytest.raises(envelope.PoisonMessage) as caught:
        parse_push(fixture_bytes(name))
    assert type(caught.value) is expected_type
    assert caught.value.message_id == expected_id
    assert str(caught.value)


def test_recognition_fixture_keeps_its_attributes() -> None:
    """Recognition results carry participant_role and message_id as Pub/Sub attributes."""
    message = parse_push(fixture_bytes("new-recognition-result-notification-event.json"))
    assert message.attributes == {"participant_role": "HUMAN_AGENT", "message_id": "RR-0001"}


def test_snake_case_twins_alone_are_read() -> None:
    """A message with only ``message_id`` / ``publish_time`` still yields both."""
    body = push_body(
        {"conversation": "projects/p/conversations/c"}, message_id="42", publish_time="2026-01-02T03:04:05Z"
    )
    message = parse_push(body)
    assert message.message_id == "42"
    assert message.publish_time == "2026-01-02T03:04:05Z"


def test_camel_case_wins_over_snake_case_twin() -> None:
    """When both spellings are present, ``messageId`` / ``publishTime`` are used."""
    body = push_body(
        {"conversation": "projects/p/conversations/c"},
        messageId="camel",
        message_id="snake",
        publishTime="2026-01-01T00:00:00Z",
        publish_time="1999-01-01T00:00:00Z",
    )
    message = parse_push(body)
    assert (message.message_id, message.publish_time) == ("camel", "2026-01-01T00:00:00Z")


def test_missing_ids_and_times_are_none() -> None:
    """An envelope without messageId or publishTime parses, with both ``None``."""
    message = parse_push(push_body({"conversation": "projects/p/conversations/c"}))
    assert message.message_id is None
    assert message.publish_time is None


def test_absent_attributes_are_an_empty_mapping() -> None:
    """``attributes`` may be absent (Pub/Sub omits it when empty)."""
    message = parse_push(push_body({"conversation": "projects/p/conversations/c"}, messageId="7"))
    assert message.attributes == {}


def test_null_attributes_are_an_empty_mapping() -> None:
    """``"attributes": null`` is the same as no attributes."""
    message = parse_push(push_body({"conversation": "projects/p/conversations/c"}, attributes=None))
    assert message.attributes == {}


@pytest.mark.parametrize("attributes", [["participant_role"], "participant_role=HUMAN_AGENT", 5])
def test_attributes_not_an_object_are_poison(attributes: Any) -> None:
    """Attributes that are not a JSON object can never be read: ``MessageNotObject`` with the messageId."""
    body = push_body({"conversation": "projects/p/conversations/c"}, attributes=attributes, messageId="8")
    with pytest.raises(envelope.MessageNotObject) as caught:
        parse_push(body)
    assert caught.value.message_id == "8"
    assert "attributes" in str(caught.value)


def test_attribute_values_become_strings() -> None:
    """Attribute values are exposed as strings, as Pub/Sub defines them."""
    attributes = {"participant_role": "END_USER", "n": 3}
    body = push_body({"conversation": "projects/p/conversations/c"}, attributes=attributes)
    assert parse_push(body).attributes == {"participant_role": "END_USER", "n": "3"}


@pytest.mark.parametrize("data", [123, ["eyJ9"], {"a": 1}, True])
def test_data_not_a_string_is_poison(data: Any) -> None:
    """``message.data`` must be a base64 string; anything else is ``DataNotBase64``."""
    with pytest.raises(envelope.DataNotBase64) as caught:
        parse_push(push_body(data=data, messageId="9"))
    assert caught.value.message_id == "9"


def test_missing_data_is_poison() -> None:
    """A message without ``data`` is ``DataNotBase64``."""
    body = json.dumps({"message": {"messageId": "10", "attributes": {}}}).encode()
    with pytest.raises(envelope.DataNotBase64) as caught:
        parse_push(body)
    assert caught.value.message_id == "10"


def test_empty_data_is_poison() -> None:
    """An empty ``data`` string decodes to nothing: ``DataNotBase64``."""
    with pytest.raises(envelope.DataNotBase64):
        parse_push(push_body(data=""))


@pytest.mark.parametrize("notification", [[1, 2], "projects/p/conversations/c", 3, None])
def test_data_decoding_to_a_non_object_is_poison(notification: Any) -> None:
    """Decoded data that is JSON but not an object is ``DataNotJson``."""
    with pytest.raises(envelope.DataNotJson):
        parse_push(push_body(notification))


def test_data_that_is_not_utf8_is_poison() -> None:
    """Decoded bytes that are not UTF-8 text are ``DataNotJson``."""
    data = base64.b64encode(b"\xff\xfe{}").decode()
    with pytest.raises(envelope.DataNotJson):
        parse_push(push_body(data=data))


@pytest.mark.parametrize(
    ("conversation", "normalised"),
    [
        ("projects/acme/locations/europe-west1/conversations/abc", "projects/acme/conversations/abc"),
        ("projects/acme/conversations/abc", "projects/acme/conversations/abc"),
    ],
)
def test_conversation_with_or_without_locations_is_normalised(conversation: str, normalised: str) -> None:
    """Both resource-name forms parse to ``projects/P/conversations/C``."""
    assert parse_push(push_body({"conversation": conversation})).conversation_name == normalised


@pytest.mark.parametrize("conversation", [42, None, ["projects/p/conversations/c"], {"name": "x"}])
def test_conversation_not_a_string_is_poison(conversation: Any) -> None:
    """A non-string ``conversation`` is ``NoConversation`` with the messageId."""
    with pytest.raises(envelope.NoConversation) as caught:
        parse_push(push_body({"conversation": conversation}, messageId="11"))
    assert caught.value.message_id == "11"


@pytest.mark.parametrize(
    "conversation",
    ["", "conversations/c", "projects/p/conversations/", "projects/p/locations/l/conversations/c/messages/m"],
)
def test_malformed_conversation_name_is_poison(conversation: str) -> None:
    """A string that is not a conversation resource name is ``NoConversation``."""
    with pytest.raises(envelope.NoConversation):
        parse_push(push_body({"conversation": conversation}))


def test_data_is_the_decoded_text_verbatim() -> None:
    """``data`` is the decoded text itself (spacing, key order, non-ASCII), never re-serialised."""
    text = '{ "z": 1,\n  "conversation":"projects/p/conversations/c", "text": "caf\u00e9 \u2013 \\u00e9" }'
    data = base64.b64encode(text.encode("utf-8")).decode()
    assert parse_push(push_body(data=data)).data == text


def test_data_keeps_surrounding_whitespace() -> None:
    """Whitespace around the JSON is kept: desktops get exactly what Dialogflow published (as the sample does)."""
    text = '{"conversation": "projects/p/conversations/c"}\n'
    data = base64.b64encode(text.encode("utf-8")).decode()
    assert parse_push(push_body(data=data)).data == text


def test_data_with_whitespace_inside_base64_is_poison() -> None:
    """Pub/Sub sends strict base64; embedded newlines are not silently dropped."""
    data = base64.b64encode(b'{"conversation": "projects/p/conversations/c"}').decode()
    with pytest.raises(envelope.DataNotBase64):
        parse_push(push_body(data=data[:8] + "\n" + data[8:]))


@pytest.mark.parametrize("body", [b"", b"   \n\t", b"\r\n"])
def test_blank_body_is_empty_body(body: bytes) -> None:
    """Empty or whitespace-only bodies are ``EmptyBody``."""
    with pytest.raises(envelope.EmptyBody):
        parse_push(body)


@pytest.mark.parametrize("body", [b"{", b"\xff\xfe\xfa", b"message=1"])
def test_unparseable_body_is_body_not_json(body: bytes) -> None:
    """Bodies that are not JSON (or not even text) are ``BodyNotJson``."""
    with pytest.raises(envelope.BodyNotJson):
        parse_push(body)


@pytest.mark.parametrize("body", [b"[]", b'"message"', b"{}", b'{"messages": {}}'])
def test_envelope_without_message_is_no_message(body: bytes) -> None:
    """JSON that is not an object with ``message`` is ``NoMessage``."""
    with pytest.raises(envelope.NoMessage):
        parse_push(body)


@pytest.mark.parametrize("message", [None, [], "hello", 1])
def test_message_not_an_object_is_message_not_object(message: Any) -> None:
    """``message`` present but not an object is ``MessageNotObject``."""
    with pytest.raises(envelope.MessageNotObject):
        parse_push(json.dumps({"message": message}).encode())


def test_poison_types_share_one_base() -> None:
    """Every poison type is a ``PoisonMessage`` (and a ``ValueError``), so the view catches them in one place."""
    for poison_type, _ in BAD_FIXTURES.values():
        assert issubclass(poison_type, envelope.PoisonMessage)
        assert issubclass(poison_type, ValueError)
    assert len({poison_type for poison_type, _ in BAD_FIXTURES.values()}) == len(BAD_FIXTURES)


def test_deeply_nested_body_is_body_not_json() -> None:
    """Nesting deep enough to exhaust the JSON decoder's recursion is poison, not a crash (a 500)."""
    with pytest.raises(envelope.BodyNotJson):
        parse_push(b"[" * 100_000)


def test_deeply_nested_data_is_data_not_json() -> None:
    """The same inside ``message.data``."""
    body = json.dumps({"message": {"data": base64.b64encode(b"[" * 100_000).decode(), "messageId": "9"}})
    with pytest.raises(envelope.DataNotJson) as raised:
        parse_push(body.encode())
    assert raised.value.message_id == "9"


# An integer literal longer than Python's int_max_str_digits (4300): valid JSON that json.loads refuses.
HUGE_INTEGER = "1" * 5000


def test_body_with_an_integer_beyond_the_digit_limit_is_body_not_json() -> None:
    """json.loads raises a plain ValueError for such a number; it is poison, not a crash (a 500)."""
    with pytest.raises(envelope.BodyNotJson):
        parse_push(b'{"message": {"data": "e30=", "messageId": ' + HUGE_INTEGER.encode() + b"}}")


def test_data_with_an_integer_beyond_the_digit_limit_is_data_not_json() -> None:
    """The same inside ``message.data``, with the envelope's messageId kept."""
    text = '{"conversation": "projects/p/conversations/c", "n": ' + HUGE_INTEGER + "}"
    with pytest.raises(envelope.DataNotJson) as raised:
        parse_push(push_body(data=base64.b64encode(text.encode()).decode(), messageId="12"))
    assert raised.value.message_id == "12"


@pytest.mark.parametrize(
    "fields",
    [
        {"messageId": "m-\ud800"},
        {"publishTime": "2026-01-01T00:00:00\udfffZ"},
        {"attributes": {"participant_role": "END_USER\ud800"}},
        {"attributes": {"\ud800": "x"}},
    ],
    ids=["messageId", "publishTime", "attribute value", "attribute name"],
)
def test_text_with_a_lone_surrogate_is_text_not_unicode(fields: dict[str, Any]) -> None:
    """A JSON "\\ud800" escape in a field desktops receive can never be sent on: ``TextNotUnicode``."""
    with pytest.raises(envelope.TextNotUnicode):
        parse_push(push_body({"conversation": "projects/p/conversations/c"}, **fields))


def test_the_vendored_fixtures_match_the_contracts_copy() -> None:
    """tests/fixtures/pubsub (used when ../shared is absent) holds exactly the contract's fixtures, byte for byte.

    Without ../shared beside the clone, it must at least hold every fixture this module classifies.
    """
    vendored = {path.name: path.read_bytes() for path in clients.VENDORED_PUBSUB_FIXTURES.iterdir() if path.is_file()}
    if clients.SHARED_PUBSUB_FIXTURES.is_dir():
        shared = {path.name: path.read_bytes() for path in clients.SHARED_PUBSUB_FIXTURES.iterdir() if path.is_file()}
        assert vendored == shared
    else:
        assert set(vendored) == set(VALID_FIXTURES) | set(BAD_FIXTURES)
