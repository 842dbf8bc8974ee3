"""The codecs ``connector.desktops.engineio.packets`` and ``connector.desktops.socketio.protocol``: no server, no channel layer.

Frames the server sends are decoded here exactly as python-socketio's client
decodes them (Engine.IO packet first, then the Socket.IO packet in its data),
and the frames a client sends are built with python-socketio's own packet
classes, so the codec is checked against an independent implementation.
Exact texts pin the bytes the JavaScript server sends, which the UI modules expect.
"""

from __future__ import annotations

import base64
import json
import re

import pytest
from engineio import packet as eio
from socketio import packet as sio

from connector.desktops.engineio import packets
from connector.desktops.socketio import protocol

CONVERSATION = "projects/p/conversations/c"


def client_decode(frame: str) -> sio.Packet:
    """Decode a server MESSAGE frame the way python-socketio's client does."""
    outer = eio.Packet(encoded_packet=frame)
    assert outer.packet_type == eio.MESSAGE
    return sio.Packet(encoded_packet=outer.data)


def client_encode(packet: sio.Packet) -> str:
    """Encode a Socket.IO packet the way python-socketio's client sends it over a websocket."""
    return eio.Packet(eio.MESSAGE, packet.encode()).encode()


def decode_frame(frame: str) -> tuple[int, sio.Packet | None]:
    """A client frame through both layers, as the server reads it: the Engine.IO type, then for MESSAGE
    the Socket.IO packet (``packets.PacketError`` or ``protocol.ProtocolError`` when either refuses it)."""
    outer = packets.decode(frame)
    return outer.packet_type, protocol.decode(outer.data) if outer.packet_type == packets.MESSAGE else None


def test_open_frame_is_what_the_javascript_server_sends() -> None:
    """The handshake lists the fields in the reference order, intervals in milliseconds, no upgrades."""
    frame = packets.open_frame(sid="abc", ping_interval=25, ping_timeout=20, max_payload=1_000_000)
    assert frame == '0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}'


def test_open_frame_decodes_as_an_engineio_open_packet() -> None:
    """python-engineio's client reads the handshake fields it needs from the OPEN frame."""
    decoded = eio.Packet(encoded_packet=packets.open_frame(sid="s1", ping_interval=1, ping_timeout=2, max_payload=4096))
    assert decoded.packet_type == eio.OPEN
    assert decoded.data == {"sid": "s1", "upgrades": [], "pingInterval": 1000, "pingTimeout": 2000, "maxPayload": 4096}


def test_heartbeat_frames_are_bare_packet_types() -> None:
    """Engine.IO 4 PING is "2" and PONG is "3", without payload."""
    assert packets.ping_frame() == "2"
    assert packets.pong_frame() == "3"
    assert eio.Packet(encoded_packet=packets.ping_frame()).packet_type == eio.PING


def test_connected_frame_carries_the_socketio_sid() -> None:
    """CONNECT on the default namespace is ``40{"sid":...}`` and decodes to a CONNECT packet."""
    frame = protocol.connected_frame(sid="xyz")
    assert frame == '40{"sid":"xyz"}'
    packet = client_decode(frame)
    assert (packet.packet_type, packet.namespace, packet.data) == (sio.CONNECT, None, {"sid": "xyz"})


def test_connect_error_frame_names_its_namespace() -> None:
    """CONNECT_ERROR for another namespace carries that namespace, so the client fails only that socket."""
    assert protocol.connect_error_frame("Token is expired") == '44{"message":"Token is expired"}'
    frame = protocol.connect_error_frame("Invalid namespace", namespace="/admin")
    assert frame == '44/admin,{"message":"Invalid namespace"}'
    packet = client_decode(frame)
    assert (packet.packet_type, packet.namespace, packet.data) == (
        sio.CONNECT_ERROR,
        "/admin",
        {"message": "Invalid namespace"},
    )


def test_event_frame_without_arguments() -> None:
    """The ``unauthenticated`` event the sample emits has no argument: ``42["unauthenticated"]``."""
    assert protocol.event_frame("unauthenticated") == '42["unauthenticated"]'


def test_event_frame_round_trips_a_desktop_payload() -> None:
    """An event's argument reaches the client unchanged, including non-ASCII text and a JSON string field."""
    payload = {
        "conversation_name": CONVERSATION,
        "data": json.dumps({"conversation": CONVERSATION, "text": "Grüß dich, 你好 \"quoted\"\n"}),
        "data_type": "new-message-event",
        "message_id": "123",
    }
    packet = client_decode(protocol.event_frame("new-message-event", payload))
    assert packet.packet_type == sio.EVENT
    assert packet.id is None
    assert packet.data == ["new-message-event", payload]


def test_ack_frame_answers_the_request_id() -> None:
    """An acknowledgement is ``43<id>[args...]``, decoded as ACK with that id."""
    frame = protocol.ack_frame(7, True, CONVERSATION)
    assert frame == f'437[true,"{CONVERSATION}"]'
    packet = client_decode(frame)
    assert (packet.packet_type, packet.id, packet.data) == (sio.ACK, 7, [True, CONVERSATION])


