"""Engine.IO 4 packets as text frames, read and built with python-engineio's own ``Packet`` class.

Pure functions, no I/O, nothing about Socket.IO or conversations: a MESSAGE
packet's payload is handed on as the raw text after its type character.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from engineio import packet as eio
from engineio import payload as eio_payload

OPEN, CLOSE, PING, PONG, MESSAGE, UPGRADE, NOOP = (
    eio.OPEN, eio.CLOSE, eio.PING, eio.PONG, eio.MESSAGE, eio.UPGRADE, eio.NOOP,
)
# What python-socketio and the JavaScript server send in the OPEN packet for the websocket transport,
# and for the polling transport, which can be upgraded.
NO_UPGRADES: list[str] = []
POLLING_UPGRADES = ["websocket"]
#: The upgrade probe (a PING carrying "probe") and its answer.
PROBE = "probe"

# python-engineio decodes a JSON-looking payload: ValueError and RecursionError (deep nesting)
# from the JSON decoder, IndexError and TypeError from short or odd frames.
_DECODE_ERRORS = (ValueError, IndexError, TypeError, RecursionError)


class PacketError(ValueError):
    """A frame that is not a valid Engine.IO 4 text packet."""


@dataclass(frozen=True)
class Packet:
    """One decoded Engine.IO packet: its type and, for MESSAGE, the payload text as sent."""

    packet_type: int
    data: str = ""


def decode(frame: str) -> Packet:
    """Decode one text frame; raise ``PacketError`` when it is not a valid Engine.IO 4 text packet."""
    try:
        decoded = eio.Packet(encoded_packet=frame)
    except _DECODE_ERRORS as error:
        raise PacketError(f"invalid Engine.IO packet: {error}") from None
    return _checked(decoded, frame)


def decode_payload(body: str) -> list[Packet]:
    """Decode a polling request's body (packets separated by the record separator, as python-engineio's
    ``Payload`` reads it); raise ``PacketError`` when any packet is invalid or there are too many."""
    try:
        frames = body.split(_SEPARATOR)
        decoded = eio_payload.Payload(encoded_payload=body).packets
    except _DECODE_ERRORS as error:
        raise PacketError(f"invalid Engine.IO payload: {error}") from None
    return [_checked(packet, frame) for packet, frame in zip(decoded, frames)]


def encode_payload(frames: list[str]) -> str:
    """Encoded packets (text frames) as one polling response body, with python-engineio's ``Payload``."""
    return eio_payload.Payload(packets=[eio.Packet(int(frame[0]), frame[1:]) for frame in frames]).encode()


_SEPARATOR = "\x1e"


def _checked(decoded: eio.Packet, frame: str) -> Packet:
    if decoded.packet_type not in range(len(eio.packet_names)):
        raise PacketError(f"unknown Engine.IO packet type {decoded.packet_type}")
    if decoded.binary:
        # A text frame starting with "b" is base64 binary (polling only); the
        # websocket transport sends binary as binary frames, which are refused too.
        raise PacketError("binary Engine.IO messages are not supported")
    # MESSAGE payloads are kept as sent (Socket.IO decodes them); PING and PONG may carry "probe".
    return Packet(decoded.packet_type, frame[1:] if decoded.packet_type in (MESSAGE, PING, PONG) else "")


def new_sid() -> str:
    """A random, URL-safe session id (Engine.IO and Socket.IO use separate ones)."""
    return secrets.token_urlsafe(15)


def open_frame(
    *, sid: str, ping_interval: int, ping_timeout: int, max_payload: int, upgrades: list[str] = NO_UPGRADES
) -> str:
    """The Engine.IO handshake; intervals in seconds, sent in milliseconds."""
    return eio.Packet(
        eio.OPEN,
        {
            "sid": sid,
            "upgrades": upgrades,
            "pingInterval": ping_interval * 1000,
            "pingTimeout": ping_timeout * 1000,
            "maxPayload": max_payload,
        },
    ).encode()


def ping_frame() -> str:
    return eio.Packet(eio.PING).encode()


def pong_frame() -> str:
    return eio.Packet(eio.PONG).encode()


def message_frame(payload: str) -> str:
    """A MESSAGE packet carrying ``payload`` (an encoded Socket.IO packet)."""
    return eio.Packet(eio.MESSAGE, payload).encode()


def pong_probe_frame() -> str:
    """The answer to an upgrade probe."""
    return eio.Packet(eio.PONG, PROBE).encode()


def noop_frame() -> str:
    """What ends a pending poll once the client upgrades."""
    return eio.Packet(eio.NOOP).encode()


def close_frame() -> str:
    return eio.Packet(eio.CLOSE).encode()
