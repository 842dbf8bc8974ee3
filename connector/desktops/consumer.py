"""What every desktop connection shares, whichever protocol it speaks (Socket.IO or plain ``/ws/``).

``DesktopConsumer`` owns the desktop's identity, the authentication deadline,
joining and leaving conversations (through this process's ``connector.desktops.fanout``
hub, by the rules of ``connector.desktops.membership``), replaying history, and
relaying conversation events in order, each exactly once; the protocol
consumers only translate frames.

- A connection holds nothing in Redis: the process subscribes once per
  conversation (the hub), whatever the number of its desktops in it. A
  process keeps at most ``WEBSOCKET_MAX_UNAUTHENTICATED`` unauthenticated
  connections open, and a client address at most its share of them across
  instances (``connector.desktops.preauth``); its handshakes count against
  ``HANDSHAKE_RATE_LIMIT``.
- However the connection ends (a close by either side, an error, a timeout,
  a cancelled task), ``__call__``'s ``finally`` leaves every conversation.
- Events go out through a queue drained by one task, so a slow desktop never
  holds up the others (the server's send waits while the desktop's TCP window
  is full). One whose queue of live events reaches ``WEBSOCKET_SEND_QUEUE_LIMIT``
  events or ``WEBSOCKET_SEND_QUEUE_BYTES`` (characters of their frames) is
  disconnected (4429) and can recover what it missed.
- A replay (a join's history, a recovery) is read from Redis a page at a time
  (``REPLAY_PAGE_EVENTS`` / ``REPLAY_PAGE_BYTES``, and no more than the room
  the live queue's bounds leave), the next page only once the last is sent:
  a desktop that stops reading holds one page, whatever the history's size.
  The join (or recovery) itself reads only where the replay starts, whether it
  is whole and how many events it holds; every page is read by the sender,
  within the process's replay budget (``connector.desktops.replay_budget``):
  a page waits its turn there without holding up the desktop's frames (its
  pongs, its next join) or anyone else's events, and what it reserved goes
  back as its events are written. While the replay lasts, live events of the
  replayed conversations are kept back during each page's read and otherwise
  (waiting for the budget too) left to the next page, which reads them from
  the history; those of other conversations are kept back, in the live
  queue's bounds (past them: 4429, as live). After the last page they follow,
  in order.
- Each event carries its offset in its conversation; a desktop drops any
  event of a conversation at or below the last one it sent of that
  conversation (in the same epoch), so a replay that overlaps live delivery
  repeats nothing. A replay of several conversations sends them one after
  the other (``events.history.RedisHistory.read_page``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from connector import ratelimit, tokens
from connector.desktops import close_codes, instances, membership, preauth, replay_budget
from connector.desktops.fanout import get_hub
from connector.desktops.membership import MembershipError
from connector.desktops.streaming.streams import StreamRegistry
from events import metrics
from events.history import Event, Offset, Replay, get_history

logger = logging.getLogger(__name__)

# At most one warning per this many seconds while handshakes are refused for the bound.
REFUSAL_LOG_INTERVAL_SECONDS = 60.0


#: A replayed frame has ``REPLAY_STALL_SECONDS`` for each this many of its characters (the server's WebSocket write
#: buffer, websockets' ``write_limit``): a big event read steadily over a slow link is not a desktop that stopped.
STALL_CHARACTERS = 2**16


def stall_seconds(frame: str) -> float:
    """How long the desktop may take to read ``frame``, a replayed event, before it is taken for stalled."""
    return settings.REPLAY_STALL_SECONDS * max(1, math.ceil(len(frame) / STALL_CHARACTERS))


class EventsUnavailable(Exception):
    """Redis could not be reached to set the connection up; the connection has been closed (4503)."""


class _Unauthenticated:
    """This process's count of open connections that have not authenticated yet."""

    def __init__(self) -> None:
        self.count = 0
        self._last_refusal_logged = -REFUSAL_LOG_INTERVAL_SECONDS

    def admit(self) -> bool:
        """Count one more, or return False (logging at most once a minute) when the bound is reached."""
        if self.count >= settings.WEBSOCKET_MAX_UNAUTHENTICATED:
            now = time.monotonic()
            if now - self._last_refusal_logged >= REFUSAL_LOG_INTERVAL_SECONDS:
                self._last_refusal_logged = now
                logger.warning(
                    "Refusing WebSocket handshakes: %s connections have not authenticated yet "
                    "(WEBSOCKET_MAX_UNAUTHENTICATED)",
                    self.count,
                )
            return False
        self.count += 1
        return True


