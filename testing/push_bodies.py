"""Pub/Sub push bodies made from a notification, as the interceptor receives them, and one such push posted."""

from __future__ import annotations

from typing import Any

import httpx

from interceptor import push_samples
from testing.processes import Server


def push_body(
    notification: Any = None,
    *,
    data: Any = None,
    attributes: Any = ...,
    **message_fields: Any,
) -> bytes:
    """A push envelope (``interceptor.push_samples.push_envelope``): ``notification`` is JSON-encoded and
    base64'd into ``data`` unless ``data`` is given; ``message_fields`` go into ``message`` as given."""
    if attributes is not ...:
        message_fields["attributes"] = attributes
    envelope = push_samples.push_envelope(notification, data=data, subscription="projects/p/subscriptions/s",
                                          **message_fields)
    return push_samples.encode(envelope)


async def push(interceptor: Server, name: str, message_id: str) -> None:
    """Push one new-message-event for conversation ``name`` to ``interceptor``; it must be acknowledged (204)."""
    body = push_body({"conversation": name, "text": message_id}, messageId=message_id)
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{interceptor.http_url}/new-message-event", content=body,
                                     headers={"Content-Type": "application/json"})
    assert response.status_code == 204, response.text
