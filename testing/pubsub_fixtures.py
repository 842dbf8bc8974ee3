"""The contract's Pub/Sub push fixtures, classified: which are valid (and for which endpoint and conversation),
which are poison (and of which exact kind); their bytes, and the notification a valid one carries."""

from __future__ import annotations

import base64
import json

from interceptor import envelope
from testing.clients import fixture_directory

#: valid fixture -> (endpoint/event it belongs to, normalised conversation name)
VALID_FIXTURES: dict[str, tuple[str, str]] = {
    "conversation-lifecycle-event.finished.json": (
        "conversation-lifecycle-event",
        "projects/acme-cx/conversations/CONV-7f3a",
    ),
    "conversation-lifecycle-event.started.json": (
        "conversation-lifecycle-event",
        "projects/acme-cx/conversations/CONV-7f3a",
    ),
    "human-agent-assistant-event.json": ("human-agent-assistant-event", "projects/acme-cx/conversations/CONV-7f3a"),
    "new-message-event.json": ("new-message-event", "projects/acme-cx/conversations/CONV-7f3a"),
    "new-recognition-result-notification-event.json": (
        "new-recognition-result-notification-event",
        "projects/acme-cx/conversations/CONV-91bd",
    ),
}

#: poison fixture -> (exact PoisonMessage subclass, messageId the envelope carried)
BAD_FIXTURES: dict[str, tuple[type[envelope.PoisonMessage], str | None]] = {
    "bad.data-not-base64.json": (envelope.DataNotBase64, "1"),
    "bad.data-not-json.json": (envelope.DataNotJson, "2"),
    "bad.empty-body.txt": (envelope.EmptyBody, None),
    "bad.message-not-object.json": (envelope.MessageNotObject, None),
    "bad.no-conversation.json": (envelope.NoConversation, "3"),
    "bad.no-message.json": (envelope.NoMessage, None),
    "bad.not-json.txt": (envelope.BodyNotJson, None),
}


def fixture_bytes(name: str) -> bytes:
    """The raw push body stored in fixture ``name``."""
    return (fixture_directory() / name).read_bytes()


def decoded_data(name: str) -> str:
    """The notification text a valid fixture carries, decoded independently of the code under test."""
    return base64.b64decode(json.loads(fixture_bytes(name))["message"]["data"]).decode("utf-8")