UNAUTHENTICATED = _Unauthenticated()


@dataclass(slots=True)
class _Paging:
    """A replay that goes on past its sent pages: where each conversation is read up to."""

    since: dict[str, Offset]
    # A page's read is in flight: live events of these conversations are kept back. Not while the page waits for
    # the process's replay budget: the read, once it starts, finds them in the history.
    reading: bool = False
    # Conversations whose replay reads whatever the history keeps (a join's whole history, or a replay already
    # known to be incomplete), until their first events are read: the history trimmed meanwhile loses them nothing.
    from_oldest_kept: set[str] = field(default_factory=set)


def page_bounds(events_queued: int, characters_queued: int) -> tuple[int, int]:
    """A replay page's most events and bytes: ``REPLAY_PAGE_*``, within the room the live queue's bounds leave
    (at least one event, which a page takes however big)."""
    return (max(1, min(settings.REPLAY_PAGE_EVENTS, settings.WEBSOCKET_SEND_QUEUE_LIMIT - events_queued)),
            max(1, min(settings.REPLAY_PAGE_BYTES, settings.WEBSOCKET_SEND_QUEUE_BYTES - characters_queued)))


@dataclass(frozen=True, slots=True)
class Joined:
    """A join's outcome: the normalised name and, when the join asked for one, the replay to send after the answer."""

    conversation: str
    replay: Replay | None = None


