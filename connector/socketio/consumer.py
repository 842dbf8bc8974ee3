"""Socket.IO over the websocket transport, as a Channels consumer at ``/socket.io/``.

Speaks what the npm ``socket.io-client`` v4 and python-socketio send: the
Engine.IO handshake and heartbeat, a Socket.IO CONNECT carrying
``auth.token``, the ``join-conversation`` / ``leave-conversation`` events with
acknowledgements, and the four conversation events pushed by the interceptor.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from engineio import packet as eio
from socketio import packet as sio

from connector import close_codes, tokens
from connector.desktop import DesktopConsumer, EventsUnavailable, MembershipError
from connector.socketio import protocol

logger = logging.getLogger(__name__)

JOIN_EVENT = "join-conversation"
LEAVE_EVENT = "leave-conversation"
UNAUTHENTICATED_EVENT = "unauthenticated"


class SocketIOConsumer(DesktopConsumer):
    """One Engine.IO session over one WebSocket; only the default namespace ``/``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sid = protocol.new_sid()
        # Set while a ping awaits its pong: a future per ping, rather than an Event per connection
        # and the task asyncio.wait_for() would wrap around Event.wait() at every ping.
        self._pong: asyncio.Future[None] | None = None
        self._heartbeat_task: asyncio.Task | None = None

    # --- connection lifecycle --------------------------------------------------

    async def connect(self) -> None:
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        if query.get("EIO") != ["4"] or query.get("transport") != ["websocket"] or "sid" in query:
            # Only Engine.IO 4 clients opening the websocket transport directly.
            await self.close()
            return
        await self.accept()
        await self.send(
            protocol.open_frame(
                sid=self.sid,
                ping_interval=settings.SOCKETIO_PING_INTERVAL,
                ping_timeout=settings.SOCKETIO_PING_TIMEOUT,
                max_payload=settings.SOCKETIO_MAX_PAYLOAD,
            )
        )
        self._heartbeat_task = asyncio.create_task(self._heartbeat())

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # However the connection ended: a heartbeat left running would ping it for ever.
            if self._heartbeat_task is not None:
                self._heartbeat_task.cancel()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self.close(code=close_codes.UNSUPPORTED_DATA)
            return
        if len(text_data) > settings.SOCKETIO_MAX_PAYLOAD:
            await self.close(code=close_codes.MESSAGE_TOO_BIG)
            return
        try:
            incoming = protocol.decode(text_data)
        except protocol.ProtocolError as error:
            logger.info("Closing Socket.IO session %s: %s", self.sid, error)
            await self.close(code=close_codes.PROTOCOL_ERROR)
            return
        if incoming.eio_type == eio.PONG:
            if self._pong is not None and not self._pong.done():
                self._pong.set_result(None)
        elif incoming.eio_type == eio.PING:
            await self.send(protocol.pong_frame())
        elif incoming.eio_type == eio.CLOSE:
            await self.close()
        elif incoming.eio_type == eio.MESSAGE:
            await self._on_packet(incoming)

    # --- Socket.IO packets ---------------------------------------------------------

    async def _on_packet(self, incoming: protocol.Incoming) -> None:
        packet = incoming.packet
        if incoming.namespace != protocol.DEFAULT_NAMESPACE:
            if packet.packet_type == sio.CONNECT:
                await self.send(protocol.connect_error_frame("Invalid namespace", namespace=incoming.namespace))
            return
        if packet.packet_type == sio.CONNECT:
            await self._on_connect(packet.data)
        elif packet.packet_type == sio.DISCONNECT:
            await self.sign_out()
        elif packet.packet_type == sio.EVENT and self.identity is not None:
            await self._on_event(packet.data, packet.id)

    async def _on_connect(self, auth: Any) -> None:
        if self.identity is not None:
            return
        try:
            await self.authenticate(auth.get("token") if isinstance(auth, dict) else None)
        except tokens.InvalidToken as error:
            # The sample emits this event before refusing; UI modules listen for it.
            await self.send(protocol.event_frame(UNAUTHENTICATED_EVENT))
            await self.send(protocol.connect_error_frame(str(error)))
            return
        except EventsUnavailable:
            return
        await self.send(protocol.connected_frame(sid=protocol.new_sid()))

    async def _on_event(self, data: Any, ack_id: int | None) -> None:
        if not isinstance(data, list) or not data or not isinstance(data[0], str):
            return
        event, args = data[0], data[1:]
        if event == JOIN_EVENT:
            result = await self._membership_change(self.join_conversation, args)
        elif event == LEAVE_EVENT:
            result = await self._membership_change(self.leave_conversation, args)
        else:
            result = [False, f"unknown event {event!r}"]
        if ack_id is not None:
            await self.send(protocol.ack_frame(ack_id, *result))

    @staticmethod
    async def _membership_change(change, args: list) -> list:
        try:
            return [True, await change(args[0] if args else None)]
        except MembershipError as error:
            return [False, str(error)]

    async def send_event(self, event: str, payload: dict[str, Any]) -> None:
        await self.send(protocol.event_frame(event, payload))

    # --- timers -------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        interval, timeout = settings.SOCKETIO_PING_INTERVAL, settings.SOCKETIO_PING_TIMEOUT
        while True:
            await asyncio.sleep(interval)
            self._pong = asyncio.get_running_loop().create_future()
            await self.send(protocol.ping_frame())
            try:
                await asyncio.wait_for(self._pong, timeout)
            except asyncio.TimeoutError:
                logger.info("Closing Socket.IO session %s: no pong within %ss", self.sid, timeout)
                await self.close()
                return
            finally:
                self._pong = None
