"""Pure parsing of a Pub/Sub push body into a Dialogflow notification.

No I/O and no Django: bytes in, ``PushMessage`` out, or a ``PoisonMessage``
subclass naming exactly what is wrong. Every ``PoisonMessage`` is input that
can never succeed, however often Pub/Sub redelivers it.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from common import untrusted
from events import conversations


class PoisonMessage(ValueError):
    """A push that can never be processed. ``message_id`` is set when the envelope had one."""

    reason = "invalid push"

    def __init__(self, detail: str = "", *, message_id: str | None = None) -> None:
        super().__init__(detail or self.reason)
        self.message_id = message_id


class EmptyBody(PoisonMessage):
    reason = "empty body"


class BodyNotJson(PoisonMessage):
    reason = "body is not JSON"


class NoMessage(PoisonMessage):
    reason = "envelope has no message"


class MessageNotObject(PoisonMessage):
    reason = "message is not an object"


class DataNotBase64(PoisonMessage):
    reason = "message.data is not base64"


class DataNotJson(PoisonMessage):
    reason = "message.data is not a JSON object"


class NoConversation(PoisonMessage):
    reason = "notification has no valid conversation"


# Pub/Sub's messageIds are decimal strings of under 20 digits. A longer one cannot come from Pub/Sub, and
# would be kept byte for byte in its conversation's de-duplication record (ten histories' worth of ids).
MAX_MESSAGE_ID_LENGTH = 256


class MessageIdTooLong(PoisonMessage):
    reason = f"messageId is longer than {MAX_MESSAGE_ID_LENGTH} characters"


class TextNotUnicode(PoisonMessage):
    reason = "messageId, publishTime or an attribute is not valid Unicode text"


@dataclass(frozen=True)
class PushMessage:
    """One Dialogflow notification as Pub/Sub delivered it."""

    message_id: str | None
    publish_time: str | None
    conversation_name: str  # normalised
    data: str  # the decoded notification text, verbatim
    notification: dict[str, Any]
    attributes: dict[str, str] = field(default_factory=dict)


def parse_push(body: bytes) -> PushMessage:
    """Parse a push body; raise a ``PoisonMessage`` subclass if it can never succeed."""
    if not body.strip():
        raise EmptyBody()
    try:
        envelope = untrusted.json_object(body)
    except untrusted.NotJson:
        raise BodyNotJson() from None
    except untrusted.NotJsonObject:
        raise NoMessage() from None
    if "message" not in envelope:
        raise NoMessage()
    message = envelope["message"]
    if not isinstance(message, dict):
        raise MessageNotObject()

    message_id = _first_text(message, "messageId", "message_id")
    if message_id is not None and len(message_id) > MAX_MESSAGE_ID_LENGTH:
        raise MessageIdTooLong(message_id=message_id)
    publish_time = _first_text(message, "publishTime", "publish_time")
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise MessageNotObject("message.attributes is not an object", message_id=message_id)
    attributes = {str(key): str(value) for key, value in attributes.items()}
    if not untrusted.is_utf8_text(message_id, publish_time, *attributes, *attributes.values()):
        # A lone surrogate (a JSON "\ud800" escape) cannot be sent on to desktops: the channel
        # layer would refuse it on every delivery, and Pub/Sub would redeliver it for ever.
        raise TextNotUnicode(message_id=message_id)

    raw = message.get("data")
    if not isinstance(raw, str) or not raw:
        raise DataNotBase64("message.data is missing or not a string", message_id=message_id)
    try:
        decoded = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise DataNotBase64(message_id=message_id) from None
    try:
        # Verbatim, not stripped: desktops receive exactly the text Dialogflow published,
        # as the sample does; json.loads tolerates the surrounding whitespace itself.
        data = decoded.decode("utf-8")
        notification = untrusted.json_object(data)
    except (UnicodeDecodeError, untrusted.NotJsonObject):
        raise DataNotJson(message_id=message_id) from None

    try:
        conversation_name = conversations.normalise(notification.get("conversation"))
    except conversations.InvalidConversationName as error:
        raise NoConversation(f"notification has no valid conversation: {error}", message_id=message_id) from None

    return PushMessage(
        message_id=message_id,
        publish_time=publish_time,
        conversation_name=conversation_name,
        data=data,
        notification=notification,
        attributes=attributes,
    )


def _first_text(message: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = message.get(key)
        if value is not None:
            return str(value)
    return None