def test_new_sid_is_random_and_url_safe() -> None:
    """Session ids are unguessable and safe in a query string."""
    sids = {packets.new_sid() for _ in range(100)}
    assert len(sids) == 100
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{20,}", sid) for sid in sids)


@pytest.mark.parametrize(
    ("frame", "eio_type"),
    [("1", eio.CLOSE), ("2", eio.PING), ("3", eio.PONG), ("6", eio.NOOP)],
)
def test_decode_engineio_control_frames(frame: str, eio_type: int) -> None:
    """Engine.IO packets other than MESSAGE decode to their type and no Socket.IO packet."""
    assert decode_frame(frame) == (eio_type, None)


@pytest.mark.parametrize(
    "packet",
    [
        sio.Packet(sio.CONNECT, {"token": "a.b.c"}),
        sio.Packet(sio.CONNECT, {"token": "a.b.c"}, namespace="/admin"),
        sio.Packet(sio.CONNECT),
        sio.Packet(sio.DISCONNECT),
        sio.Packet(sio.EVENT, ["join-conversation", CONVERSATION], id=3),
        sio.Packet(sio.EVENT, ["leave-conversation", "projects/p/locations/l/conversations/c"], id=1234567),
        sio.Packet(sio.EVENT, ["hello", {"nested": [1, None, "é"]}]),
        sio.Packet(sio.EVENT, ["other"], namespace="/other", id=12),
        sio.Packet(sio.ACK, ["done"], id=5),
        sio.Packet(sio.EVENT, [42, "x"], id=6),
        sio.Packet(sio.EVENT, [-1.5]),
        sio.Packet(sio.EVENT, ["disconnect"], id=7),
        sio.Packet(sio.EVENT),
        sio.Packet(sio.ACK, [], id=8),
        sio.Packet(sio.ACK, id=9),
    ],
    ids=lambda packet: client_encode(packet)[:40],
)
def test_decode_frames_python_socketio_sends(packet: sio.Packet) -> None:
    """Every packet python-socketio's client can send (without binary) decodes to the same fields."""
    eio_type, incoming = decode_frame(client_encode(packet))
    assert eio_type == eio.MESSAGE
    assert incoming is not None
    assert incoming.packet_type == packet.packet_type
    assert incoming.data == packet.data
    assert incoming.id == packet.id
    assert protocol.namespace_of(incoming) == (packet.namespace or protocol.DEFAULT_NAMESPACE)


def test_decode_namespace_drops_the_query() -> None:
    """A namespace sent with a query (``/admin?x=1``) is the namespace without it."""
    _, incoming = decode_frame('40/admin?x=1,{"token":"t"}')
    assert protocol.namespace_of(incoming) == "/admin"


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param("", id="empty frame"),
        pytest.param("x", id="non-numeric Engine.IO type"),
        pytest.param("7", id="unknown Engine.IO type"),
        pytest.param("4", id="empty Socket.IO packet"),
        pytest.param("4x", id="non-numeric Socket.IO type"),
        pytest.param("47", id="unknown Socket.IO type"),
        pytest.param('42["join-conversation"', id="truncated JSON"),
        pytest.param("42" + "1" * 101 + "[]", id="ack id too long"),
        pytest.param("42" + str(2**31) + '["x"]', id="ack id past 2^31 - 1"),
        pytest.param("40/" + "n" * 65 + ",{}", id="namespace longer than 64 characters"),
        pytest.param('451-["join-conversation",{"_placeholder":true,"num":0}]', id="binary attachment"),
        pytest.param('450-["join-conversation"]', id="binary event type"),
        pytest.param('461-1[{"_placeholder":true,"num":0}]', id="binary ack"),
        pytest.param("b" + base64.b64encode(b'2["join-conversation"]').decode(), id="base64 binary message"),
        # Valid base64 that, read as text, would also be a Socket.IO EVENT with ack id 345.
        pytest.param("b2345", id="base64 binary message that looks like an event"),
        pytest.param("42[]", id="empty event array"),
        pytest.param('42{"a":1}', id="event payload an object"),
        pytest.param("421[null]", id="event name null"),
        pytest.param("42[false]", id="event name false"),
        pytest.param("42[[]]", id="event name an array"),
        pytest.param('43{"a":1}', id="ack payload an object"),
        pytest.param('431"done"', id="ack payload a string"),
        pytest.param("43" + str(2**31) + "[]", id="ack packet id past 2^31 - 1"),
        pytest.param("42" + "[" * 100_000, id="deeply nested array"),
        pytest.param("42" + '{"a":' * 100_000, id="deeply nested object"),
    ],
)
def test_decode_rejects_invalid_frames(frame: str) -> None:
    """Anything that is not a valid text Engine.IO 4 / Socket.IO 5 packet raises ``PacketError`` or ``ProtocolError``, nothing else."""
    with pytest.raises((packets.PacketError, protocol.ProtocolError)):
        decode_frame(frame)


def test_decode_takes_the_largest_ack_id_and_namespace() -> None:
    """The bounds' own values are still packets: an ack id of 2^31 - 1, a namespace of 64 characters."""
    assert decode_frame("42" + str(2**31 - 1) + '["x"]')[1].id == 2**31 - 1
    assert protocol.namespace_of(decode_frame("40/" + "n" * 63 + ",{}")[1]) == "/" + "n" * 63
