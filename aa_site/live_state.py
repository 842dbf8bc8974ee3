"""What the admin's live view shows, read from Redis across every instance (never conversation content).

- the connector instances that have WebSocket desktops or long-polling sessions (``connector.desktops.instances``
  records), each with its desktops by transport (the polling ones counted from their sessions);
- the long-polling desktops, read from their sessions (``connector.desktops.polling.operators``), each placed
  on the instance that took its latest poll;
- the conversations those desktops joined, each with its desktops (instance, transport, user,
  connection id) and its newest stored events (offset, kind, messageId, times);
- counters: events accepted (the stored conversations' sequences summed, each in its current epoch: there is no
  count over all conversations), conversations with stored events, integration keys, instances, desktops by
  transport.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from connector.desktops import instances
from connector.desktops.polling import operators as polling
from connector.http import integration_keys
from events import history

# Bounds on one page: the view is for looking, not an export.
MAX_CONVERSATIONS = 200
EVENTS_PER_CONVERSATION = 5
EVENTS_ON_CONVERSATION_PAGE = 50


@dataclass
class ConversationView:
    name: str
    desktops: list[dict[str, Any]] = field(default_factory=list)  # each with its instance and host
    events: list[history.EventSummary] = field(default_factory=list)

    @property
    def by_transport(self) -> dict[str, int]:
        return dict(Counter(desktop["transport"] for desktop in self.desktops))


@dataclass
class LiveState:
    instances: list[dict[str, Any]]
    conversations: list[ConversationView]
    conversations_truncated: bool
    counters: dict[str, Any]


async def snapshot() -> LiveState:
    """The live view's content, read now."""
    records = await instances.read_records()
    now = time.time()
    joined: dict[str, list[dict[str, Any]]] = defaultdict(list)
    desktops_by_transport: Counter[str] = Counter()
    for record in records:
        record["age_seconds"] = max(0.0, now - float(record.get("updated", now)))
        desktops_by_transport.update(record.get("desktops_by_transport", {}))
    for desktop, record in await _desktops(records):
        for conversation in desktop.get("conversations", []):
            joined[conversation].append(_placed(desktop, record))
        if desktop["transport"] == polling.TRANSPORT:
            desktops_by_transport[polling.TRANSPORT] += 1
            # No process counts them in its record: shown on the instance that took their latest poll.
            shown = record.setdefault("desktops_by_transport", {})
            shown[polling.TRANSPORT] = shown.get(polling.TRANSPORT, 0) + 1
    names = sorted(joined)
    truncated = len(names) > MAX_CONVERSATIONS
    conversations = []
    for name in names[:MAX_CONVERSATIONS]:
        events = await history.recent_events(name, EVENTS_PER_CONVERSATION)
        conversations.append(ConversationView(name, joined[name], events))
    stored, more_stored = await history.stored_conversations(10_000)
    accepted = await history.accepted_count(stored)
    counters = {
        "instances": len(records),
        "desktops": sum(desktops_by_transport.values()),
        "desktops_by_transport": dict(sorted(desktops_by_transport.items())),
        "conversations_joined": len(names),
        "conversations_stored": f"{len(stored)}+" if more_stored else len(stored),
        "events_accepted": accepted,
        "integration_keys": await integration_keys.count(),
    }
    return LiveState(records, conversations, truncated, counters)


async def conversation(name: str) -> ConversationView:
    """One conversation: its desktops on every instance and its newest stored events."""
    view = ConversationView(name)
    for desktop, record in await _desktops(await instances.read_records()):
        if name in desktop.get("conversations", []):
            view.desktops.append(_placed(desktop, record))
    view.events = await history.recent_events(name, EVENTS_ON_CONVERSATION_PAGE)
    return view


async def _desktops(records: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every desktop with the record of its instance: the instances' WebSocket desktops, then the polling
    ones (their instance's record, when it has one)."""
    by_instance = {record.get("instance"): record for record in records}
    listed = [(desktop, record) for record in records for desktop in record.get("desktops", [])]
    for desktop in await polling.desktops():
        listed.append((desktop, by_instance.get(desktop["instance"], {"instance": desktop["instance"], "host": ""})))
    return listed


def _placed(desktop: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """``desktop`` with the instance and host that reported it, and when it connected in UTC."""
    try:
        since = datetime.fromtimestamp(float(desktop.get("since", 0)), timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    except (TypeError, ValueError, OverflowError):
        since = "-"
    return {**desktop, "instance": record.get("instance"), "host": record.get("host"), "since": since}
