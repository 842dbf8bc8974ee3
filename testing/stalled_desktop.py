"""A Socket.IO desktop on a raw TCP socket that can stop reading it, as a desktop whose network or tab stalls.

python-socketio and socket.io-client read their socket all the time, so
neither can stop a server's frames at the TCP level; this client reads only
when told to. Its receive buffer is made small (``SO_RCVBUF``, before
connecting, so the window it advertises stays small) and TCP backpressure
reaches the server after a few frames. WebSocket framing is websockets'
sans-I/O ``ClientProtocol``, Engine.IO and Socket.IO packets are
python-engineio's and python-socketio's classes. Used by ``testing/fault_scenarios.py``
(``slow-desktop``, which ``benchmarks/faults.py`` and ``tests/test_faults.py`` run).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engineio import packet as eio
from socketio import packet as sio
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

# The smallest the kernel allows is about 2 KiB (Linux doubles what it is given).
SMALL_RECEIVE_BUFFER = 4096
READ_SIZE = 65536


class Ended(Exception):
    """The server ended the connection (a close frame, EOF or a reset) before what was awaited came."""


@dataclass
class Received:
    """A conversation event as the desktop got it: its name, its payload and its offset."""

    event: str
    payload: dict[str, Any]
    offset: str


@dataclass
class StalledDesktop:
    """One Engine.IO 4 / Socket.IO 5 connection over ``/socket.io/``, read only in ``read_until``."""

    port: int
    receive_buffer: int | None = SMALL_RECEIVE_BUFFER
    events: list[Received] = field(default_factory=list)
    pid: str | None = None
    #: How the connection ended, once it has: ``(code, reason)`` from the close frame, else ``(None, why)``.
    ended: tuple[int | None, str] | None = None

    def __post_init__(self) -> None:
        self._socket: socket.socket | None = None
        self._protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{self.port}/socket.io/?EIO=4&transport=websocket"),
                                        max_size=None)
        self._opening: dict[str, Any] | None = None  # the Engine.IO OPEN packet's data
        self._packets: list[sio.Packet] = []  # packets other than conversation events, not awaited yet
        self._ack_ids = itertools.count(1)

    # --- the connection ----------------------------------------------------------------

    async def connect(self, token: str, **auth: Any) -> dict[str, Any]:
        """Open the WebSocket and CONNECT with ``auth.token`` (and e.g. ``pid``, ``offset``); the answer's data."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.port))
        self._socket = sock
        self._protocol.send_request(self._protocol.connect())
        await self._flush()
        while self._opening is None:
            await self._read()
        await self._send(sio.Packet(sio.CONNECT, data={"token": token, **auth}))
        answer = await self._next(lambda packet: packet.packet_type in (sio.CONNECT, sio.CONNECT_ERROR))
        assert answer.packet_type == sio.CONNECT, answer.data
        self.pid = answer.data.get("pid")
        return answer.data

    async def call(self, event: str, *args: Any) -> list[Any]:
        """Emit ``event`` with an acknowledgement id; its acknowledgement's arguments."""
        return await self.acknowledgement(await self.request(event, *args))

    async def request(self, event: str, *args: Any) -> int:
        """Emit ``event`` with an acknowledgement id, reading nothing; the id."""
        ack_id = next(self._ack_ids)
        await self._send(sio.Packet(sio.EVENT, data=[event, *args], id=ack_id))
        return ack_id

    async def acknowledgement(self, ack_id: int) -> list[Any]:
        """Read until the acknowledgement ``ack_id`` comes; its arguments."""
        ack = await self._next(lambda packet: packet.packet_type == sio.ACK and packet.id == ack_id)
        return ack.data

    async def read_until(self, done: Callable[[StalledDesktop], bool], *, timeout: float) -> None:
        """Read (answering pings) until ``done(self)`` or the connection ends; ``Ended`` if it ended first,
        ``TimeoutError`` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while not done(self):
                await self._read()

    def offsets(self) -> list[str]:
        return [received.offset for received in self.events]

    def close(self) -> None:
        """Drop the TCP connection (no close handshake: as a desktop whose network went away)."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    # --- frames ------------------------------------------------------------------------

    async def _send(self, packet: sio.Packet) -> None:
        self._protocol.send_text(eio.Packet(eio.MESSAGE, data=packet.encode()).encode().encode())
        await self._flush()

    async def _flush(self) -> None:
        assert self._socket is not None
        for data in self._protocol.data_to_send():
            if data:
                await asyncio.get_running_loop().sock_sendall(self._socket, data)

    async def _next(self, wanted: Callable[[sio.Packet], bool]) -> sio.Packet:
        while True:
            for index, packet in enumerate(self._packets):
                if wanted(packet):
                    return self._packets.pop(index)
            await self._read()

    async def _read(self) -> None:
        """Read once from the socket and handle every complete frame."""
        if self.ended is not None or self._socket is None:
            raise Ended(self.ended)
        try:
            data = await asyncio.get_running_loop().sock_recv(self._socket, READ_SIZE)
        except ConnectionError as error:
            self.ended = (None, type(error).__name__)
            raise Ended(self.ended) from None
        if data:
            self._protocol.receive_data(data)
        else:
            self._protocol.receive_eof()
        for event in self._protocol.events_received():
            if isinstance(event, Frame):
                await self._frame(event)
            elif isinstance(event, Response):
                assert event.status_code == 101, event.status_code
        await self._flush()
        if self._protocol.close_rcvd is not None:
            self.ended = (self._protocol.close_rcvd.code, self._protocol.close_rcvd.reason)
        elif not data:
            self.ended = (None, "EOF")
        if self.ended is not None:
            raise Ended(self.ended)

    async def _frame(self, frame: Frame) -> None:
        if frame.opcode is not Opcode.TEXT:
            return  # a close frame (the protocol keeps it), or a ping the protocol answers
        outer = eio.Packet(encoded_packet=frame.data.decode())
        if outer.packet_type == eio.OPEN:
            self._opening = outer.data
        elif outer.packet_type == eio.PING:
            if self._protocol.state is State.OPEN:  # not once a close frame came with it
                self._protocol.send_text(eio.Packet(eio.PONG).encode().encode())
        elif outer.packet_type == eio.MESSAGE:
            packet = sio.Packet(encoded_packet=outer.data)
            if packet.packet_type == sio.EVENT and len(packet.data) == 3 and isinstance(packet.data[2], str):
                event, payload, offset = packet.data
                self.events.append(Received(event, payload, offset))
            else:
                self._packets.append(packet)


def notification_of(received: Received) -> dict[str, Any]:
    """The notification a conversation event carries (the push's ``data``, a JSON string)."""
    return json.loads(received.payload["data"])
