"""Socket.IO frames over the Engine.IO websocket transport, built from python-engineio's
and python-socketio's own packet classes (no hand-written codec).

Pure functions, no I/O: the consumer (``connector.socketio.consumer``) owns the
connection; a future long-polling transport can reuse these unchanged.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from engineio import packet as eio
from socketio import packet as sio

DEFAULT_NAMESPACE = "/"
# What python-socketio and the JavaScript server send in the OPEN packet.
NO_UPGRADES: list[str] = []


# RecursionError: the stdlib JSON decoder raises it for deeply nested arrays
# or objects, which fit easily within maxPayload.
_DECODE_ERRORS = (ValueError, IndexError, TypeError, RecursionError)


class ProtocolError(ValueError):
    """A frame that is not valid Engine.IO 4 / Socket.IO 5 text."""


@dataclass(frozen=True)
class Incoming:
    """A decoded client frame: the Engine.IO type and, for MESSAGE, the Socket.IO packet."""

    eio_type: int
    packet: sio.Packet | None = None

    @property
    def namespace(self) -> str:
        return (self.packet.namespace if self.packet else None) or DEFAULT_NAMESPACE


def new_sid() -> str:
    """A random, URL-safe session id (Engine.IO and Socket.IO use separate ones)."""
    return secrets.token_urlsafe(15)


def decode(frame: str) -> Incoming:
    """Decode one text frame from the client; raise ``ProtocolError`` when it is not valid."""
    try:
        outer = eio.Packet(encoded_packet=frame)
    except _DECODE_ERRORS as error:
        raise ProtocolError(f"invalid Engine.IO packet: {error}") from None
    if outer.packet_type not in range(len(eio.packet_names)):
        raise ProtocolError(f"unknown Engine.IO packet type {outer.packet_type}")
    if outer.binary:
        # A text frame starting with "b" is base64 binary (polling only); the
        # websocket transport sends binary as binary frames, which we refuse too.
        raise ProtocolError("binary Engine.IO messages are not supported")
    if outer.packet_type != eio.MESSAGE:
        return Incoming(outer.packet_type)
    # Engine.IO decodes a JSON-looking payload; Socket.IO needs the raw text.
    raw = frame[1:]
    if not raw:
        # python-socketio would read an empty packet as an EVENT without data.
        raise ProtocolError("empty Socket.IO packet")
    try:
        inner = sio.Packet(encoded_packet=raw)
    except _DECODE_ERRORS as error:
        raise ProtocolError(f"invalid Socket.IO packet: {error}") from None
    if inner.packet_type not in range(len(sio.packet_names)):
        raise ProtocolError(f"unknown Socket.IO packet type {inner.packet_type}")
    if inner.attachment_count or inner.packet_type in (sio.BINARY_EVENT, sio.BINARY_ACK):
        raise ProtocolError("binary attachments are not supported")
    return Incoming(eio.MESSAGE, inner)


def open_frame(*, sid: str, ping_interval: int, ping_timeout: int, max_payload: int) -> str:
    """The Engine.IO handshake; intervals in seconds, sent in milliseconds."""
    return eio.Packet(
        eio.OPEN,
        {
            "sid": sid,
            "upgrades": NO_UPGRADES,
            "pingInterval": ping_interval * 1000,
            "pingTimeout": ping_timeout * 1000,
            "maxPayload": max_payload,
        },
    ).encode()


def ping_frame() -> str:
    return eio.Packet(eio.PING).encode()


def pong_frame() -> str:
    return eio.Packet(eio.PONG).encode()


def connected_frame(*, sid: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    return _message(sio.Packet(sio.CONNECT, {"sid": sid}, namespace=namespace))


def connect_error_frame(message: str, *, namespace: str = DEFAULT_NAMESPACE) -> str:
    return _message(sio.Packet(sio.CONNECT_ERROR, {"message": message}, namespace=namespace))


# binary=False: what we send is JSON text, never bytes. Without it python-socketio walks every
# argument looking for bytes, once per desktop for every event (about 40% of building a frame).


def event_frame(event: str, *args: Any, namespace: str = DEFAULT_NAMESPACE) -> str:
    return _message(sio.Packet(sio.EVENT, [event, *args], namespace=namespace, binary=False))


def ack_frame(ack_id: int, *args: Any, namespace: str = DEFAULT_NAMESPACE) -> str:
    return _message(sio.Packet(sio.ACK, list(args), namespace=namespace, id=ack_id, binary=False))


def _message(packet: sio.Packet) -> str:
    return eio.Packet(eio.MESSAGE, packet.encode()).encode()
