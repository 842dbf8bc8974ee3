"""One Engine.IO 4 session: the OPEN packet, the server's heartbeat, close, and MESSAGE payloads handed up.

Knows nothing of Socket.IO or conversations. What carries the frames is a
``Transport`` (today the WebSocket consumer; a long-polling transport can
drive the same session), and every MESSAGE payload goes to ``on_message``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from django.conf import settings

from connector import close_codes
from connector.engineio import packets

logger = logging.getLogger(__name__)


class Transport(Protocol):
    """How a session's frames reach the client."""

    async def send_frame(self, frame: str) -> None:
        """Send one text frame."""

    async def close_transport(self, code: int) -> None:
        """End the connection with ``code`` (``connector.close_codes``)."""


class EngineIOSession:
    """The server side of one Engine.IO session."""

    __slots__ = ("sid", "_transport", "_on_message", "_pong", "_heartbeat_task")

    def __init__(
        self, transport: Transport, *, on_message: Callable[[str], Awaitable[None]], sid: str | None = None
    ) -> None:
        """A new session, or (``sid``) one opened over long-polling that this transport continues."""
        self.sid = sid or packets.new_sid()
        self._transport = transport
        self._on_message = on_message
        # Set while a ping awaits its pong: a future per ping, rather than an Event per session
        # and the task asyncio.wait_for() would wrap around Event.wait() at every ping.
        self._pong: asyncio.Future[None] | None = None
        self._heartbeat_task: asyncio.Task | None = None

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
        self._heartbeat_task = asyncio.create_task(self._heartbeat())

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
            if self._pong is not None and not self._pong.done():
                self._pong.set_result(None)
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
        """End the session over a frame that breaks the protocol (4400)."""
        logger.info("Closing Engine.IO session %s: %s", self.sid, why)
        await self.close(close_codes.PROTOCOL_ERROR)

    async def close(self, code: int = close_codes.NORMAL) -> None:
        """Stop the heartbeat and end the transport with ``code``."""
        self.stop()
        await self._transport.close_transport(code)

    def stop(self) -> None:
        """Stop the heartbeat (the connection ended, whichever way): left running, it would ping for ever."""
        if self._heartbeat_task is not None and self._heartbeat_task is not asyncio.current_task():
            self._heartbeat_task.cancel()

    async def _heartbeat(self) -> None:
        interval, timeout = settings.SOCKETIO_PING_INTERVAL, settings.SOCKETIO_PING_TIMEOUT
        while True:
            await asyncio.sleep(interval)
            self._pong = asyncio.get_running_loop().create_future()
            try:
                # From the ping's sending on, as Socket.IO counts: a ping that cannot even be written (the
                # desktop stopped reading and its buffers are full) goes unanswered like any other.
                async with asyncio.timeout(timeout):
                    await self._transport.send_frame(packets.ping_frame())
                    await self._pong
            except TimeoutError:
                logger.info("Closing Engine.IO session %s: no pong within %ss", self.sid, timeout)
                await self.close()
                return
            except (OSError, RuntimeError):
                return  # the connection ended meanwhile (uvicorn refuses frames after it); the consumer stops us
            finally:
                self._pong = None
