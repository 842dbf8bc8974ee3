"""What every desktop connection shares, whichever protocol it speaks (Socket.IO or plain ``/ws/``).

``DesktopConsumer`` owns the desktop's identity, the authentication deadline,
joining and leaving conversations, and relaying conversation events; the
protocol consumers only translate frames. Two rules hold for every
connection, however it ends (a close by either side, an error, a timeout, a
cancelled task):

- A connection that has not authenticated holds nothing in Redis. With the
  pub/sub channel layer a consumer's channel is a Redis subscription, so the
  channel is made only once a token is accepted, and a process keeps at most
  ``WEBSOCKET_MAX_UNAUTHENTICATED`` unauthenticated connections open.
- When the connection ends, it leaves every conversation it joined and its
  channel is unsubscribed (``__call__``'s ``finally``), so no Redis
  subscription outlives it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings

from connector import close_codes, tokens
from connector.streaming.streams import StreamRegistry
from events import conversations

logger = logging.getLogger(__name__)

# Bounds what one connection can make this process subscribe to.
MAX_CONVERSATIONS_PER_CONNECTION = 64
# At most one warning per this many seconds while handshakes are refused for the bound.
REFUSAL_LOG_INTERVAL_SECONDS = 60.0


class MembershipError(ValueError):
    """A join or leave that cannot be done; ``str()`` is safe to show the client."""


class EventsUnavailable(Exception):
    """Redis could not subscribe the connection to its events; the connection has been closed (4503)."""


class _Unauthenticated:
    """This process's count of open connections that have not authenticated yet."""

    def __init__(self) -> None:
        self.count = 0
        self._last_refusal_logged = -REFUSAL_LOG_INTERVAL_SECONDS

    def admit(self) -> bool:
        """Count one more, or return False (logging at most once a minute) when the bound is reached."""
        if self.count >= settings.WEBSOCKET_MAX_UNAUTHENTICATED:
            now = time.monotonic()
            if now - self._last_refusal_logged >= REFUSAL_LOG_INTERVAL_SECONDS:
                self._last_refusal_logged = now
                logger.warning(
                    "Refusing WebSocket handshakes: %s connections have not authenticated yet "
                    "(WEBSOCKET_MAX_UNAUTHENTICATED)",
                    self.count,
                )
            return False
        self.count += 1
        return True


UNAUTHENTICATED = _Unauthenticated()


