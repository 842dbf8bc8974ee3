"""The Socket.IO 5 layer of one connection, over an Engine.IO session.

As python-socketio's server sits on python-engineio's: this layer reads each
MESSAGE payload as a Socket.IO packet, serves the default namespace only,
asks its application to accept a CONNECT (the ``auth`` object), dispatches
EVENT packets through the application's table of handlers and answers their
acknowledgements. It knows nothing of conversations; the application does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from connector.desktops.engineio.packets import new_sid
from connector.desktops.socketio import protocol

#: An event handler: called with the application and the event's arguments; returns the acknowledgement's.
EventHandler = Callable[..., Awaitable[list[Any]]]
# How much of an unknown event's name its acknowledgement repeats: enough to recognise a typo, never as much as
# the client sent (a long-polling answer waits in Redis).
MAX_ECHOED_NAME = 64


class ConnectRefused(Exception):
    """The application refuses a CONNECT; ``str()`` is the CONNECT_ERROR message the client sees."""


class MessageChannel(Protocol):
    """The Engine.IO session under this layer (``EngineIOSession``, or one long-polling request's)."""

    async def send_message(self, payload: str) -> None:
        """Send ``payload`` in a MESSAGE packet."""

    async def refuse(self, why: str) -> None:
        """End the session over a packet that breaks the protocol."""


class SocketIOApplication(Protocol):
    """What the Socket.IO layer needs from the application above it."""

    #: Event name -> handler, looked up on the class (one table per application class, not per connection).
    socketio_handlers: Mapping[str, EventHandler]

    async def socketio_connect(self, auth: Any) -> dict[str, Any] | None:
        """Accept the CONNECT (the answer's extra fields), refuse it (raise ``ConnectRefused``), or
        return None after closing the connection."""

    async def socketio_connected(self) -> None:
        """The CONNECT answer has been sent."""

    async def socketio_disconnect(self) -> None:
        """The client left the namespace (a DISCONNECT packet)."""

    async def socketio_event_handled(self) -> None:
        """An event was handled and its acknowledgement, if it asked for one, sent."""


class SocketIOServer:
    """The Socket.IO state of one connection: whether ``/`` is connected, and how to reach the client."""

    __slots__ = ("_session", "_application", "connected")

    def __init__(self, session: MessageChannel, application: SocketIOApplication, *, connected: bool = False) -> None:
        """``connected``: ``/`` was connected already (a long-polling session's state, or one upgraded)."""
        self._session = session
        self._application = application
        self.connected = connected

    async def receive(self, payload: str) -> None:
        """Handle the payload of one Engine.IO MESSAGE."""
        try:
            packet = protocol.decode(payload)
        except protocol.ProtocolError as error:
            await self._session.refuse(str(error))
            return
        namespace = protocol.namespace_of(packet)
        if namespace != protocol.DEFAULT_NAMESPACE:
            if packet.packet_type == protocol.CONNECT:
                await self._session.send_message(protocol.connect_error("Invalid namespace", namespace=namespace))
            return
        if packet.packet_type == protocol.CONNECT:
            await self._connect(packet.data)
        elif packet.packet_type == protocol.DISCONNECT:
            self.connected = False
            await self._application.socketio_disconnect()
        elif packet.packet_type == protocol.EVENT and self.connected:
            await self._event(packet.data, packet.id)
        # An ACK is left alone: this server asks for no acknowledgement, so its id is one never sent, which the
        # JavaScript server ignores too (socket.ts, onack: "bad ack").

    async def emit(self, event: str, *args: Any) -> None:
        """Send ``event`` with ``args`` to the client."""
        await self._session.send_message(protocol.event(event, *args))

    async def _connect(self, auth: Any) -> None:
        if self.connected:
            return
        try:
            extra = await self._application.socketio_connect(auth)
        except ConnectRefused as refusal:
            await self._session.send_message(protocol.connect_error(str(refusal)))
            return
        if extra is not None:
            self.connected = True
            await self._session.send_message(protocol.connected(sid=new_sid(), **extra))
            await self._application.socketio_connected()

    async def _event(self, data: list[Any] | None, ack_id: int | None) -> None:
        if data is None:
            return  # an EVENT without a payload: the JavaScript server emits nothing for it either
        name, args = data[0], data[1:]  # a string or a number (protocol.decode)
        handler = type(self._application).socketio_handlers.get(name) if isinstance(name, str) else None
        result = ([False, f"unknown event {_echoed(name)}"] if handler is None
                  else await handler(self._application, *args))
        if ack_id is not None:
            await self._session.send_message(protocol.ack(ack_id, *result))
        await self._application.socketio_event_handled()


def _echoed(name: str | int | float) -> str:
    """An unknown event's name as its acknowledgement repeats it: at most ``MAX_ECHOED_NAME`` characters of it
    (a number's too: an integer may have 100 digits)."""
    if isinstance(name, str):
        return repr(name[:MAX_ECHOED_NAME])
    return str(name)[:MAX_ECHOED_NAME]
