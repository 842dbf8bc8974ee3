"""Properties of frame handling: whatever a client sends, the documented answer or the documented error.

- Engine.IO text frames (``connector.desktops.engineio.packets.decode``): a ``Packet`` or ``PacketError``;
  the payload of a MESSAGE (``connector.desktops.socketio.protocol.decode``): a Socket.IO packet or
  ``ProtocolError``. Nothing else may escape into the consumer.
- ``/socket.io/`` over a WebSocket, connected to ``/``: any Socket.IO payload is either refused (the
  connection closes with 4400 and the decoder's reason) or answered as docs/desktops.md says (an acknowledgement for
  an event with an id, CONNECT_ERROR for another namespace, nothing otherwise), and the connection goes on.
- ``/ws/`` (``connector.desktops.plain_ws``), driven in-process with channels' ``WebsocketCommunicator`` on
  the real application and Redis: any text frame gets one answer frame of docs/desktops.md's table, as
  strict JSON, echoing the request's ``id``; the connection stays open unless the answer is an
  ``unauthenticated`` error for a refused token (close 4401).
"""

from __future__ import annotations

import json
from typing import Any

from channels.testing import WebsocketCommunicator
from hypothesis import given, settings
from hypothesis import strategies as st
from socketio import packet as sio

from aa_site.asgi import application
from connector import tokens
from connector.desktops import close_codes, plain_ws
from connector.desktops.engineio import packets as engineio_packets
from connector.desktops.socketio import protocol
from testing.raw_socketio import client_factory, open_connected
from testing.strategies import CONVERSATION_NAMES, PROPERTY_SETTINGS, any_text, json_text, json_values

WAIT = 10.0
# Each /ws example opens a connection through the whole application: fewer of them, still a few seconds.
CONNECTION_SETTINGS = settings(PROPERTY_SETTINGS, max_examples=100)

# --- Engine.IO and Socket.IO decoding -----------------------------------------------------------

# Text shaped like the protocols: a type digit, a namespace, an ack id, then JSON (or anything).
socketio_payloads = st.one_of(
    any_text,
    st.builds(
        lambda kind, namespace, ack, data: f"{kind}{namespace}{ack}{data}",
        st.sampled_from(["0", "1", "2", "3", "4", "5", "6", "7", "9", ""]),
        st.sampled_from(["", "/", "/chat,", "/x", "/a,b,"]),
        st.one_of(st.just(""), st.integers(min_value=0, max_value=10**25).map(str)),
        st.one_of(json_values.map(json_text), any_text, st.just("-Infinity"), st.just('["x", NaN]')),
    ),
)
engineio_frames = st.one_of(
    any_text,
    st.builds(
        lambda kind, rest: kind + rest, st.sampled_from(list("0123456b7")), st.one_of(any_text, socketio_payloads)
    ),
)


@PROPERTY_SETTINGS
@given(engineio_frames)
def test_any_engineio_frame_decodes_or_is_a_packet_error(frame: str) -> None:
    try:
        packet = engineio_packets.decode(frame)
    except engineio_packets.PacketError:
        return
    assert packet.packet_type in range(len(engineio_packets.eio.packet_names))
    if packet.packet_type == engineio_packets.MESSAGE:
        assert packet.data == frame[1:]


@PROPERTY_SETTINGS
@given(socketio_payloads)
def test_any_socketio_payload_decodes_or_is_a_protocol_error(payload: str) -> None:
    try:
        packet = protocol.decode(payload)
    except protocol.ProtocolError:
        return
    assert packet.packet_type in (sio.CONNECT, sio.DISCONNECT, sio.EVENT, sio.ACK, sio.CONNECT_ERROR)
    assert isinstance(protocol.namespace_of(packet), str)


@CONNECTION_SETTINGS
@given(socketio_payloads)
async def test_any_socketio_payload_is_refused_with_its_reason_or_answered_as_documented(payload: str) -> None:
    try:
        expected = protocol.decode(payload)
    except protocol.ProtocolError as error:
        expected, refusal = None, str(error)
    async with client_factory() as make:
        client = await open_connected(make)
        await client.send("4" + payload)
        if expected is None:
            assert await client.closed() == (close_codes.PROTOCOL_ERROR, close_codes.reason(refusal))
            return
        # A client's PING is answered PONG in order: whatever the payload made the server send comes before it.
        await client.send("2")
        answers = []
        while (frame := await client.receive()) != "3":
            answers.append(sio.Packet(encoded_packet=frame[1:]))
    namespace = protocol.namespace_of(expected)
    if namespace != protocol.DEFAULT_NAMESPACE:
        answer_types = [sio.CONNECT_ERROR] if expected.packet_type == sio.CONNECT else []
    elif expected.packet_type == sio.EVENT and expected.data is not None and expected.id is not None:
        answer_types = [sio.ACK]
    else:
        answer_types = []
    assert [answer.packet_type for answer in answers] == answer_types, (payload, answers)
    for answer in answers:
        assert protocol.namespace_of(answer) == namespace
        if answer.packet_type == sio.ACK:
            assert answer.id == expected.id and answer.data[0] is False
        else:
            assert answer.data == {"message": "Invalid namespace"}


