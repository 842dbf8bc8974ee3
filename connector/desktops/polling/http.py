"""Engine.IO 4's long-polling transport: ``GET`` / ``POST`` / ``OPTIONS /socket.io/?EIO=4&transport=polling``.

An ASGI handler ahead of Django (as ``interceptor.fast_push`` is), serving
any number of processes without sticky sessions: whatever a session is
between requests lives in Redis (``connector.desktops.engineio.store``).

- ``GET`` without ``sid``: the handshake, an OPEN packet offering the upgrade
  to ``websocket``; over ``HANDSHAKE_RATE_LIMIT`` for its client address
  (``connector.desktops.preauth``), 429 ``{"code": 3, "message": ...}`` with
  ``Retry-After`` instead.
- ``GET`` with ``sid``: the long-poll. It answers at once with what is
  waiting (the session's queued packets, a ping when one is due, its
  conversations' events after the positions it was sent), else waits for an
  event (the hub) or a POST's packets (the wake channel), at most until the
  next ping is due, or until the pong deadline while a ping is unanswered:
  then the session ends and the GET answers CLOSE, as the JavaScript
  server's "ping timeout" closes it, and any later request of it finds it
  gone (400 code 1). One GET per session at a time, across processes: a
  second one while the first waits is refused (400, no body) and ends the
  session (the first answers CLOSE), as Engine.IO's servers do; each process
  holds at most ``SOCKETIO_MAX_WAITING_POLLS``, and a GET of a session not
  connected to ``/`` counts against its client address's share of
  unauthenticated connections (``connector.desktops.preauth``; over it, 429).
  It answers Engine.IO's CLOSE, ending the session (its recovery window
  begins), at the token's expiry, when the history no longer reaches back to
  the session's positions, and when an operator closed the session
  (``connector.desktops.polling.operators``), a POST found its token expired, or a POST
  would pass the session's out-queue budget (``SOCKETIO_POLLING_QUEUE_LIMIT``,
  ``SOCKETIO_POLLING_QUEUE_BYTES``): those mark the session closed rather than
  delete it, so that its client's next GET answers CLOSE rather than
  ``Session ID unknown``; a POST after that is answered ``ok``, its packets dropped. The events it
  answers with count in ``aa_event_deliveries_total``; while it waits for a
  session connected to ``/`` it counts in
  ``aa_desktops_connected{transport="polling"}``. A client that closes its
  connection while its GET waits ends the session there and then.
- ``POST`` with ``sid``: the client's packets, at most ``SOCKETIO_MAX_PAYLOAD``
  bytes (else 413, no body, and the session goes on), through the same
  Engine.IO / Socket.IO layers as the websocket transport
  (``connector.desktops.polling.application``); answered ``ok``. A CLOSE packet
  ends the session, and its waiting GET answers a noop.

Errors are Engine.IO's: 400 (403 for a refused origin) with
``{"code": <n>, "message": <its message>}``, but for the two the JavaScript
server answers without a body (the overlapping GET's 400, the 413).
Browsers' requests carrying ``Origin`` must come from ``CORS_ALLOWED_ORIGINS``
(the WebSocket handshake's rule, ``connector.desktops.origin``) and are
answered with CORS headers, credentials allowed; the preflight too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from asgiref.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope, Scope
from django.conf import settings

from common import draining
from common.asgi_body import read_body
from common.asgi_responses import header, send_response
from common.log_sampling import LogSampler
from connector import ratelimit
from connector.desktops import preauth, replay_budget, sessions
from connector.desktops.engineio import packets, store
from connector.desktops.origin import origin_allowed
from connector.desktops.polling.application import PollingDesktop, PostOutcome
from connector.desktops.polling.waiting import Poller, get_pollers
from connector.desktops.socketio.application import SentOffsets
from events import metrics, redis_client
from events.history import Offset, Replay

logger = logging.getLogger(__name__)
# Every desktop polls again at once after a refusal: while Redis is out, or for a page on a refused origin,
# each poll would write the same line.
repeated = LogSampler(logger)

ASGIApp = Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], object]
PATHS = frozenset({"/socket.io/", "/socket.io"})  # Engine.IO's, both transports (aa_site.serve_uvicorn too)

# Engine.IO's error codes and messages (the JavaScript server's, which its clients know).
UNKNOWN_TRANSPORT, UNKNOWN_SID, BAD_HANDSHAKE_METHOD, BAD_REQUEST, FORBIDDEN, UNSUPPORTED_PROTOCOL_VERSION = range(6)
ERROR_MESSAGES = {
    UNKNOWN_TRANSPORT: "Transport unknown",
    UNKNOWN_SID: "Session ID unknown",
    BAD_HANDSHAKE_METHOD: "Bad handshake method",
    BAD_REQUEST: "Bad request",
    FORBIDDEN: "Forbidden",
    UNSUPPORTED_PROTOCOL_VERSION: "Unsupported protocol version",
}
PAYLOAD_CONTENT_TYPE = b"text/plain; charset=UTF-8"
MAX_SID_LENGTH = 64
# How long a browser may keep a preflight's answer.
PREFLIGHT_MAX_AGE = b"86400"


@dataclass
class Answer:
    status: int
    body: bytes = b""
    content_type: bytes = PAYLOAD_CONTENT_TYPE
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    # The replay page this answer carries, held of the process's replay budget until the answer is sent.
    reserved: replay_budget.Reservation | None = None

    def release(self) -> None:
        if self.reserved is not None:
            self.reserved.release()


def error(code: int, *, status: int = 400, message: str | None = None) -> Answer:
    """Engine.IO's error answer."""
    body = {"code": code, "message": message or ERROR_MESSAGES[code]}
    return Answer(status, json.dumps(body).encode(), b"application/json")


