"""What the desktop's Socket.IO application decides the same way on either transport.

The websocket consumer (``connector.desktops.socketio.consumer``) holds its desktop in
process; a long-polling session (``connector.desktops.polling``) keeps it in Redis
between requests. Both name the same events, read a join's options, start
and recover connection-state-recovery sessions (``connector.desktops.sessions``) and
frame conversation events with these functions.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from connector import tokens
from connector.desktops import offsets, sessions
from connector.desktops.socketio import protocol
from events.history import Event, Offset

JOIN_EVENT = "join-conversation"
LEAVE_EVENT = "leave-conversation"
UNAUTHENTICATED_EVENT = "unauthenticated"
STREAM_REQUEST_EVENT, END_STREAM_EVENT = "stream-request", "end-stream"
# Stream messages (connector.desktops.streaming.streams) as the sample emits them; a clean upstream end emits nothing.
STREAM_EVENTS = {"data": "stream-data", "error": "stream-error"}


def join_request(options: Any) -> tuple[Offset | None, bool]:
    """A ``join-conversation``'s options: the offset to replay after (``{"after": offset}``, an offset of that
    conversation: ``epoch-seq``), and whether to
    replay the whole stored history (``{"history": true}``, or ``SOCKETIO_JOIN_HISTORY=all``)."""
    options = options if isinstance(options, dict) else {}
    after = Offset.parse(options.get("after")) if "after" in options else None
    history = options.get("history", settings.SOCKETIO_JOIN_HISTORY == "all") is True and after is None
    return after, history


async def start_session(identity: tokens.DesktopIdentity, auth: dict[str, Any] | None = None) -> sessions.Session:
    """A new recovery session for ``identity``, saved; its joins start at each conversation's current end.

    A client that comes back (``auth.pid``) with an offset it cannot resume from may have had its last events
    of some conversation before that conversation's epoch changed: every event of the current epoch was pushed
    after them, but for the start it took over from the epoch before (a failover: ``events.history``). The
    session notes the position the offset names for each conversation, and a join of one now in another epoch
    starts there (``join_start``; the replay reads on in the current epoch, or from its start when Redis lost
    that epoch) rather than only after the join; with an offset of the sequence all conversations once shared,
    every join starts at its epoch's start. A client without an offset saw nothing to resume from, and starts
    at the current end as any new one.
    """
    given = offsets.parse(auth.get("offset")) if auth is not None and sessions.is_pid(auth.get("pid")) else None
    session = sessions.Session(
        pid=sessions.new_pid(sessions.owner(identity)), user=identity.user, project=identity.project,
        fresh_epoch=given is not None and given.old,
        stale={digest: str(at) for digest, at in given.positions.items()} if given is not None else {},
    )
    await sessions.start(session, owner_id=sessions.owner(identity), ttl=sessions.connected_ttl())
    return session


async def recoverable(identity: tokens.DesktopIdentity,
                      auth: dict[str, Any]) -> tuple[sessions.Session, dict[str, Offset]] | None:
    """The session a CONNECT's ``auth.pid`` names, when it is ``identity``'s and ``auth.offset`` is one this
    server sent, and per conversation of the session the position to resume after: the offset's, or where the
    join started when the offset does not name the conversation (or there is no offset: the client saw no
    event yet). None for anything else: an offset malformed, too long, naming two conversations alike, or of the
    sequence all conversations once shared, is not resumed from."""
    pid = auth.get("pid")
    if not sessions.is_pid(pid):
        return None
    session = await sessions.load(pid)
    if session is None or (session.user, session.project) != (identity.user, identity.project):
        return None
    reached: dict[str, Offset] = {}
    if auth.get("offset") is not None:
        given = offsets.parse(auth.get("offset"))
        if given is None or given.old:
            return None
        found = offsets.resolve(given, session.joined)
        if found is None:
            return None
        reached = found
    since = {}
    for conversation in session.joined:
        start, at = session.joined_at(conversation), reached.get(conversation)
        if at is None:
            since[conversation] = start
        elif at.epoch == start.epoch:
            since[conversation] = Offset(at.epoch, max(at.seq, start.seq))
        else:
            since[conversation] = at  # the conversation's epoch changed while the client was in it
    return session, since


def join_start(session: sessions.Session | None, conversation: str, position: Offset) -> Offset | None:
    """Where a join without options of ``conversation`` (now at ``position``) starts in ``session``: None (the
    current end); in a session begun for a client whose offset names another epoch of it (``start_session``),
    that offset (a replay from it reads on in the current epoch, or from its start); for a client whose offset
    was of the sequence all conversations once shared, the current epoch's start."""
    if session is None:
        return None
    if session.fresh_epoch:
        return Offset(position.epoch, 0)
    given = session.stale_position(offsets.digest(conversation))
    if given is not None and given.epoch != position.epoch:
        return given
    return None


def event_frame(event: Event) -> str:
    """What every desktop's frame of ``event`` shares: the whole Engine.IO MESSAGE frame, or with recovery on,
    the frame up to its trailing offset (each socket's own: ``SentOffsets.frame``)."""
    if settings.SOCKETIO_RECOVERY_SECONDS:
        return f'42["{event.kind}",{event.payload_json},"'
    return "4" + protocol.event_with_json_argument(event.kind, event.payload_json)


class SentOffsets:
    """Where one client is in each of its conversations, as the offsets of the frames it was sent say.

    socket.io-client keeps only the last offset it received and recovers after it, for every conversation of
    its session: each frame carries this client's whole vector (``connector.desktops.offsets``), with the frame's
    own event counted. Per conversation, a position never moves back (but to another epoch).
    """

    def __init__(self, positions: dict[str, Offset] | None = None) -> None:
        self.vector = offsets.Vector(positions)

    def frame(self, event: Event, shared: str | None = None) -> str:
        """``event``'s frame for this client (``shared``: ``event_frame(event)``, made once for every client),
        counted as sent."""
        shared = shared if shared is not None else event_frame(event)
        if not settings.SOCKETIO_RECOVERY_SECONDS:
            return shared
        self.vector.sent(event)
        return f'{shared}{self.vector.encoded()}"]'
