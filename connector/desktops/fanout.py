"""This process's one subscription per conversation, fanned out to every desktop of the process in it.

Each connector process subscribes once to a conversation's sharded channel
(``events.history.channel_name``, ``SSUBSCRIBE``) while at least one of its
desktops has joined it, receives each event once, and hands it to each of
those desktops (``Member.event_arrived``), which frame it once per protocol
for all of them. Redis delivers each conversation's events in the order its
sequence numbered them; when the connection drops, the hub's subscription
(``connector.desktops.subscriptions``) reconnects by itself and the hub catches up from
the history, after the last event it received of each conversation (or where
the conversation's sequence was when the process subscribed), so an outage
loses nothing (desktops drop what they already had by its offset). Without Redis (development mode)
the in-process history hands events straight to the hub.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from django.conf import settings
from redis.exceptions import RedisError

from common import draining
from common.loop_local import LoopLocal
from connector.desktops import presence
from connector.desktops.subscriptions import SHARD, Subscription
from events import metrics, redis_client
from events.history import Event, Offset, channel_name, decode_published, get_history, memory_history

logger = logging.getLogger(__name__)


class Member(Protocol):
    """A desktop connection as the hub sees it."""

    def event_arrived(self, event: Event) -> None:
        """Take one event of a joined conversation; must not block."""


class Hub:
    """Conversation -> this process's members, and the Redis subscription that feeds them."""

    #: A member that is no desktop (the long-polling relay, ``connector.desktops.polling.waiting``): not counted.
    relay: Member | None = None

    def __init__(self) -> None:
        self._members: dict[str, set[Member]] = {}
        self._by_channel: dict[str, str] = {}  # channel -> conversation
        self._subscription = Subscription("Event subscription", logger, received=self._received,
                                          restored=self._catch_up)
        self._refresher: asyncio.Task | None = None
        # Per conversation, the last event received (or its position when subscribed), for catching up after a
        # reconnect.
        self._last: dict[str, Offset] = {}
        if not redis_client.is_configured():
            memory_history().listener = self.deliver

    @property
    def conversations(self) -> int:
        """How many conversations this process is subscribed to."""
        return len(self._members)

    async def join(self, conversation: str, member: Member) -> None:
        """Add ``member`` to ``conversation``; once this returns, every later event reaches it."""
        members = self._members.get(conversation)
        if members is not None:
            members.add(member)
            try:
                await self._subscription.confirmed(channel_name(conversation), SHARD)
            except BaseException:
                self._abandon(conversation, member)  # the first join's SUBSCRIBE failed: so does this one
                raise
            return
        self._members[conversation] = {member}
        if not redis_client.is_configured():
            return
        self._by_channel[channel_name(conversation)] = conversation
        try:
            # Subscribed once Redis says so: only then is no later event missed.
            await self._subscription.subscribe(channel_name(conversation), SHARD)
            # Where a catch-up after a lost connection starts in this conversation if no event of it came before.
            self._received_up_to(await get_history().position(conversation), conversation)
        except BaseException:
            self._abandon(conversation, member)
            raise
        if presence.enabled():
            await self._presence(presence.joined, conversation)
            if self._refresher is None:
                self._refresher = asyncio.create_task(self._refresh_presence())

    async def leave(self, conversation: str, member: Member) -> None:
        """Remove ``member``; the process unsubscribes when its last member in the conversation leaves."""
        if self._discard(conversation, member) and self._subscription.started:
            channel = self._forget(conversation)
            if draining.is_draining():
                # The process stops (connector.desktops.drain): its subscriptions end with it, and its presence
                # membership expires by itself rather than the key blinking out before the desktops join elsewhere.
                return
            if presence.enabled():
                await self._presence(presence.left, conversation)
            # No UNSUBSCRIBE when joined again while this leave waited: the new member needs the subscription.
            await self._subscription.unsubscribe(channel, SHARD)

    def deliver(self, event: Event) -> None:
        """Hand ``event`` to each member in its conversation."""
        if event.conversation in self._members:
            self._received_up_to(event.position, event.conversation)
        members = self._members.get(event.conversation, ())
        metrics.event_handed_out(event.kind, event.payload_json, len(members) - (self.relay in members))
        for member in tuple(self._members.get(event.conversation, ())):
            member.event_arrived(event)

    def _received_up_to(self, position: Offset, conversation: str) -> None:
        last = self._last.get(conversation)
        if last is None or last.epoch != position.epoch or position.seq > last.seq:
            self._last[conversation] = position

    @staticmethod
    async def _presence(change, conversation: str) -> None:
        try:
            await change(conversation)
        except (RedisError, OSError) as error:
            metrics.redis_error("presence")
            # The refresh recreates a missing key within a third of its lifetime; a stale one expires.
            logger.warning("Could not update a conversation's presence key: %s: %s", type(error).__name__, error)

    async def _refresh_presence(self) -> None:
        """Renew this process's presence keys until it has no conversation left."""
        try:
            while self._members:
                await asyncio.sleep(settings.PRESENCE_KEY_TTL_SECONDS / 3)
                await self._presence(lambda _: presence.refresh(list(self._members)), "")
        finally:
            self._refresher = None

    def _abandon(self, conversation: str, member: Member) -> None:
        """Remove ``member`` whose join failed; when it was the last, a late SUBSCRIBE is dropped as stale."""
        if self._discard(conversation, member):
            self._forget(conversation)

    def _forget(self, conversation: str) -> str:
        """Stop wanting the channel of a conversation left by its last member (its events are dropped from now
        on); the channel's name."""
        channel = channel_name(conversation)
        self._by_channel.pop(channel, None)
        self._last.pop(conversation, None)
        self._subscription.discard(channel, SHARD)
        return channel

    def _discard(self, conversation: str, member: Member) -> bool:
        """Remove ``member``; True when that emptied the conversation."""
        members = self._members.get(conversation)
        if members is None:
            return False
        members.discard(member)
        if members:
            return False
        del self._members[conversation]
        return True

    def _received(self, channel: str, data: bytes) -> None:
        conversation = self._by_channel.get(channel)
        if conversation is None:
            return
        try:
            event = decode_published(conversation, data)
        except (ValueError, UnicodeDecodeError) as error:
            logger.error("Ignoring an undecodable event on %s: %s", channel, error)
            return
        self.deliver(event)

    async def _catch_up(self) -> None:
        """Deliver what was published while the subscription was down (members drop what they had)."""
        if not self._members:
            return
        # A conversation of another epoch now (Redis came back without its data) reads from that epoch's start. One
        # without a last position is being joined: its join reads where it starts once subscribed, and its members
        # are owed nothing before (read from the start, its whole kept history would go to a desktop that joined
        # without asking for it, or that recovered up to a later position).
        since = {conversation: self._last[conversation] for conversation in self._members if conversation in self._last}
        if not since:
            return
        replay = await get_history().read(since)
        for event in replay.events:
            self.deliver(event)


async def _close(hub: Hub) -> None:
    if hub._refresher is not None:
        hub._refresher.cancel()
    await hub._subscription.close()


_hubs: LoopLocal[Hub] = LoopLocal(Hub, close=_close)


def get_hub() -> Hub:
    """The running event loop's hub (one per process under the ASGI server)."""
    return _hubs.get()
