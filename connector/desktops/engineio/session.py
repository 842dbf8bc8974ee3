"""One Engine.IO 4 session: the OPEN packet, the server's heartbeat, close, and MESSAGE payloads handed up.

Knows nothing of Socket.IO or conversations. What carries the frames is a
``Transport`` (today the WebSocket consumer; a long-polling transport can
drive the same session), and every MESSAGE payload goes to ``on_message``.

The heartbeats of all of a process's sessions share one timer (``Heartbeats``):
sessions due in the same hundredth of a second are pinged together, and a pong
only moves its session to another tick. A sleeping task per session, woken for
every ping and again for every pong, cost about half of a connector's idle CPU
with thousands of sockets (docs/performance.md, "Heartbeat: one timer per process").
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from django.conf import settings

from common.loop_local import LoopLocal
from connector.desktops import close_codes
from connector.desktops.engineio import packets

logger = logging.getLogger(__name__)

#: The heartbeat timer's resolution: sessions due within the same hundredth of a second are pinged together.
TICKS_PER_SECOND = 100


class Transport(Protocol):
    """How a session's frames reach the client."""

    async def send_frame(self, frame: str) -> None:
        """Send one text frame."""

    async def close_transport(self, code: int, reason: str | None = None) -> None:
        """End the connection with ``code`` (``connector.desktops.close_codes``) and ``reason``, when given."""


