"""Hands conversation events to every desktop that joined the conversation, on every connector.

The interceptor publishes here; the connector's consumers receive the group
message (``events.kinds.group_message``) as ``conversation_event``. History
and replay are to be added behind ``publish`` alone.
"""

from __future__ import annotations

import asyncio
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings

from events import conversations
from events.kinds import EventKind, group_message


class DeliveryUnavailable(Exception):
    """The channel layer could not take the event; the caller should retry later."""


async def publish(*, conversation_name: str, event: EventKind | str, payload: dict[str, Any]) -> None:
    """Send ``payload`` as ``event`` to the conversation's group on every connector.

    ``conversation_name`` may be in either accepted form (``InvalidConversationName`` otherwise).
    Raises ``DeliveryUnavailable`` when the channel layer is unreachable or
    does not answer within ``CHANNEL_LAYER_SEND_TIMEOUT`` seconds.
    """
    message = group_message(event, payload)
    group = conversations.group_name(conversations.normalise(conversation_name))
    layer = get_channel_layer()
    try:
        await asyncio.wait_for(layer.group_send(group, message), timeout=settings.CHANNEL_LAYER_SEND_TIMEOUT)
    except Exception as error:
        # Redis errors, OSError and timeouts alike: the event was not handed over. (CancelledError
        # is a BaseException, so a cancelled request still ends as cancelled.)
        raise DeliveryUnavailable(f"{error.__class__.__name__}: {error}") from error
