"""A sample conversation event published in process through the real delivery path, as the interceptor does."""

from __future__ import annotations

import json
from typing import Any

from events.kinds import EventKind
from events.publish import publish as publish_event


async def publish(conversation: str, event: str = EventKind.NEW_MESSAGE) -> dict[str, Any]:
    """Publish through the real delivery path, as the interceptor does; return the payload sent."""
    payload = {
        "conversation_name": conversation,
        "data": json.dumps({"conversation": conversation, "text": "Grüß dich, 你好"}),
        "data_type": event,
        "ack_time": "2026-11-20T14:03:07Z",
        "publish_time": "2026-11-20T14:03:06.123Z",
        "message_id": "17",
    }
    await publish_event(conversation_name=conversation, event=event, payload=payload)
    return payload