class Heartbeats:
    """One event loop's heartbeat timer: the sessions due in each tick (a hundredth of a second), one timer
    for the earliest tick.

    A session is due either for its next ping (``SOCKETIO_PING_INTERVAL`` after it opened or answered the
    last one) or for its pong deadline (``SOCKETIO_PING_TIMEOUT`` after a ping); ``EngineIOSession.beat``
    says which. Pinging a tick's sessions together costs the loop fewer wake-ups (and the connector less CPU)
    than pinging each on its own; ticks stay short so that those sessions stay few: a second's worth at once
    (400 at 10,000 sockets) held events up for tens of milliseconds behind the burst of pings and pongs, and
    a tenth of a second's (40) still put scenario c's p99 at 4.5-5 ms with 10,000 sockets, against 2.8-3.3 ms
    with a hundredth's (docs/performance.md, "Heartbeat: one timer per process"); the price is about 2% of a core more at 10,000 idle sockets.
    """

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._ticks: dict[int, dict[EngineIOSession, None]] = {}  # tick -> its sessions, an ordered set
        self._order: list[int] = []  # heap of the ticks in _ticks (and of some emptied since: skipped)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_tick: int | None = None
        self._sends: set[asyncio.Task] = set()  # pings and closes in flight, held until done

    @property
    def scheduled(self) -> int:
        """How many sessions have a heartbeat on this loop."""
        return sum(len(sessions) for sessions in self._ticks.values())

    def schedule(self, session: EngineIOSession, delay: float) -> None:
        """Make ``session`` due ``delay`` seconds from now (instead of whenever it was due)."""
        self.cancel(session)
        tick = math.ceil((self._loop.time() + delay) * TICKS_PER_SECOND)
        sessions = self._ticks.get(tick)
        if sessions is None:
            sessions = self._ticks[tick] = {}
            heapq.heappush(self._order, tick)
        sessions[session] = None
        session._due_tick = tick
        if self._timer_tick is None or tick < self._timer_tick:
            self._arm(tick)

    def cancel(self, session: EngineIOSession) -> None:
        """``session`` is due no more."""
        tick, session._due_tick = session._due_tick, None
        sessions = self._ticks.get(tick) if tick is not None else None
        if sessions is not None:
            sessions.pop(session, None)
            if not sessions:
                del self._ticks[tick]

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` (a ping or a close) in a task of its own: one slow client holds up no other."""
        task = asyncio.ensure_future(work)
        self._sends.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task) -> None:
        self._sends.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The connection ended while the ping was on its way; its consumer is ending it too.
            logger.debug("A heartbeat frame could not be sent: %r", task.exception())

    def _arm(self, tick: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_tick = tick
        self._timer = self._loop.call_at(tick / TICKS_PER_SECOND, self._tick)

    def _tick(self) -> None:
        # The armed tick is due even if the loop's clock reads a hair before it (timers may fire early).
        due = max(math.floor(self._loop.time() * TICKS_PER_SECOND), self._timer_tick or 0)
        self._timer = self._timer_tick = None
        order = self._order
        while order and order[0] <= due:
            for session in self._ticks.pop(heapq.heappop(order), ()):
                session._due_tick = None
                session.beat()
        while order and order[0] not in self._ticks:
            heapq.heappop(order)  # emptied by cancel
        if order and self._timer_tick != order[0]:
            self._arm(order[0])  # the earliest tick left, wherever the beats above armed the timer


def _stop_heartbeats(heartbeats: Heartbeats) -> None:
    if heartbeats._timer is not None:
        heartbeats._timer.cancel()


_heartbeats: LoopLocal[Heartbeats] = LoopLocal(Heartbeats, close=_stop_heartbeats)


def heartbeats() -> Heartbeats:
    """The running event loop's heartbeat timer."""
    return _heartbeats.get()


class EngineIOSession:
    """The server side of one Engine.IO session."""

    __slots__ = ("sid", "_transport", "_on_message", "_awaiting_pong", "_due_tick", "_heartbeats")

    def __init__(
        self, transport: Transport, *, on_message: Callable[[str], Awaitable[None]], sid: str | None = None
    ) -> None:
        """A new session, or (``sid``) one opened over long-polling that this transport continues."""
        self.sid = sid or packets.new_sid()
        self._transport = transport
        self._on_message = on_message
        self._awaiting_pong = False  # a ping went out and its pong has not come back yet
        self._due_tick: int | None = None  # the tick its heartbeat is next due, kept by Heartbeats
        self._heartbeats: Heartbeats | None = None  # set while the heartbeat runs

    async def open(self) -> None:
        """Send the OPEN packet and start the heartbeat."""
        await self._transport.send_frame(
            packets.open_frame(
                sid=self.sid,
                ping_interval=settings.SOCKETIO_PING_INTERVAL,
                ping_timeout=settings.SOCKETIO_PING_TIMEOUT,
                max_payload=settings.SOCKETIO_MAX_PAYLOAD,
            )
        )
        self.start_heartbeat()

    def start_heartbeat(self) -> None:
        """Ping every ``SOCKETIO_PING_INTERVAL`` seconds (``open`` does it; an upgraded session starts it itself)."""
        self._heartbeats = heartbeats()
        self._heartbeats.schedule(self, settings.SOCKETIO_PING_INTERVAL)

    async def receive(self, frame: str | None) -> None:
        """Handle one frame from the client (``None``: a binary frame, which Engine.IO 4 text never is)."""
        if frame is None:
            await self.close(close_codes.UNSUPPORTED_DATA)
            return
        if len(frame) > settings.SOCKETIO_MAX_PAYLOAD:
            await self.close(close_codes.MESSAGE_TOO_BIG)
            return
        try:
            packet = packets.decode(frame)
        except packets.PacketError as error:
            await self.refuse(str(error))
            return
        if packet.packet_type == packets.PONG:
            if self._awaiting_pong and self._heartbeats is not None:
                self._awaiting_pong = False
                self._heartbeats.schedule(self, settings.SOCKETIO_PING_INTERVAL)
        elif packet.packet_type == packets.PING:
            await self._transport.send_frame(packets.pong_frame())
        elif packet.packet_type == packets.CLOSE:
            await self.close()
        elif packet.packet_type == packets.MESSAGE:
            await self._on_message(packet.data)

    async def send_message(self, payload: str) -> None:
        """Send ``payload`` in a MESSAGE packet."""
        await self._transport.send_frame(packets.message_frame(payload))

    async def refuse(self, why: str) -> None:
        """End the session over a frame that breaks the protocol (4400, ``why`` as the close reason: the one
        thing a client's close handler can show, as no Socket.IO packet carries an error once connected)."""
        logger.info("Closing Engine.IO session %s: %s", self.sid, why)
        await self.close(close_codes.PROTOCOL_ERROR, reason=close_codes.reason(why))

    async def close(self, code: int = close_codes.NORMAL, *, reason: str | None = None) -> None:
        """Stop the heartbeat and end the transport with ``code`` (and ``reason``)."""
        self.stop()
        await self._transport.close_transport(code, reason)

    def stop(self) -> None:
        """Stop the heartbeat (the connection ended, whichever way): left running, it would ping for ever."""
        heartbeats_, self._heartbeats = self._heartbeats, None
        if heartbeats_ is not None:
            heartbeats_.cancel(self)

    def beat(self) -> None:
        """The heartbeat is due (called by ``Heartbeats``): ping, or close when the last ping went unanswered."""
        heartbeats_ = self._heartbeats
        if heartbeats_ is None:
            return
        if self._awaiting_pong:
            logger.info("Closing Engine.IO session %s: no pong within %ss", self.sid, settings.SOCKETIO_PING_TIMEOUT)
            heartbeats_.spawn(self.close())
            return
        self._awaiting_pong = True
        heartbeats_.schedule(self, settings.SOCKETIO_PING_TIMEOUT)
        heartbeats_.spawn(self._transport.send_frame(PING_FRAME))


PING_FRAME = packets.ping_frame()