# --- the /ws consumer ---------------------------------------------------------------------------

FRAME_TYPES = ["ping", "authenticate", "join", "leave", "stream_request", "end_stream"]
frames = st.one_of(
    st.fixed_dictionaries(
        {"type": st.one_of(st.sampled_from(FRAME_TYPES), json_values)},
        optional={
            "id": json_values,
            "token": st.one_of(json_values, st.just("Bearer x.y.z")),
            "conversation": CONVERSATION_NAMES,
            "after": st.one_of(json_values, st.just("abc-1")),
            "history": json_values,
            "streamId": json_values,
            "method": json_values,
            "payload": json_values,
        },
    ),
    json_values,
)
# The answer types and error codes docs/desktops.md documents for a request.
ANSWERS = {"pong", "authenticated", "joined", "left", "stream_ended", "error"}
ERROR_CODES = {"bad_frame", "unknown_type", "unauthenticated", "already_authenticated", "invalid_conversation",
               "invalid_offset"}
FOLLOW_UPS = {"history_gap", "event"}
NON_JSON_TEXT = st.one_of(any_text, st.sampled_from(['{"type": "ping", "id": NaN}', "[" * 3000, "{"]))


def strict_json(text: str) -> Any:
    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in a frame: {text[:200]}")

    return json.loads(text, parse_constant=refuse)


async def exchange(text: str, *, token: str | None = None) -> tuple[dict[str, Any], int | None]:
    """Send ``text`` on a fresh connection (authenticated with ``token`` first); the answer and any close code."""
    communicator = WebsocketCommunicator(application, "/ws/")
    connected, _ = await communicator.connect()
    assert connected
    try:
        if token is not None:
            await communicator.send_json_to({"type": "authenticate", "token": token})
            assert (await communicator.receive_json_from(WAIT))["type"] == "authenticated"
        # send_input, not send_to: send_to refuses an empty frame, which a client can send.
        await communicator.send_input({"type": "websocket.receive", "text": text})
        answer = strict_json((await communicator.receive_output(WAIT))["text"])
        closed = None
        while closed is None and not await communicator.receive_nothing(0.02):
            output = await communicator.receive_output(WAIT)
            if output["type"] == "websocket.close":
                closed = output.get("code")
            else:
                # What may follow an answer: a join's replay notice or events (documented frames, not answers).
                assert strict_json(output["text"])["type"] in FOLLOW_UPS, output
        if closed is None:
            # Still open: it must still answer.
            await communicator.send_json_to({"type": "ping", "id": "after"})
            assert strict_json((await communicator.receive_output(WAIT))["text"]) == {"type": "pong", "id": "after"}
        return answer, closed
    finally:
        await communicator.disconnect()  # re-raises whatever the consumer raised


def assert_documented(frame: Any, answer: dict[str, Any], closed: int | None) -> None:
    assert answer.get("type") in ANSWERS, answer
    if answer["type"] == "error":
        assert answer["code"] in ERROR_CODES and isinstance(answer["message"], str), answer
    request_id = frame.get("id") if isinstance(frame, dict) else None
    if request_id is not None and answer.get("code") != "bad_frame":
        assert answer.get("id") == request_id, (frame, answer)
    if closed is not None:
        assert closed == close_codes.UNAUTHENTICATED and answer.get("code") == "unauthenticated", (answer, closed)


@CONNECTION_SETTINGS
@given(frames)
async def test_any_frame_before_authentication_gets_a_documented_answer(frame: Any) -> None:
    text = json_text(frame)
    if len(text) > plain_ws.MAX_FRAME_CHARS:
        return
    answer, closed = await exchange(text)
    assert_documented(frame, answer, closed)


@CONNECTION_SETTINGS
@given(NON_JSON_TEXT)
async def test_any_text_that_is_not_a_json_object_is_a_bad_frame(text: str) -> None:
    try:
        decoded = json.loads(text)
    except (ValueError, RecursionError):
        decoded = None
    else:
        if isinstance(decoded, dict) and all(not isinstance(v, float) or v == v for v in decoded.values()):
            return  # a JSON object after all: the other property covers it
    answer, closed = await exchange(text)
    assert (answer["type"], answer["code"], closed) == ("error", "bad_frame", None), answer


# Authenticated: every type but stream_request, which would open a Dialogflow call (covered by the stream tests).
authenticated_frames = frames.filter(
    lambda frame: not (isinstance(frame, dict) and frame.get("type") == "stream_request")
)


@CONNECTION_SETTINGS
@given(authenticated_frames)
async def test_any_frame_after_authentication_gets_a_documented_answer(frame: Any) -> None:
    text = json_text(frame)
    if len(text) > plain_ws.MAX_FRAME_CHARS:
        return
    answer, closed = await exchange(text, token=tokens.issue_token(user="fuzz"))
    assert_documented(frame, answer, closed)
    assert closed is None, answer  # an authenticated connection is never closed by a frame
