"""The desktop's Socket.IO application for one long-polling POST, over the session's state in Redis.

The same decisions as the websocket consumer (``connector.desktops.socketio.application``
holds the shared ones): CONNECT with ``auth.token`` (and recovery with
``auth.pid`` / ``auth.offset``), ``join-conversation`` and
``leave-conversation`` acknowledged alike. Instead of subscribing, a join
records where the session's events begin (the history's current end, or
where its replay starts); the GETs read the history from there. The POST's
outcome (fields to set, conversations left, packets for the next GET) is
written in one step by ``connector.desktops.engineio.store.commit``.

Streaming calls hold an open upstream call in one process, which a session
spread over processes cannot: they are refused over long-polling, with a
reason that names the websocket transport.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings

from connector import tokens
from connector.desktops import membership, sessions
from connector.desktops.engineio import packets
from connector.desktops.engineio.store import JOINED_PREFIX, PollingState, identity_field
from connector.desktops.membership import UNAVAILABLE_MESSAGE, MembershipError
from connector.desktops.socketio import application
from connector.desktops.socketio.application import (
    END_STREAM_EVENT,
    JOIN_EVENT,
    LEAVE_EVENT,
    STREAM_REQUEST_EVENT,
    UNAUTHENTICATED_EVENT,
)
from connector.desktops.socketio.server import ConnectRefused, EventHandler, SocketIOServer
from events.history import Offset, get_history

logger = logging.getLogger(__name__)

STREAMS_NEED_WEBSOCKET = "streaming calls need the websocket transport"


class PostOutcome:
    """What a POST changed, for ``store.commit``; also the Engine.IO layer under the Socket.IO server."""

    def __init__(self) -> None:
        self.sets: dict[str, str] = {}
        self.deletes: list[str] = []
        self.packets: list[str] = []
        self.size = 0  # the packets' characters (at most their bytes)
        self.close = False  # the session ends (a CLOSE packet, or a packet breaking the protocol)

    def set(self, **fields: str) -> None:
        for name, value in fields.items():
            self.sets[name] = value
            if name in self.deletes:
                self.deletes.remove(name)

    def delete(self, name: str) -> None:
        self.sets.pop(name, None)
        if name not in self.deletes:
            self.deletes.append(name)

    def queue(self, frame: str) -> None:
        """``frame`` for the session's next GET."""
        self.packets.append(frame)
        self.size += len(frame)

    @property
    def over_budget(self) -> bool:
        """This POST's packets alone pass the session's out-queue budget: running the rest of its packets is
        wasted work (``store.commit`` closes the session whatever they add)."""
        return (len(self.packets) > settings.SOCKETIO_POLLING_QUEUE_LIMIT
                or self.size > settings.SOCKETIO_POLLING_QUEUE_BYTES)

    async def send_message(self, payload: str) -> None:
        self.queue(packets.message_frame(payload))

    async def refuse(self, why: str) -> None:
        logger.info("Closing a long-polling session: %s", why)
        self.close = True


