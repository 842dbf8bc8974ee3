"""Socket.IO over the websocket transport, as a Channels consumer at ``/socket.io/``.

Three layers, as python-socketio has them: the WebSocket carries an Engine.IO
session (``connector.desktops.engineio.session``), which carries the Socket.IO layer
(``connector.desktops.socketio.server``), whose application is this consumer: a
desktop (``connector.desktops.consumer``) that authenticates with ``auth.token`` in its
CONNECT and speaks ``join-conversation`` / ``leave-conversation``.

Connection state recovery, as socket.io-client 4.6+ does it unchanged: the
CONNECT answer carries a private session id (``pid``) and every event a
trailing offset, the socket's position in each of its conversations
(``connector.desktops.offsets``); a client that comes back (to any connector)
with ``pid`` and ``offset`` in its CONNECT auth, and a valid token for the
same user, gets its conversations back and every event after its position in
each, and the same ``pid`` (which makes socket.io-client set
``socket.recovered``). Session records are ``connector.desktops.sessions``. The
client keeps only its last offset: each frame carries the whole vector, each
conversation's position never moving back (``application.SentOffsets``).

A WebSocket opened with the ``sid`` of a long-polling session
(``connector.desktops.polling``) upgrades it: ``2probe`` is answered ``3probe`` (and
the pending poll a noop), and on ``5`` this consumer takes the session over
from Redis (identity, namespace, conversations and the position each was
sent up to), so nothing is lost or sent twice across the switch. When the
history no longer reaches back to those positions, the WebSocket is closed
instead, as the session's next poll would have been: the client reconnects,
and its recovery tells it what was lost (a new ``pid``). One WebSocket at a
time may upgrade a session, and must complete the upgrade within
``SOCKETIO_PING_TIMEOUT`` of its opening (else it is closed, 1000, and
polling goes on); another one opened meanwhile, or after the upgrade, is
refused, as the JavaScript server has it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings

from connector import tokens
from connector.desktops import close_codes, membership, sessions
from connector.desktops.consumer import DesktopConsumer, EventsUnavailable
from connector.desktops.engineio import packets
from connector.desktops.engineio import store as polling_store
from connector.desktops.engineio.session import EngineIOSession
from connector.desktops.membership import UNAVAILABLE_MESSAGE, MembershipError
from connector.desktops.socketio import application
from connector.desktops.socketio.application import (
    END_STREAM_EVENT,
    JOIN_EVENT,
    LEAVE_EVENT,
    STREAM_EVENTS,
    STREAM_REQUEST_EVENT,
    UNAUTHENTICATED_EVENT,
    SentOffsets,
)
from connector.desktops.socketio.server import ConnectRefused, EventHandler, SocketIOServer
from events.history import Event, Offset, Replay, get_history

logger = logging.getLogger(__name__)


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
        self._upgrading: str | None = None  # the sid of the long-polling session this socket is upgrading
        self._upgrade_token = secrets.token_hex(8)  # names this socket as the session's upgrader in Redis
        self._upgrade_timer: asyncio.TimerHandle | None = None
        self._upgrade_timeout: asyncio.Task | None = None
        self._offsets = SentOffsets()  # what the client's recovery offset is
        self.recovery_window_started = False  # the shutdown drain took its record over (connector.desktops.drain)

    @property
    def frame_kind(self) -> str:  # type: ignore[override]
        return "socketio+offset" if settings.SOCKETIO_RECOVERY_SECONDS else "socketio"

    # --- the WebSocket, as the Engine.IO session's transport ---------------------------

    async def connect(self) -> None:
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        if query.get("EIO") != ["4"] or query.get("transport") != ["websocket"]:
            # Only Engine.IO 4 clients on the websocket transport.
            await self.close()
            return
        if "sid" in query:
            await self._start_upgrade(query["sid"][0])
            return
        await self.accept()
        self.engineio = EngineIOSession(self, on_message=self._on_message)
        self.socketio = SocketIOServer(self.engineio, self)
        await self.engineio.open()

    def starts_a_session(self) -> bool:
        """An upgrade (``sid`` given) continues a long-polling session, whose handshake counted already."""
        return "sid" not in parse_qs(self.scope.get("query_string", b"").decode("latin-1"))

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self.engineio is not None:
                self.engineio.stop()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.engineio is not None:
            await self.engineio.receive(text_data)
        elif self._upgrading is not None:
            await self._upgrade_step(text_data)

    # --- upgrading a long-polling session (connector.desktops.polling) to this WebSocket -----------

    async def _start_upgrade(self, sid: str) -> None:
        """Accept the WebSocket of a live long-polling session that no other WebSocket is upgrading; it has
        ``polling_store.upgrade_lifetime()`` to complete the upgrade. Nothing is sent before the probe. Refused
        (403) otherwise: the session is gone, upgraded already or being upgraded, as the JavaScript server
        closes such a WebSocket (lib/server.ts, onWebSocket)."""
        try:
            claimed = await polling_store.claim_upgrade(sid, self._upgrade_token)
        except Exception as error:
            logger.warning("Could not look up a long-polling session: %s: %s", type(error).__name__, error)
            claimed = False
        if not claimed:
            await self.close()
            return
        self._upgrading = sid
        await self.accept()
        self._upgrade_timer = asyncio.get_running_loop().call_later(
            polling_store.upgrade_lifetime(), self._upgrade_time_up)

    def _upgrade_time_up(self) -> None:
        if self._upgrading is not None:
            # As the JavaScript server's upgradeTimeout (lib/socket.ts, "client did not complete upgrade").
            logger.info("Closing a WebSocket that did not complete its upgrade in time")
            self._upgrade_timeout = asyncio.ensure_future(self.close(code=close_codes.NORMAL))

    async def _upgrade_step(self, frame: str | None) -> None:
        """``2probe``: answer ``3probe`` and end the pending poll with a noop; ``5``: take the session over."""
        assert self._upgrading is not None
        if frame == packets.ping_frame() + packets.PROBE:
            if await polling_store.start_upgrade(self._upgrading, self._upgrade_token):
                await self.send(packets.pong_probe_frame())
                return
        elif frame == str(packets.UPGRADE):
            state = await polling_store.adopt(self._upgrading, self._upgrade_token)
            if state is not None:
                await self._adopt(state)
                return
        else:
            logger.info("Refusing a WebSocket upgrade: expected the probe or the upgrade packet")
        await self.close(code=close_codes.PROTOCOL_ERROR)

    async def _adopt(self, state: polling_store.PollingState) -> None:
        """Continue the long-polling session ``state`` here: its identity, namespace, conversations and
        positions, so that nothing it was sent over polling is sent again and nothing after is missed."""
        sid, self._upgrading = self._upgrading, None
        self._stop_upgrade_timer()
        self.engineio = EngineIOSession(self, on_message=self._on_message, sid=sid)
        self.socketio = SocketIOServer(self.engineio, self, connected=state.connected)
        self.engineio.start_heartbeat()
        for frame in state.pending:
            await self.send(frame)
        if state.identity is None:
            return
        self.sign_in(state.identity)
        try:
            if state.pid is not None:
                self.session = await sessions.load(state.pid)
            self.delivered_before(state.joined)
            self._offsets = SentOffsets(state.joined)
            replay = await self.restore_conversations(state.joined)
        except (EventsUnavailable, MembershipError):
            raise
        except Exception as error:
            raise await self.unavailable(error) from None
        if not replay.complete:
            # What a poll does: end the session rather than pass what is left off as the whole stream. The
            # client reconnects; its recovery finds the same gap and gives it a new session (recovered false).
            logger.info("Closing an upgraded session: the history no longer reaches back to its position")
            self.send_replay(None)
            await self.leave_all_conversations()
            await self.engineio.close()
            return
        self.send_replay(replay)

    async def send_frame(self, frame: str) -> None:
        await self.send(frame)

    async def close_transport(self, code: int, reason: str | None = None) -> None:
        await self.close(code=code, reason=reason)

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
            recoverable = await application.recoverable(identity, auth)
            if recoverable is not None and await self._recover(*recoverable):
                return {"pid": self.session.pid}
            self.session = await application.start_session(identity, auth)
        except (EventsUnavailable, MembershipError):
            raise
        except Exception as error:
            raise await self.unavailable(error) from None
        return {"pid": self.session.pid}

    async def _recover(self, session: sessions.Session, since: dict[str, Offset]) -> bool:
        """Restore ``session`` from the positions ``since``; False (and nothing restored) when it cannot be whole."""
        replay = await self.restore_conversations(since)
        if not replay.complete:
            logger.info("Session could not be recovered: the history no longer reaches back to its offset")
            self.send_replay(None)
            await self.leave_all_conversations()
            return False
        self.session, self._replay = session, replay
        self._offsets = SentOffsets(since)
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

    def _stop_upgrade_timer(self) -> None:
        if self._upgrade_timer is not None:
            self._upgrade_timer.cancel()
            self._upgrade_timer = None

    async def connection_ended(self) -> None:
        self._stop_upgrade_timer()
        if self._upgrading is not None:
            try:
                await polling_store.abandon_upgrade(self._upgrading, self._upgrade_token)
            except Exception as error:
                logger.warning("Could not resume a long-polling session: %s: %s", type(error).__name__, error)
        if self.session is not None and not self.recovery_window_started:
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
        after, history = application.join_request(options)
        try:
            if after is None and not history and self.session is not None:
                after = await self._join_start(name)
            joined = await self.join_conversation(name, after=after, history=history)
        except MembershipError as error:
            return [False, str(error)]
        try:
            await self._record_join(joined.conversation, joined.replay)
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
        self._offsets.vector.forget(conversation)
        if self.session is not None and self.session.joined.pop(conversation, None) is not None:
            await self._save_session()
        return [True, conversation]

    async def _join_start(self, name: Any) -> Offset | None:
        """Where this session's join of ``name`` without options starts: ``application.join_start``, else the
        conversation's current end, taken before subscribing (None: already joined, or refused).

        The join then replays what came after that position: an event appended while the join subscribes is
        sent once, live or replayed (the replay and the live events are de-duplicated by seq), and it is after
        the position the session records. A position taken after subscribing could be past an event that went
        out live and was lost on the way (a recovery resumes after it), or behind one already sent without
        the conversation in its offset (a recovery sends it again)."""
        try:
            conversation = membership.normalise(name)
        except MembershipError:
            return None  # the join refuses it
        if conversation in self.joined:
            return None
        membership.check_room(self.joined)  # a join refused for its bounds takes no position
        self.join_rate.check()
        try:
            position = await get_history().position(conversation)
        except Exception as error:
            logger.warning("Could not join a conversation: %s: %s", type(error).__name__, error)
            raise MembershipError(UNAVAILABLE_MESSAGE) from None
        return application.join_start(self.session, conversation, position) or position

    async def _record_join(self, conversation: str, replay: Replay | None) -> None:
        """Note where the join of ``conversation`` starts (where its ``replay`` was read from in the current
        epoch; without one, the current end) in the session record and in the offsets sent from now on."""
        if self.session is None or conversation in self.session.joined:
            return
        try:
            start = replay.starts.get(conversation) if replay is not None else None
            if start is None or not start.epoch:  # the conversation had no sequence yet: the position makes it
                position = await get_history().position(conversation)
                start = Offset(position.epoch, position.seq if start is None else start.seq)
            self.session.join(conversation, start)
            self._offsets.vector.set(conversation, start)
            await self._save_session()
        except Exception as error:
            self.session.joined.pop(conversation, None)
            await self.leave_conversation(conversation)
            logger.warning("Could not record a join in the session: %s: %s", type(error).__name__, error)
            raise MembershipError(UNAVAILABLE_MESSAGE) from None

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
        return application.event_frame(event)

    def replayed_frame(self, event: Event) -> str:
        return self._offsets.frame(event)

    def live_frame(self, event: Event, shared: str) -> str:
        return self._offsets.frame(event, shared)

    async def send_stream(self, kind: str, message: dict[str, Any]) -> None:
        if self.socketio is not None and self.socketio.connected and kind in STREAM_EVENTS:
            await self.socketio.emit(STREAM_EVENTS[kind], message)