def payload(frames: list[str]) -> Answer:
    return Answer(200, packets.encode_payload(frames).encode("utf-8"))


class PollingTransport:
    """ASGI application: ``/socket.io/`` over HTTP, then ``application`` for every other request."""

    def __init__(self, application: ASGIApp) -> None:
        self.application = application

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] != "http" or scope["path"] not in PATHS:
            await self.application(scope, receive, send)
            return
        origin = header(scope, b"origin")
        if origin is not None and not origin_allowed(origin):
            repeated.warning("refused origin", "Refused a long-polling request from origin %r: not an allowed "
                             "origin (CORS_ALLOWED_ORIGINS)", origin[:200])
            await _send(send, error(FORBIDDEN, status=403), origin=None)
            return
        try:
            answer = await _serve(scope, receive)
        except Exception as failure:
            repeated.warning(("redis failed", type(failure).__name__),
                             "Could not serve a long-polling request, Redis failed: %s: %s", type(failure).__name__,
                             failure)
            answer = error(BAD_REQUEST, status=503, message="events are unavailable right now; try again")
            answer.headers.append((b"Retry-After", b"1"))
        if answer is not None:
            try:
                await _send(send, answer, origin=origin)
            finally:
                answer.release()


async def _serve(scope: HTTPScope, receive: ASGIReceiveCallable) -> Answer | None:
    method = scope["method"]
    if method == "OPTIONS":
        requested = header(scope, b"access-control-request-headers")
        headers = [(b"Access-Control-Allow-Methods", b"GET, POST, OPTIONS"),
                   (b"Access-Control-Max-Age", PREFLIGHT_MAX_AGE)]
        if requested:
            headers.append((b"Access-Control-Allow-Headers", requested.encode("latin-1")))
        return Answer(204, headers=headers)
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    transport = query.get("transport", [""])[0]
    if transport not in ("polling", "websocket") or not redis_client.is_configured():
        # Without Redis (development mode) sessions could not be shared: the websocket transport only.
        return error(UNKNOWN_TRANSPORT)
    if transport == "websocket":
        return error(BAD_REQUEST)  # a plain HTTP request on the websocket transport
    sid = query.get("sid", [None])[0]
    if sid is None:
        if query.get("EIO") != ["4"]:
            return error(UNSUPPORTED_PROTOCOL_VERSION)
        if method != "GET":
            return error(BAD_HANDSHAKE_METHOD)
        return await _handshake(scope)
    if not sid or len(sid) > MAX_SID_LENGTH or not sid.isascii() or not sid.isprintable() or "}" in sid:
        # (No session's sid holds "}", which would end the hash tag its keys and wake channel are named by.)
        return error(UNKNOWN_SID)
    if method == "GET":
        return await _long_poll(scope, sid, receive)
    if method == "POST":
        return await _post(scope, receive, sid)
    return error(BAD_REQUEST)


async def _handshake(scope: HTTPScope) -> Answer:
    wait = await preauth.handshake_refused(ratelimit.scope_client_address(scope))
    if wait is not None:
        return _too_many(f"Too many handshakes from this address; retry in {wait} seconds (HANDSHAKE_RATE_LIMIT)",
                         wait)
    sid = packets.new_sid()
    await store.create(sid)
    return payload([packets.open_frame(
        sid=sid, ping_interval=settings.SOCKETIO_PING_INTERVAL, ping_timeout=settings.SOCKETIO_PING_TIMEOUT,
        max_payload=settings.SOCKETIO_MAX_PAYLOAD, upgrades=packets.POLLING_UPGRADES,
    )])


