"""Well-formed Pub/Sub push envelopes for the four event kinds, as Dialogflow's notifications arrive.

For smoke tests of a deployed interceptor (``manage.py send_test_event``) and
for the test suite. Pure data: no I/O, no Django. The notification shapes follow
the contract's fixtures (``tests/fixtures/pubsub``): a ``ConversationEvent``
for new messages, recognition results and lifecycle events, a
``HumanAgentAssistantEvent`` for suggestions.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime, timezone
from typing import Any

from events import conversations
from events.kinds import EventKind

HUMAN_AGENT_ASSISTANT_EVENT = EventKind.HUMAN_AGENT_ASSISTANT
NEW_MESSAGE_EVENT = EventKind.NEW_MESSAGE
CONVERSATION_LIFECYCLE_EVENT = EventKind.CONVERSATION_LIFECYCLE
NEW_RECOGNITION_RESULT_EVENT = EventKind.NEW_RECOGNITION_RESULT
#: The interceptor's endpoints, one per kind.
EVENT_KINDS = tuple(EventKind)
DEFAULT_SUBSCRIPTION = "projects/aa-backend/subscriptions/send-test-event"


class UnknownEventKind(ValueError):
    """Not one of ``EVENT_KINDS``."""


class InvalidConversation(ValueError):
    """Not ``projects/P/conversations/C`` or ``projects/P/locations/L/conversations/C``."""


def sample_notification(kind: str, conversation: str) -> dict[str, Any]:
    """A small, realistic notification of ``kind`` for ``conversation`` (a full conversation name)."""
    if kind not in EVENT_KINDS:
        raise UnknownEventKind(f"unknown event kind {kind!r}; choose one of {', '.join(EVENT_KINDS)}")
    try:
        conversations.normalise(conversation)
    except conversations.InvalidConversationName:
        raise InvalidConversation(
            f"{conversation!r} is not a conversation name: use projects/P/conversations/C "
            "or projects/P/locations/L/conversations/C"
        ) from None
    if kind == HUMAN_AGENT_ASSISTANT_EVENT:
        return {
            "conversation": conversation,
            "participant": f"{conversation}/participants/test-agent",
            "suggestionResults": [
                {"suggestSmartRepliesResponse": {"smartReplyAnswers": [{"reply": "Test suggestion."}]}}
            ],
        }
    if kind == NEW_MESSAGE_EVENT:
        return {
            "conversation": conversation,
            "type": "NEW_MESSAGE",
            "newMessagePayload": {
                "name": f"{conversation}/messages/test-message",
                "content": "Test message.",
                "languageCode": "en-US",
                "participant": f"{conversation}/participants/test-end-user",
                "participantRole": "END_USER",
            },
        }
    if kind == CONVERSATION_LIFECYCLE_EVENT:
        return {"conversation": conversation, "type": "CONVERSATION_STARTED"}
    return {
        "conversation": conversation,
        "type": "NEW_RECOGNITION_RESULT",
        "newRecognitionResultPayload": {"messageType": "TRANSCRIPT", "transcript": "Test", "isFinal": False},
    }


def push_envelope(
    notification: Any = None,
    *,
    data: str | None = None,
    message_id: str | None = None,
    publish_time: str | None = None,
    attributes: dict[str, str] | None = None,
    subscription: str = DEFAULT_SUBSCRIPTION,
    **extra_message_fields: Any,
) -> dict[str, Any]:
    """The push body Pub/Sub POSTs: ``notification`` JSON-encoded and base64'd into ``message.data``.

    ``data`` replaces the encoded notification (tests pass malformed values). Fields left ``None``
    are omitted; ``extra_message_fields`` are added to ``message`` as given.
    """
    if data is None:
        data = base64.b64encode(json.dumps(notification).encode("utf-8")).decode("ascii")
    message: dict[str, Any] = {"data": data}
    if message_id is not None:
        message["messageId"] = message_id
    if publish_time is not None:
        message["publishTime"] = publish_time
    if attributes is not None:
        message["attributes"] = attributes
    message.update(extra_message_fields)
    return {"message": message, "subscription": subscription}


def sample_push(
    kind: str,
    conversation: str,
    *,
    message_id: str | None = None,
    publish_time: datetime | None = None,
) -> dict[str, Any]:
    """A complete, valid envelope of ``kind`` (see ``sample_notification``) with a fresh messageId by default."""
    notification = sample_notification(kind, conversation)
    message_id = message_id or f"test-{uuid.uuid4().hex[:16]}"
    moment = (publish_time or datetime.now(timezone.utc)).astimezone(timezone.utc)
    attributes = None
    if kind == NEW_RECOGNITION_RESULT_EVENT:
        # The interceptor passes these two attributes on to desktops for recognition results.
        attributes = {"participant_role": "END_USER", "message_id": f"{message_id}-recognition"}
    return push_envelope(
        notification,
        message_id=message_id,
        publish_time=moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
        attributes=attributes,
    )


def encode(envelope: dict[str, Any]) -> bytes:
    """The request body for ``envelope``."""
    return json.dumps(envelope).encode("utf-8")
