"""What the desktop's Socket.IO application decides the same way on either transport.

The websocket consumer (``connector.socketio.consumer``) holds its desktop in
process; a long-polling session (``connector.polling``) keeps it in Redis
between requests. Both name the same events, read a join's options, start
and recover connection-state-recovery sessions (``connector.sessions``) and
frame conversation events with these functions.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from connector import sessions, tokens
from connector.socketio import protocol
from events.history import Event, Offset, get_history

JOIN_EVENT = "join-conversation"
LEAVE_EVENT = "leave-conversation"
UNAUTHENTICATED_EVENT = "unauthenticated"
STREAM_REQUEST_EVENT, END_STREAM_EVENT = "stream-request", "end-stream"
# Stream messages (connector.streaming.streams) as the sample emits them; a clean upstream end emits nothing.
STREAM_EVENTS = {"data": "stream-data", "error": "stream-error"}


def join_request(options: Any) -> tuple[Offset | None, bool]:
    """A ``join-conversation``'s options: the offset to replay after (``{"after": offset}``), and whether to
    replay the whole stored history (``{"history": true}``, or ``SOCKETIO_JOIN_HISTORY=all``)."""
    options = options if isinstance(options, dict) else {}
    after = Offset.parse(options.get("after")) if "after" in options else None
    history = options.get("history", settings.SOCKETIO_JOIN_HISTORY == "all") is True and after is None
    return after, history


async def start_session(identity: tokens.DesktopIdentity) -> sessions.Session:
    """A new recovery session for ``identity``, beginning at the history's current end, saved."""
    position = await get_history().position()
    session = sessions.Session(
        pid=sessions.new_pid(), user=identity.user, project=identity.project, epoch=position.epoch,
        since=position.seq,
    )
    await sessions.save(session, ttl=sessions.connected_ttl())
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


def event_frame(event: Event) -> str:
    """``event`` as an Engine.IO MESSAGE frame, with its offset as the trailing argument when recovery is on."""
    offset = event.offset if settings.SOCKETIO_RECOVERY_SECONDS else None
    return "4" + protocol.event_with_json_argument(event.kind, event.payload_json, offset)