# --- GET: the long-poll ------------------------------------------------------------------------


class ClientWatch:
    """Whether the client of one GET closed its connection while the GET waits: Engine.IO clients never drop
    a pending poll but when they go (a closed tab, a lost network), so the session ends then, as the JavaScript
    server ends it, rather than at the next ping's deadline and its keys' expiry."""

    def __init__(self, receive: ASGIReceiveCallable, poller: Poller) -> None:
        self.gone = False
        self._task = asyncio.ensure_future(self._watch(receive, poller))

    async def _watch(self, receive: ASGIReceiveCallable, poller: Poller) -> None:
        try:
            while (await receive())["type"] != "http.disconnect":
                pass  # the GET's (empty) body
        except Exception as error:  # a server whose receive fails: the GET goes on as if watched by no one
            logger.debug("Cannot watch a long-poll's connection: %s: %s", type(error).__name__, error)
            return
        self.gone = True
        poller.interrupt()

    def stop(self) -> None:
        self._task.cancel()


async def _long_poll(scope: HTTPScope, sid: str, receive: ASGIReceiveCallable) -> Answer | None:
    pollers = get_pollers()
    hold = None
    if not pollers.connected(sid):
        # Unless this process knows the session connected to "/", Redis says whether this GET is an
        # unauthenticated one, counted against its address's share (with the check, in one round trip).
        held = await preauth.HOLDS.take(ratelimit.scope_client_address(scope),
                                        lifetime=settings.SOCKETIO_PING_INTERVAL, session_key=store.session_key(sid))
        if held is None:
            return _too_many("Too many unauthenticated long-polls from this address; try again "
                             "(WEBSOCKET_MAX_UNAUTHENTICATED_PER_ADDRESS)", 1)
        hold = held if isinstance(held, preauth.Hold) else None
    try:
        poller = await pollers.attach(sid)
        if poller is None:
            answer = error(BAD_REQUEST, status=503, message="too many long-polls wait on this instance; try again")
            answer.headers.append((b"Retry-After", b"1"))
            return answer
        token = secrets.token_hex(8)
        client = ClientWatch(receive, poller)
        page = Answer(200)  # holds the replay page read, until an answer carries it
        try:
            answer = await _wait_and_answer(poller, token, client, page)
            if answer is not None:
                answer.reserved, page.reserved = page.reserved, None
            return answer
        except Exception:
            with contextlib.suppress(Exception):  # let the session's next GET in at once
                await store.finish(sid, token, read={}, pid=None)
            raise
        finally:
            page.release()
            client.stop()
            pollers.detach(poller)
    finally:
        if hold is not None:
            preauth.HOLDS.release(hold)


