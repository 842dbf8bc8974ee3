"""The payload desktops receive for each event, exactly as Google's sample sends it."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from events.kinds import EventKind
from interceptor.envelope import PushMessage


def desktop_payload(message: PushMessage, *, event: str, received_at: datetime) -> dict[str, Any]:
    """Build the single argument emitted to desktops; ``data`` stays a JSON string."""
    payload: dict[str, Any] = {
        "conversation_name": message.conversation_name,
        "data": message.data,
        "data_type": event,
        "ack_time": received_at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "publish_time": message.publish_time,
        "message_id": message.message_id,
    }
    if event == EventKind.NEW_RECOGNITION_RESULT:
        payload["participant_role"] = message.attributes.get("participant_role")
        payload["new_recognition_result_message_id"] = message.attributes.get("message_id")
    return payload
