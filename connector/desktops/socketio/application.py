"""What the desktop's Socket.IO application decides the same way on either transport.

The websocket consumer (``connector.desktops.socketio.consumer``) holds its desktop in
process; a long-polling session (``connector.desktops.polling``) keeps it in Redis
between requests. Both name the same events, read a join's options, start
and recover connection-state-recovery sessions (``connector.desktops.sessions``) and
frame conversation events with these functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

from connector import tokens
from connector.desktops import sessions
from connector.desktops.socketio import protocol
from events.history import Event, Offset, get_history

JOIN_EVENT = "join-conversation"
LEAVE_EVENT = "leave-conversation"
UNAUTHENTICATED_EVENT = "unauthenticated"
STREAM_REQUEST_EVENT, END_STREAM_EVENT = "stream-request", "end-stream"
# Stream messages (connector.desktops.streaming.streams) as the sample emits them; a clean upstream end emits nothing.
STREAM_EVENTS = {"data": "stream-data", "error": "stream-error"}


def join_request(options: Any) -> tuple[Offset | None, bool]:
    """A ``join-conversation``'s options: the offset to replay after (``{"after": offset}``), and whether to
    replay the whole stored history (``{"history": true}``, or ``SOCKETIO_JOIN_HISTORY=all``)."""
    options = options if isinstance(options, dict) else {}
    after = Offset.parse(options.get("after")) if "after" in options else None
    history = options.get("history", settings.SOCKETIO_JOIN_HISTORY == "all") is True and after is None
    return after, history


async def start_session(identity: tokens.DesktopIdentity, auth: dict[str, Any] | None = None) -> sessions.Session:
    """A new recovery session for ``identity``, beginning at the history's current end, saved.

    A client that comes back (``auth.pid``) with an offset of an epoch that is no longer the current one
    had its last event before Redis lost its data: every event of the current epoch was pushed after it.
    Its session begins at the epoch's start, and its joins too (``join_start``): a conversation it joins
    again gets what was pushed since Redis came back, rather than only what comes after the join. A client
    without an offset saw nothing to resume from, and starts at the current end as any new one.
    """
    position = await get_history().position()
    given = Offset.parse(auth.get("offset")) if auth is not None and sessions.is_pid(auth.get("pid")) else None
    fresh_epoch = given is not None and given.epoch != position.epoch
    session = sessions.Session(
        pid=sessions.new_pid(), user=identity.user, project=identity.project, epoch=position.epoch,
        since=0 if fresh_epoch else position.seq, fresh_epoch=fresh_epoch,
    )
    await sessions.start(session, owner_id=sessions.owner(identity), ttl=sessions.connected_ttl())
    return session


async def recoverable(identity: tokens.DesktopIdentity, auth: dict[str, Any]) -> tuple[sessions.Session, Offset] | None:
    """The session a CONNECT's ``auth.pid`` names, when it is ``identity``'s, and the offset to resume after
    (``auth.offset``, or where the session began when the client saw no event yet)."""
    pid = auth.get("pid")
    if not sessions.is_pid(pid):
        return None
    session = await sessions.load(pid)
    if session is None or (session.user, session.project) != (identity.user, identity.project):
        return None
    given = Offset.parse(auth.get("offset"))
    return session, given if given is not None else Offset(session.epoch, session.since)


def join_start(session: sessions.Session | None, position: Offset) -> Offset | None:
    """Where a join without options starts in ``session``: None (the current end), or, in a session begun
    for a client Redis lost the epoch of (``start_session``), the start of that epoch while it is current."""
    if session is not None and session.fresh_epoch and session.epoch == position.epoch:
        return Offset(position.epoch, 0)
    return None


def event_frame(event: Event, *, offset_at_least: int = 0) -> str:
    """``event`` as an Engine.IO MESSAGE frame, with its offset (never below ``offset_at_least``) as the
    trailing argument when recovery is on."""
    offset = None
    if settings.SOCKETIO_RECOVERY_SECONDS:
        offset = event.offset if event.seq >= offset_at_least else str(Offset(event.epoch, offset_at_least))
    return "4" + protocol.event_with_json_argument(event.kind, event.payload_json, offset)


@dataclass(slots=True)
class OffsetSent:
    """The highest offset one client was sent, in the epoch of the events it was sent.

    socket.io-client keeps only the last offset it received and recovers after it, for every conversation
    of its session. A replay (a join's history) sends older events after newer ones: each of those carries
    the highest offset sent instead of its own, so that the client's offset never moves back (a recovery
    after it would send again the events in between). Such a frame is this client's own, never shared.
    """

    epoch: str = ""
    seq: int = 0

    def replayed_frame(self, event: Event) -> str:
        """``event``'s frame, its offset raised to the highest sent; counted as sent."""
        floor = self.seq if event.epoch == self.epoch else 0
        self.sent(event)
        return event_frame(event, offset_at_least=floor)

    def sent(self, event: Event) -> None:
        """``event`` went out with its own offset (a live event's shared frame)."""
        if event.epoch != self.epoch:
            self.epoch, self.seq = event.epoch, event.seq  # another epoch numbers from 1 again
        elif event.seq > self.seq:
            self.seq = event.seq