async def _wait_and_answer(poller: Poller, token: str, client: ClientWatch, page: Answer) -> Answer | None:
    """Wait for something to answer and answer it; ``page.reserved`` holds the replay page read meanwhile."""
    sid = poller.sid
    turn = await store.poll(sid, token, again=False)
    if turn.status == "overlap":
        # No Engine.IO client polls twice at once. Its servers (JavaScript and python-engineio) end the session
        # then, and so does this: the pending GET, on whichever process, is woken and answers CLOSE. This one
        # gets the JavaScript server's answer (lib/transports/polling.ts, "overlap from client"): 400, no body.
        logger.info("Closing a long-polling session: a second GET came while one was pending")
        await _end(sid, turn.pid, poller)
        return Answer(400)
    if turn.status != "ok":
        return await _turn_refused(poller, turn, first=True)
    loop = asyncio.get_running_loop()
    state = turn.state
    assert state is not None
    poller.count_as_desktop(state.connected and state.identity is not None)
    frames = [*state.pending, *([packets.ping_frame()] if turn.ping else [])]
    deadline = loop.time() + turn.seconds_to_deadline
    replay: Replay | None = None
    while True:
        if client.gone:
            # Nobody reads this answer: end the session (its recovery window begins) rather than advance it.
            logger.info("Closing a long-polling session: its client went away during a poll")
            await _end(state.sid, state.pid, poller)
            return None
        if _token_expired(state):
            logger.info("Closing a long-polling session: its token expired")
            await _end(state.sid, state.pid, poller)
            return payload([*frames, packets.close_frame()])
        await get_pollers().watch(poller, set(state.joined))
        replay = None
        page.release()
        if state.joined:
            replay, page.reserved = await replay_budget.read_page(
                state.joined, max_events=settings.REPLAY_PAGE_EVENTS, max_bytes=settings.REPLAY_PAGE_BYTES)
        if replay is not None and not replay.complete:
            # It fell behind the kept history: end it, so the client reconnects (recovery tells it the truth).
            logger.info("Closing a long-polling session: the history no longer reaches back to its position")
            await _end(state.sid, state.pid, poller)
            return payload([*frames, packets.close_frame()])
        if frames or (replay is not None and replay.events):
            break
        if draining.is_draining():
            # This process stops: answer now, and the session's next GET goes to another instance (the session
            # lives in Redis), nothing to recover.
            frames = [packets.noop_frame()]
            break
        page.release()  # nothing to answer with yet: the GET waits holding no page
        await poller.wait(min(deadline, _token_deadline(state, loop)) - loop.time())
        woken_by_session = poller.woken_by_session
        poller.rearm()
        if woken_by_session or loop.time() >= deadline:
            turn = await store.poll(sid, token, again=True)
            if turn.status != "ok":
                return await _turn_refused(poller, turn, first=False)
            state = turn.state
            assert state is not None
            poller.count_as_desktop(state.connected and state.identity is not None)
            frames = [*state.pending, *([packets.ping_frame()] if turn.ping else [])]
            deadline = loop.time() + turn.seconds_to_deadline
    # Every event here is read from the history: each frame's offset holds the session's position in each of
    # its conversations, the frame's event counted.
    offsets = SentOffsets(state.joined)
    events, event_frames = _one_page(replay, offsets, frames)
    read: dict[str, tuple[Offset, Offset]] = {}
    if replay is not None:
        # Cut short, the answer holds every event of each conversation up to its last one there (a page is a
        # prefix of each conversation's events): the next GET goes on after it.
        left_out = {event.conversation for event in replay.events[len(events):]}
        last_sent = {event.conversation: event.position for event in events}
        for conversation, start in state.joined.items():
            end = last_sent.get(conversation, start) if conversation in left_out else replay.positions.get(
                conversation, start)
            if end != start:
                read[conversation] = (start, end)
    await store.finish(sid, token, read=read, pid=state.pid)
    for event in events:
        metrics.event_sent_in_poll(event.kind)
    return payload([*frames, *event_frames])


def _one_page(replay: Replay | None, offsets: SentOffsets, frames: list[str]) -> tuple[list, list[str]]:
    """The events (and their frames) of one answer: the page read, cut where the answer would pass
    ``REPLAY_PAGE_BYTES`` with the other frames and the payload's separators (at least one event)."""
    if replay is None:
        return [], []
    room = settings.REPLAY_PAGE_BYTES - sum(len(frame.encode("utf-8")) + 1 for frame in frames)
    events, event_frames = [], []
    for event in replay.events:
        frame = offsets.frame(event)
        size = len(frame.encode("utf-8")) + 1
        if events and size > room:
            break
        events.append(event)
        event_frames.append(frame)
        room -= size
    return events, event_frames


async def _turn_refused(poller: Poller, turn: store.Poll, *, first: bool) -> Answer:
    """The answer of a GET whose turn (``first``, or after its wait) is not ``ok``."""
    if turn.status in ("upgrading", "overlap"):
        # Upgrading, or (after its wait) this GET's lock lapsed and a newer GET serves the session: end this one.
        return payload([packets.noop_frame()])
    poller.ended = True
    if turn.status == "gone" and not first and poller.closed_by_client:
        # The client POSTed CLOSE: as the JavaScript server, end its pending poll with a noop (lib/transports/
        # polling.ts, onClose); a CLOSE would be the server closing.
        return payload([packets.noop_frame()])
    if turn.status == "closed":
        if turn.why == "operator":
            logger.info("Closing a long-polling session at an operator's request")
        await _end(poller.sid, turn.pid)
        return payload([packets.close_frame()])
    if turn.status == "timeout":
        await store.close(poller.sid)
    return error(UNKNOWN_SID) if first else payload([packets.close_frame()])


def _token_expired(state: store.PollingState) -> bool:
    return _seconds_to_expiry(state) <= 0


def _seconds_to_expiry(state: store.PollingState) -> float:
    identity = state.identity
    if identity is None or identity.expires_at is None or not settings.WEBSOCKET_CLOSE_AT_TOKEN_EXPIRY:
        return float("inf")
    return identity.expires_at - time.time()


def _token_deadline(state: store.PollingState, loop: asyncio.AbstractEventLoop) -> float:
    return loop.time() + _seconds_to_expiry(state)