class PollingDesktop:
    """The Socket.IO application of one POST; ``state`` is the session as loaded, ``outcome`` collects changes."""

    def __init__(self, state: PollingState, outcome: PostOutcome) -> None:
        self.state = state
        self.outcome = outcome
        self.socketio = SocketIOServer(outcome, self, connected=state.connected)
        self._record: sessions.Session | None = None

    async def socketio_connect(self, auth: Any) -> dict[str, Any] | None:
        auth = auth if isinstance(auth, dict) else {}
        try:
            identity = tokens.validate_token(auth.get("token") if isinstance(auth.get("token"), str) else None)
        except tokens.InvalidToken as error:
            await self.socketio.emit(UNAUTHENTICATED_EVENT)
            raise ConnectRefused(str(error)) from None
        try:
            extra = await self._begin(identity, auth)
        except Exception as error:
            logger.warning("Could not connect a long-polling session: %s: %s", type(error).__name__, error)
            raise ConnectRefused(UNAVAILABLE_MESSAGE) from None
        self.state.identity = identity
        self.outcome.set(identity=identity_field(identity), connected="1")
        return extra

    async def _begin(self, identity: tokens.DesktopIdentity, auth: dict[str, Any]) -> dict[str, Any]:
        """Start (or recover) the session's conversations and positions."""
        if not settings.SOCKETIO_RECOVERY_SECONDS:
            return {}
        recoverable = await application.recoverable(identity, auth)
        if recoverable is not None:
            session, resume = recoverable
            # Whether the history still reaches back there; its state tells, no event need be read (the GETs
            # read them, within the process's replay budget).
            if (await get_history().read_page(resume, max_events=0, max_bytes=0)).complete:
                self._record = session
                self.outcome.set(**{JOINED_PREFIX + name: str(at) for name, at in resume.items()})
                self.outcome.set(pid=session.pid)
                self.state.joined.update(resume)
                await sessions.save(session, ttl=sessions.connected_ttl())
                return {"pid": session.pid}
            logger.info("Session could not be recovered: the history no longer reaches back to its offset")
        self._record = await application.start_session(identity, auth)
        self.outcome.set(pid=self._record.pid)
        return {"pid": self._record.pid}

    async def socketio_connected(self) -> None:
        """Nothing to send now: the next GET reads the session's conversations from its positions."""

    async def socketio_disconnect(self) -> None:
        """The client left ``/`` on purpose: forget its conversations; its session cannot be recovered."""
        self.outcome.set(connected="0")
        for name in ["pid", *(JOINED_PREFIX + conversation for conversation in self.state.joined)]:
            self.outcome.delete(name)
        self.state.joined.clear()
        pid, self.state.pid = self.state.pid, None
        if pid is not None:
            await sessions.expire(pid, ttl=0)

    async def socketio_event_handled(self) -> None:
        """Replays need nothing here: a join's position already makes the next GET read them."""

    async def on_join(self, name: Any = None, options: Any = None, *_: Any) -> list[Any]:
        after, history = application.join_request(options)
        try:
            conversation = membership.normalise(name)
            if conversation in self.state.joined:
                return [True, conversation]
            membership.check_room(self.state.joined)
            await membership.count_session_join(self.state.sid)
        except MembershipError as error:
            return [False, str(error)]
        try:
            position = await get_history().position(conversation)
            record = await self._session_record()
            if after is None and not history:
                after = application.join_start(record, conversation, position)
            # Where the GETs read from: the current end, or a replay's start in the current epoch (one of the
            # epoch it continues reads on from there, one of an epoch Redis lost from its start).
            since = position
            if history or after is not None:
                since = Offset(position.epoch, 0 if history else after.seq)
                if not history and after.epoch != position.epoch:
                    read = await get_history().read_page({conversation: after}, max_events=0, max_bytes=0)
                    since = read.starts[conversation] if read.starts[conversation].epoch else since
            if record is not None:
                record.join(conversation, since)
                await sessions.save(record, ttl=sessions.connected_ttl())
        except Exception as error:
            logger.warning("Could not join a conversation: %s: %s", type(error).__name__, error)
            return [False, UNAVAILABLE_MESSAGE]
        self.state.joined[conversation] = since
        self.outcome.set(**{JOINED_PREFIX + conversation: str(since)})
        return [True, conversation]

    async def on_leave(self, name: Any = None, *_: Any) -> list[Any]:
        try:
            conversation = membership.normalise(name)
        except MembershipError as error:
            return [False, str(error)]
        if self.state.joined.pop(conversation, None) is not None:
            self.outcome.delete(JOINED_PREFIX + conversation)
            record = await self._session_record()
            if record is not None and record.joined.pop(conversation, None) is not None:
                try:
                    await sessions.save(record, ttl=sessions.connected_ttl())
                except Exception as error:
                    logger.warning("Could not save a session record: %s: %s", type(error).__name__, error)
        return [True, conversation]

    async def on_stream(self, *_: Any) -> list[Any]:
        return [False, STREAMS_NEED_WEBSOCKET]

    socketio_handlers: dict[str, EventHandler] = {
        JOIN_EVENT: on_join,
        LEAVE_EVENT: on_leave,
        STREAM_REQUEST_EVENT: on_stream,
        END_STREAM_EVENT: on_stream,
    }

    async def _session_record(self) -> sessions.Session | None:
        if self._record is None and self.state.pid is not None and settings.SOCKETIO_RECOVERY_SECONDS:
            self._record = await sessions.load(self.state.pid)
        return self._record
