"""Conversation membership shared by the Socket.IO and plain WebSocket consumers.

A consumer joins one channel-layer group per conversation; the only state
kept per connection is the set of joined conversations (each group name is
derived from its conversation name when needed).
"""

from __future__ import annotations

import logging

from channels.generic.websocket import AsyncWebsocketConsumer

from connector import conversations

logger = logging.getLogger(__name__)

# Bounds what one connection can make this process subscribe to.
MAX_CONVERSATIONS_PER_CONNECTION = 64


class MembershipError(ValueError):
    """A join or leave that cannot be done; ``str()`` is safe to show the client."""


class ConversationMembershipMixin(AsyncWebsocketConsumer):
    """Join and leave conversations; leave them all on disconnect."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.joined: set[str] = set()  # normalised conversation names

    async def join_conversation(self, name: object) -> str:
        """Join ``name`` (either accepted form); return the normalised name."""
        normalised = self._normalise(name)
        if normalised not in self.joined:
            if len(self.joined) >= MAX_CONVERSATIONS_PER_CONNECTION:
                raise MembershipError(f"a connection may join at most {MAX_CONVERSATIONS_PER_CONNECTION} conversations")
            await self.channel_layer.group_add(conversations.group_name(normalised), self.channel_name)
            self.joined.add(normalised)
        return normalised

    async def leave_conversation(self, name: object) -> str:
        """Leave ``name``; leaving a conversation not joined is not an error."""
        normalised = self._normalise(name)
        if normalised in self.joined:
            self.joined.discard(normalised)
            await self.channel_layer.group_discard(conversations.group_name(normalised), self.channel_name)
        return normalised

    async def leave_all_conversations(self) -> None:
        """Leave every joined conversation."""
        joined, self.joined = self.joined, set()
        for normalised in joined:
            await self.channel_layer.group_discard(conversations.group_name(normalised), self.channel_name)

    async def websocket_disconnect(self, message) -> None:
        try:
            await self.leave_all_conversations()
        except Exception as error:
            # The connection is gone either way (Redis down, say). Go on to disconnect(), which
            # stops the consumer's timers: they would otherwise outlive the connection for ever.
            logger.error("Could not leave a closed connection's conversations: %s: %s", type(error).__name__, error)
        await super().websocket_disconnect(message)

    @staticmethod
    def _normalise(name: object) -> str:
        try:
            return conversations.normalise(name)
        except conversations.InvalidConversationName as error:
            raise MembershipError(str(error)) from None
