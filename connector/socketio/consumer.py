"""Socket.IO over the websocket transport, as a Channels consumer at ``/socket.io/``.

Three layers, as python-socketio has them: the WebSocket carries an Engine.IO
session (``connector.engineio.session``), which carries the Socket.IO layer
(``connector.socketio.server``), whose application is this consumer: a
desktop (``connector.desktop``) that authenticates with ``auth.token`` in its
CONNECT and speaks ``join-conversation`` / ``leave-conversation``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from connector import tokens
from connector.desktop import DesktopConsumer, EventsUnavailable, MembershipError
from connector.engineio.session import EngineIOSession
from connector.socketio.server import ConnectRefused, EventHandler, SocketIOServer

JOIN_EVENT = "join-conversation"
LEAVE_EVENT = "leave-conversation"
UNAUTHENTICATED_EVENT = "unauthenticated"
STREAM_REQUEST_EVENT, END_STREAM_EVENT = "stream-request", "end-stream"
# Stream messages (connector.streaming.streams) as the sample emits them; a clean upstream end emits nothing.
STREAM_EVENTS = {"data": "stream-data", "error": "stream-error"}


class SocketIOConsumer(DesktopConsumer):
    """One Engine.IO session over one WebSocket; only the default namespace ``/``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.engineio: EngineIOSession | None = None
        self.socketio: SocketIOServer | None = None

    # --- the WebSocket, as the Engine.IO session's transport ---------------------------

    async def connect(self) -> None:
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        if query.get("EIO") != ["4"] or query.get("transport") != ["websocket"] or "sid" in query:
            # Only Engine.IO 4 clients opening the websocket transport directly.
            await self.close()
            return
        await self.accept()
        self.engineio = EngineIOSession(self, on_message=self._on_message)
        self.socketio = SocketIOServer(self.engineio, self)
        await self.engineio.open()

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self.engineio is not None:
                self.engineio.stop()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.engineio is not None:
            await self.engineio.receive(text_data)

    async def send_frame(self, frame: str) -> None:
        await self.send(frame)

    async def close_transport(self, code: int) -> None:
        await self.close(code=code)

    async def _on_message(self, payload: str) -> None:
        assert self.socketio is not None
        await self.socketio.receive(payload)

    # --- the Socket.IO application -------------------------------------------------------

    async def socketio_connect(self, auth: Any) -> bool:
        """Accept the CONNECT when ``auth.token`` is valid."""
        try:
            await self.authenticate(auth.get("token") if isinstance(auth, dict) else None)
        except tokens.InvalidToken as error:
            # The sample emits this event before refusing; UI modules listen for it.
            assert self.socketio is not None
            await self.socketio.emit(UNAUTHENTICATED_EVENT)
            raise ConnectRefused(str(error)) from None
        except EventsUnavailable:
            return False
        return True

    async def socketio_disconnect(self) -> None:
        await self.sign_out()
        await self.release_resources()

    async def on_join(self, name: Any = None, *_: Any) -> list[Any]:
        """``join-conversation``: acknowledged ``[true, normalised name]`` or ``[false, why]``."""
        return await _membership_change(self.join_conversation, name)

    async def on_leave(self, name: Any = None, *_: Any) -> list[Any]:
        """``leave-conversation``: acknowledged like a join."""
        return await _membership_change(self.leave_conversation, name)

    async def on_stream_request(self, request: Any = None, *_: Any) -> list[Any]:
        """``stream-request``: open a stream or send on it; answers arrive as ``stream-data`` / ``stream-error``."""
        return await self.stream_registry().request(self.identity, request)

    async def on_end_stream(self, request: Any = None, *_: Any) -> list[Any]:
        """``end-stream``: close the stream upstream and forget it."""
        return await self.stream_registry().end(request)

    socketio_handlers: dict[str, EventHandler] = {
        JOIN_EVENT: on_join,
        LEAVE_EVENT: on_leave,
        STREAM_REQUEST_EVENT: on_stream_request,
        END_STREAM_EVENT: on_end_stream,
    }

    # --- conversation events ---------------------------------------------------------------

    async def send_event(self, event: str, payload: dict[str, Any]) -> None:
        if self.socketio is not None:
            await self.socketio.emit(event, payload)

    async def send_stream(self, kind: str, message: dict[str, Any]) -> None:
        if self.socketio is not None and self.socketio.connected and kind in STREAM_EVENTS:
            await self.socketio.emit(STREAM_EVENTS[kind], message)


async def _membership_change(change, name: Any) -> list[Any]:
    try:
        return [True, await change(name)]
    except MembershipError as error:
        return [False, str(error)]
