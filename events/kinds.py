"""The four Dialogflow notification kinds and the channel-layer message that carries one to desktops."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class EventKind(StrEnum):
    """An event's name towards desktops, which is also its push endpoint's path (CONTRACT.md)."""

    HUMAN_AGENT_ASSISTANT = "human-agent-assistant-event"
    NEW_MESSAGE = "new-message-event"
    CONVERSATION_LIFECYCLE = "conversation-lifecycle-event"
    NEW_RECOGNITION_RESULT = "new-recognition-result-notification-event"


#: The channel-layer message type of a conversation event; consumers handle it as ``conversation_event``.
GROUP_MESSAGE_TYPE = "conversation.event"


def group_message(kind: EventKind | str, payload: dict[str, Any]) -> dict[str, Any]:
    """The channel-layer message that delivers ``payload`` as event ``kind``."""
    return {"type": GROUP_MESSAGE_TYPE, "event": str(kind), "payload": payload}