class DesktopConsumer(AsyncWebsocketConsumer):
    """A desktop's connection: authenticate once, join and leave conversations, receive their events.

    Subclasses implement ``frame_event`` (an event in their protocol's
    framing) and may override ``authentication_deadline_passed``.
    """

    #: Key under which ``frame_event``'s frame is cached on the event, shared by every desktop of the protocol.
    frame_kind = "desktop"
    #: The transport's label in metrics and in the operators' live view (``connector.desktops.instances``).
    transport = "websocket"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.identity: tokens.DesktopIdentity | None = None
        self.joined: set[str] = set()  # normalised conversation names
        self.join_rate = membership.JoinRate()
        self._counted_unauthenticated = False
        self._preauth_hold: preauth.Hold | None = None  # counted against its address until it authenticates
        self._deadline: asyncio.TimerHandle | None = None
        self._deadline_task: asyncio.Task | None = None
        self._expiry: asyncio.TimerHandle | None = None
        # Per conversation, the last event queued (its epoch and sequence number).
        self._sent: dict[str, Offset] = {}
        self._replaying: deque[Event] = deque()  # a replay's page, framed as sent, before the live ones
        self._replaying_size = 0  # the characters of its kinds and payloads
        self._paging: _Paging | None = None  # a replay with pages still to read
        self._starting: dict[str, Offset] | None = None  # a first page's positions, until sent
        # Live events and their frames (each frame shared by the process's desktops).
        self._outbox: deque[tuple[Event, str]] = deque()
        self._outbox_size = 0  # their characters
        self._sender: asyncio.Task | None = None
        self._closing: asyncio.Task | None = None  # the close of a desktop too far behind
        self._held: list[Event] | None = None  # live events kept back while a replay is read and sent
        self._held_size = 0  # the characters of their payloads
        # What the replay's pages read and not yet written hold of the process's replay budget.
        self._replay_reserved: replay_budget.Reservation | None = None
        self.streams: StreamRegistry | None = None  # made by the first stream request

    # --- the consumer's life --------------------------------------------------------------

    async def __call__(self, scope, receive, send) -> None:
        """Channels' ``AsyncConsumer.__call__`` without a channel of its own; ``finally`` releases the connection.

        Events reach the connection through the hub, not through a channel-layer
        channel (which, on the Redis layers, would be one Redis subscription per connection). With the one
        source of messages left, the server's ``receive``, it is awaited directly: Channels'
        ``await_many_dispatch`` made a task and an ``asyncio.wait`` for every frame, pongs included (about
        7 of 10 microseconds per frame, measured in isolation; 15% of an idle connector's CPU at 10,000
        desktops).
        """
        self.scope = scope
        self.channel_layer = None
        self.channel_name = None
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except (StopConsumer, EventsUnavailable):
            pass  # EventsUnavailable: closed (4503) already; escaping, it would be logged with a traceback
        finally:
            await self._release()

    async def dispatch(self, message: dict) -> None:
        """Channels' dispatch, without its per-message database clean-up: consumers never touch the ORM,
        and that clean-up is a thread hop for every frame (pings included)."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_connect(self, message: dict) -> None:
        """Refuse the handshake (before accepting: the server answers 403) when its address is over
        ``HANDSHAKE_RATE_LIMIT`` or holds its share of unauthenticated connections, or when this process holds
        too many unauthenticated connections."""
        address = ratelimit.scope_client_address(self.scope)
        if self.starts_a_session() and await preauth.handshake_refused(address) is not None:
            await self.close()
            return
        if not UNAUTHENTICATED.admit():
            await self.close()
            return
        self._counted_unauthenticated = True
        hold = await preauth.HOLDS.take(address, lifetime=settings.WEBSOCKET_AUTH_TIMEOUT)
        if not isinstance(hold, preauth.Hold):
            self._stop_counting_unauthenticated()
            await self.close()
            return
        self._preauth_hold = hold
        self._deadline = asyncio.get_running_loop().call_later(
            settings.WEBSOCKET_AUTH_TIMEOUT, self._start_deadline_task
        )
        await super().websocket_connect(message)

    async def _release(self) -> None:
        # Out of Redis when the connection is gone, not a moment later: the address may connect again at once.
        hold, self._preauth_hold = self._preauth_hold, None
        try:
            self._stop_counting_unauthenticated()
            self._stop_sending()
            instances.get_registry().disconnected(self)
            for pending in (self._deadline, self._deadline_task, self._expiry):
                if pending is not None:
                    pending.cancel()
            await self.connection_ended()
            await self.sign_out()
            await self.release_resources()
        finally:
            if hold is not None:
                await preauth.HOLDS.release_now(hold)

    async def release_resources(self) -> None:
        """Close what the connection holds besides its conversations: its open streams, upstream too."""
        if self.streams is not None:
            await self.streams.close_all()

    async def connection_ended(self) -> None:
        """The connection is over (however it ended), before its conversations are left."""

    def starts_a_session(self) -> bool:
        """Whether this handshake starts a new session, and so counts against ``HANDSHAKE_RATE_LIMIT``."""
        return True

    def _stop_counting_unauthenticated(self) -> None:
        if self._counted_unauthenticated:
            self._counted_unauthenticated = False
            UNAUTHENTICATED.count -= 1
        if self._preauth_hold is not None:
            preauth.HOLDS.release(self._preauth_hold)
            self._preauth_hold = None

    # --- authentication -------------------------------------------------------------------

    async def authenticate(self, raw_token: object) -> tokens.DesktopIdentity:
        """Accept ``raw_token`` as this connection's identity, or raise ``tokens.InvalidToken``."""
        identity = tokens.validate_token(raw_token if isinstance(raw_token, str) else None)
        self.sign_in(identity)
        return identity

    def sign_in(self, identity: tokens.DesktopIdentity) -> None:
        """Take ``identity`` (validated already: ``authenticate``, or a session upgraded from long-polling)."""
        self.identity = identity
        instances.get_registry().connected(self, identity.user)
        self._stop_counting_unauthenticated()
        if self._expiry is not None:
            self._expiry.cancel()
        if settings.WEBSOCKET_CLOSE_AT_TOKEN_EXPIRY and identity.expires_at is not None:
            self._expiry = asyncio.get_running_loop().call_later(
                max(0.0, identity.expires_at - time.time()), self._token_expired
            )

    def _token_expired(self) -> None:
        # The deadline task is done by now (the connection authenticated): it holds this close instead.
        self._deadline_task = asyncio.ensure_future(self.token_expired())

    async def token_expired(self) -> None:
        """The token this connection authenticated with has expired: close (4401), so the client comes back
        with a fresh one; a Socket.IO client recovers what came meanwhile."""
        logger.info("Closing a desktop connection: its token expired")
        await self.close(code=close_codes.UNAUTHENTICATED, reason=tokens.EXPIRED_TOKEN_MESSAGE)

    async def unavailable(self, error: BaseException) -> EventsUnavailable:
        """Close the connection (4503) because Redis failed it; the exception for the caller to raise."""
        metrics.redis_error("desktop")
        logger.warning("Closing a desktop connection, Redis failed: %s: %s", type(error).__name__, error)
        await self.close(code=close_codes.UNAVAILABLE)
        return EventsUnavailable()

    async def sign_out(self) -> None:
        """Forget the identity and leave every conversation; the connection itself stays as it is."""
        self.identity = None
        try:
            await self.leave_all_conversations()
        except Exception as error:
            # Redis down, say: the memberships are forgotten here all the same.
            logger.error("Could not leave a connection's conversations: %s: %s", type(error).__name__, error)

    def _start_deadline_task(self) -> None:
        if self.identity is None:
            self._deadline_task = asyncio.ensure_future(self.authentication_deadline_passed())

    async def authentication_deadline_passed(self) -> None:
        """``WEBSOCKET_AUTH_TIMEOUT`` passed without a valid token: close the connection."""
        await self.close(code=close_codes.UNAUTHENTICATED)

    # --- conversations --------------------------------------------------------------------

    async def join_conversation(self, name: object, *, after: Offset | None = None, history: bool = False) -> Joined:
        """Join ``name`` (either accepted form). With ``history``, the join's replay is every stored event of
        the conversation; with ``after``, every one after that offset. Send the answer, then ``send_replay``."""
        normalised = membership.normalise(name)
        wants_replay = history or after is not None
        if wants_replay:
            self._hold()
        try:
            await self._subscribe(normalised)
            replay = None
            if wants_replay:
                since = Offset("", 0) if history or after is None else after
                replay = await self._first_page({normalised: since})
        except MembershipError:
            self.send_replay(None)
            raise
        except Exception as error:
            self.send_replay(None)
            logger.warning("Could not join a conversation: %s: %s", type(error).__name__, error)
            raise MembershipError(membership.UNAVAILABLE_MESSAGE) from None
        return Joined(normalised, replay)

    async def restore_conversations(self, since: dict[str, Offset]) -> Replay:
        """Rejoin the conversations of ``since`` for a recovering session; the replay holds every event after
        each one's position. Send it with ``send_replay``."""
        self._hold()
        try:
            for conversation in since:
                await self._subscribe(conversation, counted=False)
            return await self._first_page(since)
        except BaseException:
            self.send_replay(None)
            raise

    #: Whether a replay's first page counts the events of the whole replay (``Replay.total``).
    count_replays = False

    async def _first_page(self, since: dict[str, Offset]) -> Replay:
        """Where a replay starts, whether it is whole (and, with ``count_replays``, how many events it holds), read
        without its events: ``send_replay`` has the sender read them, a page at a time within the process's
        replay budget, so that the join's answer (and the desktop's next frames) never wait for that budget."""
        self._starting = dict(since)
        return await get_history().read_page(since, max_events=0, max_bytes=0, count=self.count_replays)

    async def _subscribe(self, normalised: str, *, counted: bool = True) -> None:
        """Subscribe to ``normalised``, within the connection's bounds (``counted``: a join the client asked for
        now, not the rejoin of a recovered session's conversations)."""
        if normalised in self.joined:
            return
        membership.check_room(self.joined)
        if counted:
            self.join_rate.take()
        self.joined.add(normalised)  # before the await: a close meanwhile must still leave it
        try:
            await get_hub().join(normalised, self)
        except BaseException:
            self.joined.discard(normalised)
            raise

    async def leave_conversation(self, name: object) -> str:
        """Leave ``name``; leaving a conversation not joined is not an error."""
        normalised = membership.normalise(name)
        if normalised in self.joined:
            self.joined.discard(normalised)
            self._sent.pop(normalised, None)
            if self._paging is not None:
                self._paging.since.pop(normalised, None)
            await get_hub().leave(normalised, self)
        return normalised

    async def leave_all_conversations(self) -> None:
        """Leave every joined conversation; after trying them all, raise the first failure."""
        joined, self.joined = self.joined, set()
        self._sent.clear()
        self._paging = None
        failures = []
        hub = get_hub()
        for normalised in joined:
            try:
                await hub.leave(normalised, self)
            except Exception as error:
                failures.append(error)
        if failures:
            raise failures[0]

    # --- events ---------------------------------------------------------------------------

    def event_arrived(self, event: Event) -> None:
        """An event of a joined conversation (from the hub): queue it, unless kept back for a replay."""
        if self.identity is None:
            return
        if self._held is None:
            self._queue(event)
            return
        paging = self._paging
        if paging is not None and not paging.reading and event.conversation in paging.since:
            return  # stored before the next page's read: that page reads it
        if (len(self._held) + len(self._outbox) >= settings.WEBSOCKET_SEND_QUEUE_LIMIT
                or self._held_size + self._outbox_size >= settings.WEBSOCKET_SEND_QUEUE_BYTES):
            self._too_slow()
            return
        self._held.append(event)
        self._held_size += len(event.payload_json)

    def delivered_before(self, positions: dict[str, Offset]) -> None:
        """Events up to ``positions[conversation]`` reached the client another way (long-polling, before this
        upgrade): never send them again."""
        self._sent.update(positions)

    def _hold(self) -> None:
        """Keep live events back from now until this replay's ``send_replay``."""
        if self._held is None:
            self._held = []
        self._starting = {}

    def send_replay(self, replay: Replay | None) -> None:
        """Queue ``replay``'s first page; the sender reads and sends the pages after it. After the last page,
        the live events kept back meanwhile follow (those the replay did not already hold). A replay that
        starts while another is still paging joins it: their conversations' next pages are read together."""
        starting, self._starting = self._starting, None
        paging = self._paging
        if replay is None:
            if paging is None:
                self._release_held()
            return
        for event in replay.events:
            self._queue(event, replayed=True)
        if not replay.more:
            if paging is None:
                self._release_held()
            return  # else its later events wait, kept back, for the replay going on to end
        if paging is None:
            paging = self._paging = _Paging({})
        for conversation, since in (starting or {}).items():
            position, sent = replay.positions[conversation], self._sent.get(conversation)
            if sent is not None and sent.epoch == position.epoch:
                # Joined again: it goes on after what was sent already, and a trim past that is a hole.
                paging.since[conversation] = max(position, sent, key=lambda offset: offset.seq)
                paging.from_oldest_kept.discard(conversation)
                continue
            paging.since[conversation] = position
            if (not since.epoch and not since.seq) or conversation in replay.trimmed or conversation in replay.stale:
                paging.from_oldest_kept.add(conversation)
            else:  # a join of it before (left, or joined again) asked for its history: this one did not
                paging.from_oldest_kept.discard(conversation)
        self._paging_goes_on(paging)

    def _take_page(self, page: Replay, reserved: replay_budget.Reservation) -> None:
        """Queue a next ``page`` (holding ``reserved``); move the replay on past it, or end it (then release the
        live events kept back)."""
        for event in page.events:
            if not self._queue(event, replayed=True):
                reserved.give_back(replay_budget.event_size(event), 1)
        if self._replay_reserved is None:
            self._replay_reserved = reserved
        else:
            self._replay_reserved.join(reserved)
        paging = self._paging
        if paging is None:
            return
        paging.reading = False
        # Conversations whose replay started while the page was read (a join) are still to read.
        if not page.more and paging.since.keys() <= page.positions.keys():
            self._paging = None
            self._release_held()
            return
        # A conversation whose epoch changed meanwhile (Redis lost its data) was read from the new one's start.
        paging.since = {c: page.positions.get(c, after) for c, after in paging.since.items()}
        self._paging_goes_on(paging)

    def _paging_goes_on(self, paging: _Paging) -> None:
        # What was kept back of these conversations was stored before the next read: it reads it again (not
        # while a read is in flight: what it keeps back then may have been stored after the read began).
        if self._held and not paging.reading:
            kept = [event for event in self._held if event.conversation not in paging.since]
            self._held, self._held_size = kept, sum(len(event.payload_json) for event in kept)
        if self._sender is None and self.identity is not None:
            self._sender = asyncio.ensure_future(self._send_queued())

    def _release_held(self) -> None:
        if self._starting is not None:
            return  # another replay is starting: its events must not go out ahead of it
        held, self._held, self._held_size = self._held or [], None, 0
        for event in held:
            self._queue(event)

    async def _read_next_page(self) -> None:
        """Read the replay's next page (the sender, once the last is sent) and queue it."""
        paging = self._paging
        assert paging is not None
        events, characters = page_bounds(len(self._outbox) + len(self._held or ()),
                                         self._outbox_size + self._held_size)

        def reading(now: bool) -> None:
            paging.reading = now

        try:
            page, reserved = await replay_budget.read_page(paging.since, max_events=events, max_bytes=characters,
                                                           reading=reading)
        except Exception as error:
            self._paging = None
            raise await self.unavailable(error) from None
        if self._paging is not paging:
            reserved.release()
            return  # the connection closed meanwhile
        if page.trimmed - paging.from_oldest_kept:
            # Trimmed past where it is read up to while the desktop read the pages before: too far behind.
            reserved.release()
            self._paging = None
            self._too_slow()
            return
        paging.from_oldest_kept -= {event.conversation for event in page.events}
        self._take_page(page, reserved)

    def _queue(self, event: Event, *, replayed: bool = False) -> bool:
        """Queue ``event`` to send; False when it is not (sent already, or the desktop is too far behind)."""
        last = self._sent.get(event.conversation)
        # Another epoch (Redis lost the conversation's data and numbers from 1 again): nothing of it was sent yet.
        if last is not None and last.epoch == event.epoch and event.seq <= last.seq:
            return False
        self._sent[event.conversation] = event.position
        if replayed:
            self._replaying.append(event)
            self._replaying_size += len(event.kind) + len(event.payload_json)
        elif (len(self._outbox) >= settings.WEBSOCKET_SEND_QUEUE_LIMIT
              or self._outbox_size >= settings.WEBSOCKET_SEND_QUEUE_BYTES):
            self._too_slow()
            return False
        else:
            frame = event.frames.get(self.frame_kind)
            if frame is None:
                frame = event.frames[self.frame_kind] = self.frame_event(event)
            self._outbox.append((event, frame))
            self._outbox_size += len(frame)
        if self._sender is None:
            self._sender = asyncio.ensure_future(self._send_queued())
        return True

    def _too_slow(self) -> None:
        logger.warning("Disconnecting a desktop %s events (%s characters) behind "
                       "(WEBSOCKET_SEND_QUEUE_LIMIT, WEBSOCKET_SEND_QUEUE_BYTES)", len(self._outbox), self._outbox_size)
        self.identity = None  # take no more events; the close ends the connection
        self._stop_sending()
        self._closing = asyncio.ensure_future(self._close_too_slow())

    def _replay_stalled(self, seconds: float) -> None:
        logger.warning("Disconnecting a desktop that took no replayed event for %s s (REPLAY_STALL_SECONDS for each "
                       "64 KiB of the event)", seconds)
        self.identity = None
        self._stop_sending()  # gives the page's share of the replay budget back
        self._closing = asyncio.ensure_future(self._close_too_slow())

    async def _close_too_slow(self) -> None:
        # The close frame waits behind what the desktop has not read yet: it sees it only if it reads again
        # within the server's close timeouts (about 30 s); after them the server drops the TCP connection.
        with contextlib.suppress(OSError, RuntimeError):  # the connection ended meanwhile (as in _send_queued)
            await self.close(code=close_codes.TOO_SLOW, reason=close_codes.TOO_SLOW_REASON)

    async def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Stop sending events (none may follow the close frame), then close."""
        self._stop_sending()
        await super().close(code=code, reason=reason)

    def _stop_sending(self) -> None:
        """Drop the queued events and stop the sender (a frame it was sending is written whole already)."""
        self._replaying.clear()
        self._replaying_size = 0
        if self._replay_reserved is not None:
            self._replay_reserved.release()
        self._paging = None
        self._held, self._held_size = None, 0
        self._outbox.clear()
        self._outbox_size = 0
        if self._sender is not None and self._sender is not asyncio.current_task():
            self._sender.cancel()
            self._sender = None

    async def _send_queued(self) -> None:
        try:
            while self._replaying or self._paging is not None or self._outbox:
                if self._replaying:
                    event = self._replaying.popleft()
                    self._replaying_size -= len(event.kind) + len(event.payload_json)
                    frame = self.replayed_frame(event)
                    seconds = stall_seconds(frame)
                    try:
                        # The page holds budget other desktops' replays may wait for: a desktop that stopped
                        # reading must not keep it until its heartbeat fails.
                        async with asyncio.timeout(seconds):
                            await self.base_send({"type": "websocket.send", "text": frame})
                    except TimeoutError:
                        self._replay_stalled(seconds)
                        return
                    # Written (or in the server's bounded write buffer): its share of the budget goes back.
                    if self._replay_reserved is not None:
                        self._replay_reserved.give_back(replay_budget.event_size(event), 1)
                    continue
                elif self._paging is not None:
                    await self._read_next_page()
                    continue
                else:
                    event, frame = self._outbox.popleft()
                    self._outbox_size -= len(frame)
                    frame = self.live_frame(event, frame)
                await self.base_send({"type": "websocket.send", "text": frame})
        except EventsUnavailable:
            pass  # closed (4503) already
        except (OSError, RuntimeError):
            # The connection ended (uvicorn: ClientDisconnected, or RuntimeError once the disconnect was
            # received); its receive side ends the consumer.
            pass
        finally:
            if self._sender is asyncio.current_task():
                self._sender = None

    @property
    def queued_characters(self) -> int:
        """What this connection holds to send: its replay page's, its live queue's and its kept-back events'
        characters (a replay's pages still to read are in Redis)."""
        return self._replaying_size + self._outbox_size + self._held_size

    def frame_event(self, event: Event) -> str:
        """The text frame that carries ``event`` in this protocol."""
        raise NotImplementedError

    def replayed_frame(self, event: Event) -> str:
        """The frame of a replayed ``event``, made for this connection as it is sent (never shared)."""
        return self.frame_event(event)

    def live_frame(self, event: Event, shared: str) -> str:
        """The frame that carries a live ``event`` to this connection, as it is sent: ``shared``, the frame made
        once for every desktop of the protocol, or that with this connection's own part added."""
        return shared

    # --- streaming calls (connector.desktops.streaming) ---------------------------------------------

    def stream_registry(self) -> StreamRegistry:
        """The connection's open streams, made on first use."""
        if self.streams is None:
            self.streams = StreamRegistry(self.send_stream)
        return self.streams

    async def send_stream(self, kind: str, message: dict[str, Any]) -> None:
        """Send one stream message (``data``, ``error`` or ``ended``) in this protocol's framing."""
        raise NotImplementedError
