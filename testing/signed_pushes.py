"""What the tests of authenticated pushes share: Google's signing key (which the fake certificates endpoint
publishes) and an attacker's, push bodies for fresh conversations, the Authorization header, and a listener in
the conversation the push goes to."""

from __future__ import annotations

import uuid
from typing import Any

from interceptor import push_samples
from testing.event_listener import EventListener, listen
from testing.fake_google_certs import signing_key

RESPONSE_TIMEOUT = 20.0
EVENT_TIMEOUT = 10.0
EVENT = "new-message-event"
GOOGLE_KEY = signing_key("google-key-1")
ATTACKER_KEY = signing_key("attacker-key")


def new_conversation() -> str:
    """A conversation name no other test uses."""
    return f"projects/acme/conversations/AUTH-{uuid.uuid4().hex[:10]}"


def message_body(conversation: str, message_id: str = "auth-1") -> bytes:
    """A valid push envelope for ``conversation``."""
    envelope = push_samples.sample_push(push_samples.NEW_MESSAGE_EVENT, conversation, message_id=message_id)
    return push_samples.encode(envelope)


def bearer(token: str) -> str:
    return f"Bearer {token}"


async def subscribe(layer: Any, conversation: str) -> EventListener:
    """A listener in ``conversation`` (either name form), like a desktop that joined it."""
    return await listen(conversation)