class DesktopConsumer(AsyncWebsocketConsumer):
    """A desktop's connection: authenticate once, join and leave conversations, receive their events.

    Subclasses implement ``send_event`` (how an event is framed for their
    protocol) and may override ``authentication_deadline_passed``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.identity: tokens.DesktopIdentity | None = None
        self.joined: set[str] = set()  # normalised conversation names
        self._counted_unauthenticated = False
        self._deadline: asyncio.TimerHandle | None = None
        self._deadline_task: asyncio.Task | None = None
        self.streams: StreamRegistry | None = None  # made by the first stream request

    # --- the consumer's life --------------------------------------------------------------

    async def __call__(self, scope, receive, send) -> None:
        """Channels' ``AsyncConsumer.__call__``, except that the channel waits for authentication.

        The channel (a Redis subscription with the pub/sub layer) is made by
        ``authenticate``; whatever ends the connection, ``finally`` releases
        its conversations and the channel.
        """
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = None
        self.base_send = send
        try:
            await self._dispatch_until_stopped(receive)
        except StopConsumer:
            pass
        finally:
            await self._release()

    async def _dispatch_until_stopped(self, receive: Callable[[], Awaitable[dict]]) -> None:
        """Dispatch client messages, and channel messages once there is a channel, one at a time."""
        client = asyncio.ensure_future(receive())
        channel: asyncio.Future | None = None
        try:
            while True:
                waiting = {client} if channel is None else {client, channel}
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if client in done:
                    await self.dispatch(client.result())
                    client = asyncio.ensure_future(receive())
                if channel is not None and channel in done:
                    await self.dispatch(channel.result())
                    channel = None
                if channel is None and self.channel_name is not None:
                    channel = asyncio.ensure_future(self.channel_layer.receive(self.channel_name))
        finally:
            # Cancelling the channel's receive is what makes the pub/sub layer unsubscribe the channel.
            for pending in (client, channel):
                if pending is not None and not pending.done():
                    pending.cancel()
            await asyncio.gather(*(p for p in (client, channel) if p is not None), return_exceptions=True)

    async def websocket_connect(self, message: dict) -> None:
        """Refuse the handshake when this process already holds too many unauthenticated connections."""
        if not UNAUTHENTICATED.admit():
            await self.close()  # before accepting: daphne answers 403
            return
        self._counted_unauthenticated = True
        self._deadline = asyncio.get_running_loop().call_later(
            settings.WEBSOCKET_AUTH_TIMEOUT, self._start_deadline_task
        )
        await super().websocket_connect(message)

    async def _release(self) -> None:
        self._stop_counting_unauthenticated()
        if self._deadline is not None:
            self._deadline.cancel()
        if self._deadline_task is not None:
            self._deadline_task.cancel()
        await self.sign_out()
        await self.release_resources()

    async def release_resources(self) -> None:
        """Close what the connection holds besides its conversations: its open streams, upstream too."""
        if self.streams is not None:
            await self.streams.close_all()

    def _stop_counting_unauthenticated(self) -> None:
        if self._counted_unauthenticated:
            self._counted_unauthenticated = False
            UNAUTHENTICATED.count -= 1

    # --- authentication -------------------------------------------------------------------

    async def authenticate(self, raw_token: object) -> tokens.DesktopIdentity:
        """Accept ``raw_token`` as this connection's identity, or raise ``tokens.InvalidToken``.

        Once accepted, the connection gets its channel and may join conversations. When Redis
        cannot make the channel, the connection is closed with 4503 and ``EventsUnavailable`` raised.
        """
        identity = tokens.validate_token(raw_token if isinstance(raw_token, str) else None)
        if self.channel_layer is not None and self.channel_name is None:
            try:
                self.channel_name = await self.channel_layer.new_channel()
            except Exception as error:
                logger.warning("Could not subscribe a desktop to its events: %s: %s", type(error).__name__, error)
                await self.close(code=close_codes.UNAVAILABLE)
                raise EventsUnavailable() from None
        self.identity = identity
        self._stop_counting_unauthenticated()
        return identity

    async def sign_out(self) -> None:
        """Forget the identity and leave every conversation; the connection itself stays as it is."""
        self.identity = None
        try:
            await self.leave_all_conversations()
        except Exception as error:
            # Redis down, say: the memberships are forgotten here all the same.
            logger.error("Could not leave a connection's conversations: %s: %s", type(error).__name__, error)

    def _start_deadline_task(self) -> None:
        if self.identity is None:
            self._deadline_task = asyncio.ensure_future(self.authentication_deadline_passed())

    async def authentication_deadline_passed(self) -> None:
        """``WEBSOCKET_AUTH_TIMEOUT`` passed without a valid token: close the connection."""
        await self.close(code=close_codes.UNAUTHENTICATED)

    # --- conversations --------------------------------------------------------------------

    async def join_conversation(self, name: object) -> str:
        """Join ``name`` (either accepted form); return the normalised name."""
        normalised = self._normalise(name)
        if normalised not in self.joined:
            if len(self.joined) >= MAX_CONVERSATIONS_PER_CONNECTION:
                raise MembershipError(f"a connection may join at most {MAX_CONVERSATIONS_PER_CONNECTION} conversations")
            self.joined.add(normalised)  # before the await: a close meanwhile must still leave it
            try:
                await self.channel_layer.group_add(conversations.group_name(normalised), self.channel_name)
            except Exception as error:
                self.joined.discard(normalised)
                logger.warning("Could not join a conversation: %s: %s", type(error).__name__, error)
                raise MembershipError("conversation events are unavailable right now; try again") from None
        return normalised

    async def leave_conversation(self, name: object) -> str:
        """Leave ``name``; leaving a conversation not joined is not an error."""
        normalised = self._normalise(name)
        if normalised in self.joined:
            self.joined.discard(normalised)
            await self.channel_layer.group_discard(conversations.group_name(normalised), self.channel_name)
        return normalised

    async def leave_all_conversations(self) -> None:
        """Leave every joined conversation; after trying them all, raise the first failure."""
        joined, self.joined = self.joined, set()
        failures = []
        for normalised in joined:
            try:
                await self.channel_layer.group_discard(conversations.group_name(normalised), self.channel_name)
            except Exception as error:
                failures.append(error)
        if failures:
            raise failures[0]

    @staticmethod
    def _normalise(name: object) -> str:
        try:
            return conversations.normalise(name)
        except conversations.InvalidConversationName as error:
            raise MembershipError(str(error)) from None

    # --- events ---------------------------------------------------------------------------

    async def conversation_event(self, message: dict[str, Any]) -> None:
        """Relay an interceptor event (``events.publish``) to the desktop."""
        if self.identity is not None:
            await self.send_event(message["event"], message["payload"])

    async def send_event(self, event: str, payload: dict[str, Any]) -> None:
        """Send one conversation event in this protocol's framing."""
        raise NotImplementedError

    # --- streaming calls (connector.streaming) ---------------------------------------------

    def stream_registry(self) -> StreamRegistry:
        """The connection's open streams, made on first use."""
        if self.streams is None:
            self.streams = StreamRegistry(self.send_stream)
        return self.streams

    async def send_stream(self, kind: str, message: dict[str, Any]) -> None:
        """Send one stream message (``data``, ``error`` or ``ended``) in this protocol's framing."""
        raise NotImplementedError
