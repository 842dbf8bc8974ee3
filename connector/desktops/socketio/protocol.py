"""Socket.IO 5 packets, the payload of Engine.IO MESSAGE packets, read and built with python-socketio's own
``Packet`` class (no hand-written codec).

Pure functions, no I/O: ``connector.desktops.socketio.server`` owns the Socket.IO
layer of a connection; the Engine.IO framing is ``connector.desktops.engineio.packets``.
"""

from __future__ import annotations

from typing import Any

from socketio import packet as sio

from connector.desktops.engineio import packets as engineio_packets

DEFAULT_NAMESPACE = "/"
# Longest namespace a CONNECT_ERROR names back: longer is no namespace anyone serves, and its echo would let a
# client make the server hold (long-polling: queue in Redis) as much as it sends.
MAX_NAMESPACE_LENGTH = 64
# Largest acknowledgement id, echoed in the ACK: socket.io-client numbers its acknowledgements from 0, one by one.
MAX_ACK_ID = 2**31 - 1
CONNECT, DISCONNECT, EVENT, ACK, CONNECT_ERROR = sio.CONNECT, sio.DISCONNECT, sio.EVENT, sio.ACK, sio.CONNECT_ERROR

# RecursionError: the stdlib JSON decoder raises it for deeply nested arrays
# or objects, which fit easily within maxPayload.
_DECODE_ERRORS = (ValueError, IndexError, TypeError, RecursionError)


class ProtocolError(ValueError):
    """A MESSAGE payload that is not a valid Socket.IO 5 text packet."""


def decode(payload: str) -> sio.Packet:
    """Decode the payload of one Engine.IO MESSAGE; raise ``ProtocolError`` when it is not valid."""
    if not payload:
        # python-socketio would read an empty packet as an EVENT without data.
        raise ProtocolError("empty Socket.IO packet")
    try:
        packet = sio.Packet(encoded_packet=payload)
    except _DECODE_ERRORS as error:
        raise ProtocolError(f"invalid Socket.IO packet: {error}") from None
    if packet.packet_type not in range(len(sio.packet_names)):
        raise ProtocolError(f"unknown Socket.IO packet type {packet.packet_type}")
    if packet.attachment_count or packet.packet_type in (sio.BINARY_EVENT, sio.BINARY_ACK):
        # Desktops and the UI modules send JSON only. The attachments would follow as binary frames (or base64
        # packets over long-polling), which the text-only Engine.IO layer refuses anyway: ending the session at
        # this packet names the reason the client broke it.
        raise ProtocolError("binary attachments are not supported")
    if packet.namespace is not None and len(packet.namespace) > MAX_NAMESPACE_LENGTH:
        raise ProtocolError(f"namespace longer than {MAX_NAMESPACE_LENGTH} characters")
    if packet.id is not None and packet.id > MAX_ACK_ID:
        raise ProtocolError(f"acknowledgement id above {MAX_ACK_ID}")
    _check_payload(packet)
    return packet


def _check_payload(packet: sio.Packet) -> None:
    """The payload rules of socket.io-parser's ``isPayloadValid`` for what the server reads: an EVENT's is an
    array that starts with its name (a string or a number), an ACK's an array. A packet without a payload
    passes, as there (the JavaScript server ignores such an EVENT or ACK, and so does ``SocketIOServer``).

    Unlike there, the names the JavaScript server reserves (``connect``, ``disconnect``, ...) pass: they are
    unknown events here, answered like any other, and nothing gives them a meaning.
    """
    data = packet.data
    if data is None:
        return
    if packet.packet_type == sio.EVENT:
        if not isinstance(data, list):
            raise ProtocolError("EVENT payload is not an array")
        if not data:
            raise ProtocolError("EVENT payload has no event name")
        if not _is_event_name(data[0]):
            raise ProtocolError("event name is neither a string nor a number")
    elif packet.packet_type == sio.ACK and not isinstance(data, list):
        raise ProtocolError("ACK payload is not an array")


def _is_event_name(value: Any) -> bool:
    """A string, or a number as socket.io-parser accepts one (JSON's true and false are not numbers)."""
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def namespace_of(packet: sio.Packet) -> str:
    return packet.namespace or DEFAULT_NAMESPACE


def connected(*, sid: str, namespace: str = DEFAULT_NAMESPACE, **extra: Any) -> str:
    """The CONNECT answer; ``extra`` adds fields (``pid`` for connection state recovery)."""
    return sio.Packet(sio.CONNECT, {"sid": sid, **extra}, namespace=namespace).encode()


def connect_error(message: str, *, namespace: str = DEFAULT_NAMESPACE) -> str:
    return sio.Packet(sio.CONNECT_ERROR, {"message": message}, namespace=namespace).encode()


# binary=False: what we send is JSON text, never bytes. Without it python-socketio walks every
# argument looking for bytes, once per desktop for every event (about 40% of building a frame).


def event(name: str, *args: Any, namespace: str = DEFAULT_NAMESPACE) -> str:
    return sio.Packet(sio.EVENT, [name, *args], namespace=namespace, binary=False).encode()


def event_with_json_argument(name: str, argument_json: str, offset: str | None = None) -> str:
    """``event(name, json.loads(argument_json), offset)`` without decoding: the argument is already compact JSON,
    encoded once for every desktop. ``name`` and ``offset`` must need no JSON escaping (event kinds and
    offsets never do)."""
    tail = f',"{offset}"]' if offset is not None else "]"
    return f'2["{name}",{argument_json}{tail}'


def ack(ack_id: int, *args: Any, namespace: str = DEFAULT_NAMESPACE) -> str:
    return sio.Packet(sio.ACK, list(args), namespace=namespace, id=ack_id, binary=False).encode()


# The same packets framed as whole Engine.IO MESSAGE frames, as a websocket client receives them.


def connected_frame(*, sid: str, namespace: str = DEFAULT_NAMESPACE, **extra: Any) -> str:
    return engineio_packets.message_frame(connected(sid=sid, namespace=namespace, **extra))


def connect_error_frame(message: str, *, namespace: str = DEFAULT_NAMESPACE) -> str:
    return engineio_packets.message_frame(connect_error(message, namespace=namespace))


def event_frame(name: str, *args: Any, namespace: str = DEFAULT_NAMESPACE) -> str:
    return engineio_packets.message_frame(event(name, *args, namespace=namespace))


def ack_frame(ack_id: int, *args: Any, namespace: str = DEFAULT_NAMESPACE) -> str:
    return engineio_packets.message_frame(ack(ack_id, *args, namespace=namespace))
