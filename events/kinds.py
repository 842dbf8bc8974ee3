"""The four Dialogflow notification kinds."""

from __future__ import annotations

from enum import StrEnum


class EventKind(StrEnum):
    """An event's name towards desktops, which is also its push endpoint's path (as in Google's sample)."""

    HUMAN_AGENT_ASSISTANT = "human-agent-assistant-event"
    NEW_MESSAGE = "new-message-event"
    CONVERSATION_LIFECYCLE = "conversation-lifecycle-event"
    NEW_RECOGNITION_RESULT = "new-recognition-result-notification-event"