async def _end(sid: str, pid: str | None, poller: Poller | None = None, *, by_client: bool = False) -> None:
    """End the session for a transport reason (``by_client``: its client's CLOSE packet); the recovery window
    of its session ``pid`` starts now, unless the session was gone already: a WebSocket that took it over keeps
    ``pid`` alive."""
    if poller is not None:
        poller.ended = True
    if await store.close(sid, by_client=by_client) and pid is not None and settings.SOCKETIO_RECOVERY_SECONDS:
        await sessions.expire(pid, ttl=settings.SOCKETIO_RECOVERY_SECONDS)


# --- POST: the client's packets ----------------------------------------------------------------


async def _post(scope: HTTPScope, receive: ASGIReceiveCallable, sid: str) -> Answer | None:
    limit = settings.SOCKETIO_MAX_PAYLOAD
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return _too_large(limit)
    body = await read_body(receive, limit + 1)
    if body is None:
        return None  # the client went away
    if len(body) > limit:
        return _too_large(limit)
    state = await store.load(sid)
    if state is None:
        return error(UNKNOWN_SID)
    if state.closed:
        return _ok()  # the server ended it; its packets come after that, its next GET answers CLOSE
    if _token_expired(state):
        # The session ends, but its client learns it from a poll: the pending GET, or the next, answers CLOSE.
        # Its packets are not run: they come after the token's expiry.
        logger.info("Closing a long-polling session: its token expired")
        await store.mark_closed(sid, "token_expired")
        return _ok()
    try:
        received = packets.decode_payload(body.decode("utf-8"))
    except (UnicodeDecodeError, packets.PacketError) as why:
        logger.info("Closing a long-polling session: %s", why)
        await _end(state.sid, state.pid)
        return error(BAD_REQUEST)
    outcome = PostOutcome()
    desktop = PollingDesktop(state, outcome)
    closed_by_client = False
    for packet in received:
        if packet.packet_type == packets.PONG:
            outcome.delete("pong_by")
        elif packet.packet_type == packets.PING:
            outcome.queue(packets.pong_frame())
        elif packet.packet_type == packets.CLOSE:
            outcome.close = closed_by_client = True
        elif packet.packet_type == packets.MESSAGE:
            await desktop.socketio.receive(packet.data)
        if outcome.close or outcome.over_budget:
            break
    if outcome.close:
        await _end(state.sid, state.pid, by_client=closed_by_client)
        return _ok()
    committed = await store.commit(sid, pid=outcome.sets.get("pid", state.pid), sets=outcome.sets,
                                   deletes=outcome.deletes, packets=outcome.packets)
    if committed.status == "gone":
        return error(UNKNOWN_SID)
    if committed.status == "over_budget":
        # As a WebSocket too far behind is closed (4429): the session's next GET answers CLOSE, and its client
        # reconnects and recovers.
        logger.info("Closing a long-polling session: its client left %s packets (%s bytes) unread "
                    "(SOCKETIO_POLLING_QUEUE_LIMIT, SOCKETIO_POLLING_QUEUE_BYTES)", committed.packets, committed.size)
    return _ok()


def _ok() -> Answer:
    # What the JavaScript server answers a POST.
    return Answer(200, b"ok", b"text/html")


def _too_many(message: str, retry_after: int) -> Answer:
    # The JavaScript server has no such answer: Engine.IO's "Bad request" code, with HTTP's status for it.
    answer = error(BAD_REQUEST, status=429, message=message)
    answer.headers.append((b"Retry-After", str(retry_after).encode()))
    return answer


def _too_large(limit: int) -> Answer:
    # The JavaScript server's answer (lib/transports/polling.ts, past maxHttpBufferSize): 413, no body; the
    # session goes on. The log says which limit it passed.
    repeated.log(logging.INFO, "too large", "Refused a long-polling POST of more than %s bytes (SOCKETIO_MAX_PAYLOAD)",
                 limit)
    return Answer(413)


# --- HTTP ----------------------------------------------------------------------------------------


async def _send(send: ASGISendCallable, answer: Answer, *, origin: str | None) -> None:
    headers = [(b"Cache-Control", b"no-store"), (b"X-Content-Type-Options", b"nosniff"), *answer.headers]
    if origin is not None:
        headers += [(b"Access-Control-Allow-Origin", origin.encode("latin-1")),
                    (b"Access-Control-Allow-Credentials", b"true"), (b"Vary", b"Origin")]
    await send_response(send, answer.status, answer.body,
                        content_type=None if answer.status == 204 else answer.content_type, headers=headers)
