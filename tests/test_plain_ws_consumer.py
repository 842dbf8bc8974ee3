"""The plain JSON WebSocket protocol at ``/ws/`` on the real ASGI application and Redis pub/sub layer.

These tests are the protocol's executable documentation: every frame is a
JSON object with a ``type``; requests may carry an ``id`` that the reply
echoes. A session: ``authenticate`` -> ``authenticated``; ``join`` ->
``joined``; then ``event`` frames; ``leave`` -> ``left``; ``ping`` -> ``pong``.
Errors are ``{"type": "error", "code", "message"[, "id"]}``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from connector import tokens
from connector.desktops import membership, plain_ws
from events.kinds import EventKind
from testing.plain_ws_client import WAIT, PlainTestClient
from testing.sample_events import publish

LONG_NAME = "projects/p/locations/global/conversations/c1"
SHORT_NAME = "projects/p/conversations/c1"
OTHER = "projects/p/conversations/c2"


@pytest.fixture
async def new_client() -> AsyncIterator[Callable[[], Any]]:
    """Open clients; disconnect them all afterwards, which re-raises any error the consumer hit."""
    made: list[PlainTestClient] = []

    async def make() -> PlainTestClient:
        made.append(PlainTestClient())
        await made[-1].open()
        return made[-1]

    yield make
    for client in made:
        await client.communicator.disconnect(timeout=WAIT)


@pytest.fixture
def authenticated(new_client) -> Callable[..., Any]:
    """Open a client and authenticate it with a valid token."""

    async def open_authenticated(user: str = "alice") -> PlainTestClient:
        client = await new_client()
        reply = await client.request({"type": "authenticate", "token": tokens.issue_token(user=user)})
        assert reply["type"] == "authenticated"
        return client

    return open_authenticated


def event_frame(event: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The frame a client receives for ``event``."""
    return {"type": "event", "event": event, "payload": payload}


# --- authentication ----------------------------------------------------------------------------


async def test_authenticate_names_the_user_and_echoes_the_id(new_client) -> None:
    """``authenticate`` with a valid token -> ``{"type": "authenticated", "user": ..., "id": ...}``."""
    client = await new_client()
    reply = await client.request({"type": "authenticate", "token": tokens.issue_token(user="alice"), "id": "a1"})
    assert reply == {"type": "authenticated", "user": "alice", "id": "a1"}


async def test_authenticate_without_id_has_no_id(new_client) -> None:
    """A request without ``id`` gets a reply without ``id``; a Bearer prefix is accepted."""
    client = await new_client()
    reply = await client.request({"type": "authenticate", "token": "Bearer " + tokens.issue_token(user="bob")})
    assert reply == {"type": "authenticated", "user": "bob"}


@pytest.mark.parametrize("token", ["not-a-jwt", "", None, 42], ids=["garbage", "empty", "null", "number"])
async def test_bad_token_is_refused_and_closed(new_client, token: Any) -> None:
    """A bad token gets an ``unauthenticated`` error, then the connection closes with 4401."""
    client = await new_client()
    reply = await client.request({"type": "authenticate", "token": token, "id": 3})
    assert {key: reply[key] for key in ("type", "code", "id")} == {"type": "error", "code": "unauthenticated", "id": 3}
    assert isinstance(reply["message"], str) and reply["message"]
    assert await client.close_code() == plain_ws.CLOSE_UNAUTHENTICATED == 4401


async def test_authenticating_twice_is_an_error(authenticated) -> None:
    """A second ``authenticate`` is refused with ``already_authenticated``; the session stays as it was."""
    client = await authenticated()
    reply = await client.request({"type": "authenticate", "token": tokens.issue_token(user="eve"), "id": 2})
    assert (reply["type"], reply["code"], reply["id"]) == ("error", "already_authenticated", 2)
    assert await client.request({"type": "ping"}) == {"type": "pong"}


@pytest.mark.parametrize("kind", ["join", "leave"])
async def test_join_or_leave_before_authenticate_is_refused(new_client, kind: str) -> None:
    """join and leave need an authenticated connection; the connection stays open for ``authenticate``."""
    client = await new_client()
    reply = await client.request({"type": kind, "conversation": SHORT_NAME, "id": 9})
    assert (reply["type"], reply["code"], reply["id"]) == ("error", "unauthenticated", 9)
    reply = await client.request({"type": "authenticate", "token": tokens.issue_token(user="alice")})
    assert reply["type"] == "authenticated"


async def test_auth_timeout_closes_with_4401(new_client, settings) -> None:
    """No ``authenticate`` within WEBSOCKET_AUTH_TIMEOUT: an ``unauthenticated`` error, then close 4401."""
    settings.WEBSOCKET_AUTH_TIMEOUT = 1
    client = await new_client()
    assert (await client.receive())["code"] == "unauthenticated"
    assert await client.close_code() == 4401


