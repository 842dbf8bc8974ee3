"""Conversation membership shared by the Socket.IO and plain WebSocket consumers.

A consumer joins one channel-layer group per conversation; the only state
kept per connection is the map of joined conversations to their groups.
"""

from __future__ import annotations

from channels.generic.websocket import AsyncWebsocketConsumer

from connector import conversations

# Bounds what one connection can make this process subscribe to.
MAX_CONVERSATIONS_PER_CONNECTION = 64


class MembershipError(ValueError):
    """A join or leave that cannot be done; ``str()`` is safe to show the client."""


class ConversationMembershipMixin(AsyncWebsocketConsumer):
    """Join and leave conversations; leave them all on disconnect."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.joined: dict[str, str] = {}  # normalised conversation name -> group

    async def join_conversation(self, name: object) -> str:
        """Join ``name`` (either accepted form); return the normalised name."""
        normalised = self._normalise(name)
        if normalised not in self.joined:
            if len(self.joined) >= MAX_CONVERSATIONS_PER_CONNECTION:
                raise MembershipError(f"a connection may join at most {MAX_CONVERSATIONS_PER_CONNECTION} conversations")
            group = conversations.group_name(normalised)
            await self.channel_layer.group_add(group, self.channel_name)
            self.joined[normalised] = group
        return normalised

    async def leave_conversation(self, name: object) -> str:
        """Leave ``name``; leaving a conversation not joined is not an error."""
        normalised = self._normalise(name)
        group = self.joined.pop(normalised, None)
        if group is not None:
            await self.channel_layer.group_discard(group, self.channel_name)
        return normalised

    async def leave_all_conversations(self) -> None:
        joined, self.joined = self.joined, {}
        for group in joined.values():
            await self.channel_layer.group_discard(group, self.channel_name)

    async def websocket_disconnect(self, message) -> None:
        await self.leave_all_conversations()
        await super().websocket_disconnect(message)

    @staticmethod
    def _normalise(name: object) -> str:
        try:
            return conversations.normalise(name)
        except conversations.InvalidConversationName as error:
            raise MembershipError(str(error)) from None
