"""Property: any push body is a ``PushMessage`` or a ``PoisonMessage``, never another exception.

``interceptor.envelope.parse_push`` is what stands between Pub/Sub (or anyone, when push
authentication is off) and the event path; anything else it raised would be a 500 that Pub/Sub
redelivers forever. Accepted messages must also make a payload that encodes as strict JSON.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from hypothesis import given
from hypothesis import strategies as st

from events.kinds import EventKind
from interceptor.envelope import PoisonMessage, PushMessage, parse_push
from interceptor.payload import desktop_payload
from testing.strategies import CONVERSATION_NAMES, PROPERTY_SETTINGS, any_text, base64_text, json_text, json_values

RECEIVED_AT = datetime(2026, 1, 1, tzinfo=timezone.utc)

notifications = st.one_of(
    st.fixed_dictionaries({"conversation": CONVERSATION_NAMES}, optional={"payload": json_values}),
    json_values,
)
# data: base64 of a notification's JSON, of arbitrary bytes, or not base64 at all.
datas = st.one_of(
    notifications.map(lambda value: base64_text(json_text(value).encode("utf-8", "surrogatepass"))),
    st.binary(max_size=64).map(base64_text),
    any_text,
    json_values,
)
messages = st.one_of(
    st.fixed_dictionaries(
        {"data": datas},
        optional={
            "messageId": json_values,
            "message_id": json_values,
            "publishTime": json_values,
            "attributes": st.one_of(st.dictionaries(any_text, json_values, max_size=3), json_values),
        },
    ),
    json_values,
)
envelopes = st.one_of(
    st.fixed_dictionaries({"message": messages}, optional={"subscription": json_values}),
    json_values,
)


def check(body: bytes) -> None:
    try:
        message = parse_push(body)
    except PoisonMessage as poison:
        assert str(poison)  # the reason that is logged and answered
        return
    assert isinstance(message, PushMessage)
    for event in EventKind:
        json.dumps(desktop_payload(message, event=event, received_at=RECEIVED_AT), allow_nan=False)


@PROPERTY_SETTINGS
@given(st.binary(max_size=512))
def test_any_bytes_give_a_message_or_a_poison(body: bytes) -> None:
    check(body)


@PROPERTY_SETTINGS
@given(envelopes)
def test_any_envelope_shaped_json_gives_a_message_or_a_poison(envelope: object) -> None:
    check(json_text(envelope).encode("utf-8", "surrogatepass"))