async def test_authenticated_connection_outlives_auth_timeout(authenticated, new_client, settings) -> None:
    """The auth timeout only closes connections that never authenticated."""
    settings.WEBSOCKET_AUTH_TIMEOUT = 1
    client = await authenticated()
    # Opened later, so its timer fires later: once it is closed, the first one's has fired too.
    latecomer = await new_client()
    assert (await latecomer.receive())["code"] == "unauthenticated"
    assert await latecomer.close_code() == 4401
    assert await client.request({"type": "ping"}) == {"type": "pong"}


# --- join, leave, events ------------------------------------------------------------------------


@pytest.mark.parametrize("name", [LONG_NAME, SHORT_NAME], ids=["with location", "without location"])
async def test_join_and_leave_reply_with_the_normalised_name(authenticated, name: str) -> None:
    """``joined`` and ``left`` carry ``projects/P/conversations/C`` and the request id."""
    client = await authenticated()
    assert await client.request({"type": "join", "conversation": name, "id": 1}) == {
        "type": "joined",
        "conversation": SHORT_NAME,
        "id": 1,
    }
    assert await client.request({"type": "leave", "conversation": name, "id": 2}) == {
        "type": "left",
        "conversation": SHORT_NAME,
        "id": 2,
    }


@pytest.mark.parametrize("conversation", ["conversations/c", "projects/p/conversations/c/x", 7, None])
async def test_invalid_conversation_is_an_error_echoing_the_id(authenticated, conversation: Any) -> None:
    """An invalid name -> ``invalid_conversation`` with the request id; the connection stays open."""
    client = await authenticated()
    reply = await client.request({"type": "join", "conversation": conversation, "id": "j-1"})
    assert (reply["type"], reply["code"], reply["id"]) == ("error", "invalid_conversation", "j-1")
    assert await client.request({"type": "ping", "id": 5}) == {"type": "pong", "id": 5}


async def test_join_beyond_the_limit_is_an_invalid_conversation(authenticated) -> None:
    """More than MAX_CONVERSATIONS_PER_CONNECTION joins -> ``invalid_conversation`` naming the limit."""
    client = await authenticated()
    limit = membership.MAX_CONVERSATIONS_PER_CONNECTION
    for index in range(limit):
        reply = await client.request({"type": "join", "conversation": f"projects/p/conversations/n{index}"})
        assert reply["type"] == "joined"
    reply = await client.request({"type": "join", "conversation": OTHER, "id": 65})
    assert (reply["type"], reply["code"], reply["id"]) == ("error", "invalid_conversation", 65)
    assert str(limit) in reply["message"]


async def test_joins_past_the_rate_are_refused_with_the_reason(authenticated, settings) -> None:
    """Joins past DESKTOP_JOIN_BURST (refilled at DESKTOP_JOINS_PER_SECOND) -> ``invalid_conversation`` saying
    so, however many were left; the connection goes on."""
    settings.DESKTOP_JOIN_BURST, settings.DESKTOP_JOINS_PER_SECOND = 3, 0.1
    client = await authenticated()
    for index in range(3):
        reply = await client.request({"type": "join", "conversation": f"projects/p/conversations/r{index}"})
        assert reply["type"] == "joined"
        await client.request({"type": "leave", "conversation": f"projects/p/conversations/r{index}"})
    reply = await client.request({"type": "join", "conversation": OTHER, "id": 4})
    assert (reply["type"], reply["code"], reply["id"]) == ("error", "invalid_conversation", 4)
    assert reply["message"].startswith("joining conversations too fast")
    assert await client.request({"type": "ping", "id": 5}) == {"type": "pong", "id": 5}


@pytest.mark.parametrize("event", list(EventKind))
async def test_events_arrive_as_event_frames(authenticated, event: str) -> None:
    """Each of the four events arrives as ``{"type": "event", "event", "payload"}``, payload unchanged."""
    client = await authenticated()
    await client.request({"type": "join", "conversation": LONG_NAME})
    payload = await publish(SHORT_NAME, event)
    assert await client.receive() == event_frame(event, payload)


async def test_only_sockets_in_the_conversation_receive(authenticated) -> None:
    """Two clients in a conversation both receive; a client in another conversation gets only its own."""
    first, second, elsewhere = await authenticated("a"), await authenticated("b"), await authenticated("c")
    await first.request({"type": "join", "conversation": LONG_NAME})
    await second.request({"type": "join", "conversation": SHORT_NAME})
    await elsewhere.request({"type": "join", "conversation": OTHER})
    payload = await publish(SHORT_NAME)
    marker = await publish(OTHER)
    assert await first.receive() == event_frame(EventKind.NEW_MESSAGE, payload)
    assert await second.receive() == event_frame(EventKind.NEW_MESSAGE, payload)
    assert await elsewhere.receive() == event_frame(EventKind.NEW_MESSAGE, marker)


