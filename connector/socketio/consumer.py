"""Socket.IO over the websocket transport, as a Channels consumer at ``/socket.io/``.

Three layers, as python-socketio has them: the WebSocket carries an Engine.IO
session (``connector.engineio.session``), which carries the Socket.IO layer
(``connector.socketio.server``), whose application is this consumer: a
desktop (``connector.desktop``) that authenticates with ``auth.token`` in its
CONNECT and speaks ``join-conversation`` / ``leave-conversation``.

Connection state recovery, as socket.io-client 4.6+ does it unchanged: the
CONNECT answer carries a private session id (``pid``) and every event a
trailing offset; a client that comes back (to any connector) with ``pid`` and
``offset`` in its CONNECT auth, and a valid token for the same user, gets its
conversations back and every event after the offset, and the same ``pid``
(which makes socket.io-client set ``socket.recovered``). Session records are
``connector.sessions``.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings

from connector import sessions, tokens
from connector.desktop import DesktopConsumer, EventsUnavailable, MembershipError
from connector.engineio.session import EngineIOSession
from connector.socketio import protocol
from connector.socketio.server import ConnectRefused, EventHandler, SocketIOServer
from events.history import Event, Offset, Replay, get_history

logger = logging.getLogger(__name__)

JOIN_EVENT = "join-conversation"
LEAVE_EVENT = "leave-conversation"
UNAUTHENTICATED_EVENT = "unauthenticated"
STREAM_REQUEST_EVENT, END_STREAM_EVENT = "stream-request", "end-stream"
# Stream messages (connector.streaming.streams) as the sample emits them; a clean upstream end emits nothing.
STREAM_EVENTS = {"data": "stream-data", "error": "stream-error"}


class SocketIOConsumer(DesktopConsumer):
    """One Engine.IO session over one WebSocket; only the default namespace ``/``."""

    transport = "socketio"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.engineio: EngineIOSession | None = None
        self.socketio: SocketIOServer | None = None
        self.session: sessions.Session | None = None  # with recovery on
        self._replay: Replay | None = None  # to send once the CONNECT answer is out
        self._replay_after_ack: Replay | None = None  # a join's, to send once its acknowledgement is out

    @property
    def frame_kind(self) -> str:  # type: ignore[override]
        return "socketio+offset" if settings.SOCKETIO_RECOVERY_SECONDS else "socketio"

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

    async def socketio_connect(self, auth: Any) -> dict[str, Any] | None:
        """Accept the CONNECT when ``auth.token`` is valid; recover the session ``auth.pid`` names if it can."""
        auth = auth if isinstance(auth, dict) else {}
        try:
            identity = await self.authenticate(auth.get("token"))
        except tokens.InvalidToken as error:
            # The sample emits this event before refusing; UI modules listen for it.
            assert self.socketio is not None
            await self.socketio.emit(UNAUTHENTICATED_EVENT)
            raise ConnectRefused(str(error)) from None
        if not settings.SOCKETIO_RECOVERY_SECONDS:
            return {}
        try:
            if sessions.is_pid(auth.get("pid")) and await self._recover(identity, auth["pid"], auth.get("offset")):
                return {"pid": self.session.pid}
            position = await get_history().position()
            self.session = sessions.Session(
                pid=sessions.new_pid(), user=identity.user, project=identity.project,
                epoch=position.epoch, since=position.seq,
            )
            await sessions.save(self.session, ttl=sessions.connected_ttl())
        except (EventsUnavailable, MembershipError):
            raise
        except Exception as error:
            raise await self.unavailable(error) from None
        return {"pid": self.session.pid}

    async def _recover(self, identity: tokens.DesktopIdentity, pid: str, offset: Any) -> bool:
        """Restore session ``pid`` for ``identity``; False (and nothing restored) when it cannot be whole."""
        session = await sessions.load(pid)
        if session is None or (session.user, session.project) != (identity.user, identity.project):
            return False
        given = Offset.parse(offset)
        since = given if given is not None else Offset(session.epoch, session.since)
        replay = await self.restore_conversations(session.joined, since=since)
        if not replay.complete:
            logger.info("Session could not be recovered: the history no longer reaches back to its offset")
            self.send_replay(None)
            await self.leave_all_conversations()
            return False
        self.session, self._replay = session, replay
        await sessions.save(session, ttl=sessions.connected_ttl())
        return True

    async def socketio_connected(self) -> None:
        if self._replay is not None:
            replay, self._replay = self._replay, None
            self.send_replay(replay)

    async def socketio_disconnect(self) -> None:
        await self._end_session()
        await self.sign_out()
        await self.release_resources()

    async def connection_ended(self) -> None:
        if self.session is not None:
            try:
                await sessions.expire(self.session.pid, ttl=settings.SOCKETIO_RECOVERY_SECONDS)
            except Exception as error:
                logger.warning("Could not start a session's recovery window: %s: %s", type(error).__name__, error)

    async def _end_session(self) -> None:
        """The client left the namespace on purpose: its session cannot be recovered."""
        session, self.session = self.session, None
        if session is not None:
            try:
                await sessions.expire(session.pid, ttl=0)
            except Exception as error:
                logger.warning("Could not remove a session record: %s: %s", type(error).__name__, error)

    async def on_join(self, name: Any = None, options: Any = None, *_: Any) -> list[Any]:
        """``join-conversation`` (options: ``{"history": true}`` or ``{"after": offset}``): acknowledged
        ``[true, normalised name]`` or ``[false, why]``; a replay follows the acknowledgement."""
        options = options if isinstance(options, dict) else {}
        after = Offset.parse(options.get("after")) if "after" in options else None
        history = options.get("history", settings.SOCKETIO_JOIN_HISTORY == "all") is True and after is None
        try:
            joined = await self.join_conversation(name, after=after, history=history)
        except MembershipError as error:
            return [False, str(error)]
        try:
            await self._record_join(joined.conversation)
        except MembershipError as error:
            self.send_replay(None)
            return [False, str(error)]
        if joined.replay is not None:
            self._replay_after_ack = joined.replay
        return [True, joined.conversation]

    async def on_leave(self, name: Any = None, *_: Any) -> list[Any]:
        """``leave-conversation``: acknowledged like a join."""
        try:
            conversation = await self.leave_conversation(name)
        except MembershipError as error:
            return [False, str(error)]
        if self.session is not None and self.session.joined.pop(conversation, None) is not None:
            await self._save_session()
        return [True, conversation]

    async def _record_join(self, conversation: str) -> None:
        if self.session is None or conversation in self.session.joined:
            return
        try:
            self.session.joined[conversation] = (await get_history().position()).seq
            await self._save_session()
        except Exception as error:
            self.session.joined.pop(conversation, None)
            await self.leave_conversation(conversation)
            logger.warning("Could not record a join in the session: %s: %s", type(error).__name__, error)
            raise MembershipError("conversation events are unavailable right now; try again") from None

    async def _save_session(self) -> None:
        assert self.session is not None
        try:
            await sessions.save(self.session, ttl=sessions.connected_ttl())
        except Exception as error:
            logger.warning("Could not save a session record: %s: %s", type(error).__name__, error)

    async def socketio_event_handled(self) -> None:
        """After an event's acknowledgement went out: send the replay a join asked for."""
        replay, self._replay_after_ack = self._replay_after_ack, None
        if replay is not None:
            self.send_replay(replay)

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

    def frame_event(self, event: Event) -> str:
        offset = event.offset if settings.SOCKETIO_RECOVERY_SECONDS else None
        return "4" + protocol.event_with_json_argument(event.kind, event.payload_json, offset)

    async def send_stream(self, kind: str, message: dict[str, Any]) -> None:
        if self.socketio is not None and self.socketio.connected and kind in STREAM_EVENTS:
            await self.socketio.emit(STREAM_EVENTS[kind], message)
