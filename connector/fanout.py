"""This process's one subscription per conversation, fanned out to every desktop of the process in it.

Each connector process subscribes once to a conversation's channel
(``events.history.channel_name``) while at least one of its desktops has
joined it, receives each event once, and hands it to each of those desktops
(``Member.event_arrived``), which frame it once per protocol for all of them.
Redis delivers the events of all channels on one connection in the order the
history numbered them; when that connection drops, the hub reconnects by
itself and catches up from the history, so an outage loses nothing (desktops
drop what they already had by its offset). Without Redis (development mode)
the in-process history hands events straight to the hub.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from django.conf import settings
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from common.loop_local import LoopLocal
from connector import presence
from events import metrics, redis_client
from events.history import Event, channel_name, decode_published, get_history, memory_history

logger = logging.getLogger(__name__)

RECONNECT_DELAYS = (0.1, 0.2, 0.5, 1.0, 2.0)
# An idle subscription is checked with a PING this often, so a dead connection is noticed.
IDLE_CHECK_SECONDS = 15.0


class Member(Protocol):
    """A desktop connection as the hub sees it."""

    def event_arrived(self, event: Event) -> None:
        """Take one event of a joined conversation; must not block."""


class Hub:
    """Conversation -> this process's members, and the Redis subscription that feeds them."""

    def __init__(self) -> None:
        self._members: dict[str, set[Member]] = {}
        self._by_channel: dict[str, str] = {}  # channel -> conversation
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task | None = None
        self._confirmations: dict[str, asyncio.Future[None]] = {}
        # One SUBSCRIBE or UNSUBSCRIBE at a time: redis-py's PubSub connects on its first command,
        # and two concurrent first commands would each open a connection of their own.
        self._commands = asyncio.Lock()
        self._refresher: asyncio.Task | None = None
        # The last event received (its epoch and number), for catching up after a reconnect.
        self._last_epoch: str | None = None
        self._last_seq = 0
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
            confirmation = self._confirmations.get(channel_name(conversation))
            if confirmation is not None:
                await asyncio.shield(confirmation)
            return
        self._members[conversation] = {member}
        if not redis_client.is_configured():
            return
        try:
            await self._subscribe(conversation)
        except BaseException:
            self._discard(conversation, member)
            raise
        if presence.enabled():
            await self._presence(presence.joined, conversation)
            if self._refresher is None:
                self._refresher = asyncio.create_task(self._refresh_presence())

    async def leave(self, conversation: str, member: Member) -> None:
        """Remove ``member``; the process unsubscribes when its last member in the conversation leaves."""
        if self._discard(conversation, member) and self._pubsub is not None:
            channel = channel_name(conversation)
            self._by_channel.pop(channel, None)
            if presence.enabled():
                await self._presence(presence.left, conversation)
            async with self._commands:
                await self._pubsub.unsubscribe(channel)

    def deliver(self, event: Event) -> None:
        """Hand ``event`` to each member in its conversation."""
        if event.epoch != self._last_epoch:
            self._last_epoch, self._last_seq = event.epoch, event.seq
        else:
            self._last_seq = max(self._last_seq, event.seq)
        metrics.event_handed_out(event.kind, event.payload_json, len(self._members.get(event.conversation, ())))
        for member in tuple(self._members.get(event.conversation, ())):
            member.event_arrived(event)

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

    async def _subscribe(self, conversation: str) -> None:
        channel = channel_name(conversation)
        self._by_channel[channel] = conversation
        if self._pubsub is None:
            self._pubsub = redis_client.get_subscriber().pubsub()
        confirmation = self._confirmations[channel] = asyncio.get_running_loop().create_future()
        try:
            async with self._commands:
                await self._pubsub.subscribe(channel)
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read())
            # Subscribed once Redis says so: only then is no later event missed.
            await asyncio.wait_for(asyncio.shield(confirmation), settings.EVENT_STORE_TIMEOUT)
        finally:
            if self._confirmations.get(channel) is confirmation:
                del self._confirmations[channel]

    async def _read(self) -> None:
        """Receive every subscribed channel's events; reconnect and catch up after a lost connection."""
        failures = 0
        while self._pubsub is not None:
            try:
                if failures:
                    await self._pubsub.connect()  # re-subscribes every channel it had
                    await self._drop_stale_channels()
                    await self._catch_up()
                    logger.warning("Event subscription restored after %s failed attempt(s)", failures)
                    failures = 0
                if not self._pubsub.subscribed:
                    if not self._members:
                        self._reader = None  # nothing to read; the next join starts a reader
                        return
                    await asyncio.sleep(0.05)  # a SUBSCRIBE is on its way
                    continue
                message = await self._pubsub.get_message(timeout=IDLE_CHECK_SECONDS)
                if message is None:
                    await self._pubsub.ping()
                else:
                    self._handle(message)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as error:
                metrics.redis_error("subscription")
                if not failures:
                    logger.warning("Event subscription lost (%s: %s); reconnecting", type(error).__name__, error)
                delay = RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)]
                failures += 1
                await asyncio.sleep(delay)

    def _handle(self, message: dict) -> None:
        channel = message["channel"].decode("utf-8") if isinstance(message["channel"], bytes) else message["channel"]
        kind = message["type"]
        if kind == "subscribe":
            confirmation = self._confirmations.get(channel)
            if confirmation is not None and not confirmation.done():
                confirmation.set_result(None)
            return
        if kind != "message":
            return
        conversation = self._by_channel.get(channel)
        if conversation is None:
            return
        try:
            event = decode_published(conversation, message["data"])
        except (ValueError, UnicodeDecodeError) as error:
            logger.error("Ignoring an undecodable event on %s: %s", channel, error)
            return
        self.deliver(event)

    async def _drop_stale_channels(self) -> None:
        """Unsubscribe channels whose last member left while Redis was unreachable (their UNSUBSCRIBE failed)."""
        assert self._pubsub is not None
        stale = [channel for channel in self._pubsub.channels
                 if (channel.decode("utf-8") if isinstance(channel, bytes) else channel) not in self._by_channel]
        if stale:
            async with self._commands:
                await self._pubsub.unsubscribe(*stale)

    async def _catch_up(self) -> None:
        """Deliver what was published while the subscription was down (members drop what they had)."""
        if not self._members:
            return
        history = get_history()
        replay = await history.read(dict.fromkeys(self._members, self._last_seq), epoch=self._last_epoch)
        if not replay.complete and replay.position.epoch != self._last_epoch:
            # Redis came back without its data (a restart): a new epoch numbers from 1 again.
            replay = await history.read(dict.fromkeys(self._members, 0), epoch=None)
        for event in replay.events:
            self.deliver(event)


async def _close(hub: Hub) -> None:
    for task in (hub._reader, hub._refresher):
        if task is not None:
            task.cancel()
    pubsub, hub._pubsub = hub._pubsub, None
    if pubsub is not None:
        await pubsub.aclose()


_hubs: LoopLocal[Hub] = LoopLocal(Hub, close=_close)


def get_hub() -> Hub:
    """The running event loop's hub (one per process under the ASGI server)."""
    return _hubs.get()
