"""A stand-in desktop for tests of the push path: joins conversations through this process's hub and
collects every event they get, as a connector's desktops would."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from connector.desktops.fanout import get_hub
from events import conversations
from events.history import Event

WAIT = 10.0


class EventListener:
    """A hub member that queues what arrives."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[Event] = asyncio.Queue()

    def event_arrived(self, event: Event) -> None:
        self.events.put_nowait(event)

    async def receive(self, timeout: float = WAIT) -> dict[str, Any]:
        """The next event as ``{"event": kind, "payload": ..., "offset": ...}``."""
        event = await asyncio.wait_for(self.events.get(), timeout)
        return {"event": event.kind, "payload": json.loads(event.payload_json), "offset": event.offset}


async def listen(conversation: str) -> EventListener:
    """A listener joined to ``conversation`` (either name form)."""
    listener = EventListener()
    await get_hub().join(conversations.normalise(conversation), listener)
    return listener