async def test_no_events_after_leave(authenticated) -> None:
    """After ``leave`` nothing more arrives from that conversation (the later event from another does)."""
    client = await authenticated()
    await client.request({"type": "join", "conversation": SHORT_NAME})
    await client.request({"type": "join", "conversation": OTHER})
    await client.request({"type": "leave", "conversation": LONG_NAME})
    await publish(SHORT_NAME)
    marker = await publish(OTHER)
    assert await client.receive() == event_frame(EventKind.NEW_MESSAGE, marker)


# --- malformed frames -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("{not json", id="invalid JSON"),
        pytest.param("[1, 2]", id="array"),
        pytest.param('"ping"', id="string"),
        pytest.param("[" * 50_000, id="deeply nested JSON"),  # within MAX_FRAME_CHARS
        pytest.param('{"type": "ping", "id": ' + "1" * 5000 + "}", id="integer beyond Python's digit limit"),
        pytest.param(json.dumps({"type": "ping", "pad": "x" * plain_ws.MAX_FRAME_CHARS}), id="oversize"),
        # Python's json reads these; they are not JSON, and echoing them made frames browsers cannot parse.
        pytest.param('{"type": "ping", "id": NaN}', id="NaN"),
        pytest.param('{"type": "ping", "id": Infinity}', id="Infinity"),
        pytest.param('{"type": "ping", "id": [1, {"x": -Infinity}]}', id="nested -Infinity"),
        pytest.param('{"type": "ping", "id": -1e400}', id="number beyond a float"),
    ],
)
async def test_bad_frame_is_an_error_and_the_connection_stays_open(new_client, text: str) -> None:
    """Malformed text gets a ``bad_frame`` error without an id, and the next request still works."""
    client = await new_client()
    await client.communicator.send_to(text_data=text)
    reply = await client.receive()
    assert (reply["type"], reply["code"], "id" in reply) == ("error", "bad_frame", False)
    assert await client.request({"type": "ping"}) == {"type": "pong"}


async def test_answer_to_a_nan_id_is_strict_json(new_client) -> None:
    """The raw answer parses with NaN and Infinity refused (before: ``{"type":"pong","id":NaN}``)."""
    client = await new_client()
    await client.communicator.send_to(text_data='{"type": "ping", "id": NaN}')
    text = (await client.communicator.receive_output(WAIT))["text"]

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in {text}")

    reply = json.loads(text, parse_constant=refuse)
    assert (reply["type"], reply["code"]) == ("error", "bad_frame")


async def test_binary_frame_is_a_bad_frame(new_client) -> None:
    """Binary frames get ``bad_frame``: the protocol is JSON text only."""
    client = await new_client()
    await client.communicator.send_to(bytes_data=b'{"type": "ping"}')
    assert (await client.receive())["code"] == "bad_frame"
    assert await client.request({"type": "ping"}) == {"type": "pong"}


@pytest.mark.parametrize("frame", [{"type": "subscribe", "id": 4}, {"id": 4}], ids=["unknown", "missing"])
async def test_unknown_type_is_an_error_echoing_the_id(new_client, frame: dict[str, Any]) -> None:
    """A frame whose ``type`` the server does not know -> ``unknown_type`` with the request id."""
    client = await new_client()
    reply = await client.request(frame)
    assert (reply["type"], reply["code"], reply["id"]) == ("error", "unknown_type", 4)


async def test_answers_repeat_no_more_than_64_characters_of_what_the_client_sent(new_client) -> None:
    """An unknown type is named by its first 64 characters; a request id longer than 64 characters, or a number past
    2^53, is a ``bad_frame`` that does not repeat it; an ``end_stream`` for a stream id no stream could have
    answers ``streamId: null``. Within those bounds, ids are echoed as ever."""
    client = await new_client()
    reply = await client.request({"type": "x" * 64 + "y" * 60_000, "id": 5})
    assert reply == {"type": "error", "code": "unknown_type", "message": f"unknown frame type {'x' * 64!r}", "id": 5}
    for request_id in ("i" * 65, 2**53 + 1, {"nested": "object"}):
        reply = await client.request({"type": "ping", "id": request_id})
        assert (reply["type"], reply["code"], "id" in reply) == ("error", "bad_frame", False), reply
        assert len(json.dumps(reply)) < 200
    assert await client.request({"type": "ping", "id": "i" * 64}) == {"type": "pong", "id": "i" * 64}
    assert await client.request({"type": "ping", "id": -(2**53)}) == {"type": "pong", "id": -(2**53)}
    reply = await client.request({"type": "end_stream", "streamId": "s" * 60_000, "id": 6})
    assert reply == {"type": "stream_ended", "streamId": None, "id": 6}


async def test_ping_is_answered_with_pong(new_client) -> None:
    """``ping`` works before authentication too, so clients can probe the connection."""
    client = await new_client()
    assert await client.request({"type": "ping", "id": "p"}) == {"type": "pong", "id": "p"}
