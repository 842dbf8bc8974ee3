"""Hands conversation events to every desktop that joined the conversation.

The interceptor publishes here; the WebSocket consumers receive the group
message as ``conversation.event`` (handled by their ``conversation_event``
method). This module is the one place that knows the group message's shape,
so history and replay can later be added behind ``publish`` alone.
"""

from __future__ import annotations

import asyncio
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings

from connector import conversations

HUMAN_AGENT_ASSISTANT_EVENT = "human-agent-assistant-event"
NEW_MESSAGE_EVENT = "new-message-event"
CONVERSATION_LIFECYCLE_EVENT = "conversation-lifecycle-event"
NEW_RECOGNITION_RESULT_EVENT = "new-recognition-result-notification-event"
EVENT_NAMES = (
    HUMAN_AGENT_ASSISTANT_EVENT,
    NEW_MESSAGE_EVENT,
    CONVERSATION_LIFECYCLE_EVENT,
    NEW_RECOGNITION_RESULT_EVENT,
)
MESSAGE_TYPE = "conversation.event"


class DeliveryUnavailable(Exception):
    """The channel layer could not take the event; the caller should retry later."""


async def publish(*, conversation_name: str, event: str, payload: dict[str, Any]) -> None:
    """Send ``payload`` as ``event`` to the conversation's group on every connector.

    ``conversation_name`` may be in either accepted form (``InvalidConversationName`` otherwise).
    Raises ``DeliveryUnavailable`` when the channel layer is unreachable or
    does not answer within ``CHANNEL_LAYER_SEND_TIMEOUT`` seconds.
    """
    message = {"type": MESSAGE_TYPE, "event": event, "payload": payload}
    group = conversations.group_name(conversations.normalise(conversation_name))
    layer = get_channel_layer()
    try:
        await asyncio.wait_for(layer.group_send(group, message), timeout=settings.CHANNEL_LAYER_SEND_TIMEOUT)
    except Exception as error:
        # Redis errors, OSError and timeouts alike: the event was not handed over. (CancelledError
        # is a BaseException, so a cancelled request still ends as cancelled.)
        raise DeliveryUnavailable(f"{error.__class__.__name__}: {error}") from error
