"""A plain JSON WebSocket protocol at ``/ws/`` for clients that cannot speak Socket.IO.

Every frame is a JSON object with a ``type``; docs/desktops.md documents the
protocol with an example session ("Plain WebSocket protocol (`/ws/`)"). The token travels in the first frame,
never in the URL, so it stays out of access logs. Each frame type has one
handler (``frame_handlers``); the desktop itself (identity, conversations,
events) is ``connector.desktops.consumer``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from common import untrusted
from connector import tokens
from connector.desktops import close_codes
from connector.desktops.consumer import DesktopConsumer
from connector.desktops.membership import MembershipError
from events.history import Event, Offset

CLOSE_UNAUTHENTICATED = close_codes.UNAUTHENTICATED
MAX_FRAME_CHARS = 64 * 1024
# Answers repeat at most this much of what a client sent (a request id, an unknown type), so that what the
# server sends back is never as large as what it was sent.
MAX_ECHOED_CHARS = 64
# Request ids: JSON numbers that every JSON parser holds exactly (doubles), or short strings.
MAX_REQUEST_ID = 2**53

FrameHandler = Callable[["PlainWebSocketConsumer", dict[str, Any], Any], Awaitable[None]]


class PlainWebSocketConsumer(DesktopConsumer, AsyncJsonWebsocketConsumer):
    """authenticate -> join/leave -> receive ``event`` frames."""

    frame_kind = "plain"
    count_replays = True  # the join's answer says how many events its replay holds

    async def connect(self) -> None:
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """``AsyncJsonWebsocketConsumer.receive``, answering what is not a JSON text frame with ``bad_frame``."""
        if text_data is None:
            await self._error("bad_frame", "binary frames are not supported; send JSON text")
            return
        if len(text_data) > MAX_FRAME_CHARS:
            await self._error("bad_frame", f"frame is longer than {MAX_FRAME_CHARS} characters")
            return
        try:
            content = await self.decode_json(text_data)
        except untrusted.NotJson:
            await self._error("bad_frame", "frame is not valid JSON")
            return
        await self.receive_json(content)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict):
            await self._error("bad_frame", "frame must be a JSON object")
            return
        request_id = content.get("id")
        if not _echoable(request_id):
            await self._error("bad_frame", f"id must be a number of at most {MAX_REQUEST_ID} or a string of at most "
                                           f"{MAX_ECHOED_CHARS} characters")
            return
        kind = content.get("type")
        handler = self.frame_handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            shown = repr(kind[:MAX_ECHOED_CHARS]) if isinstance(kind, str) else "(not a string)"
            await self._error("unknown_type", f"unknown frame type {shown}", request_id)
            return
        await handler(self, content, request_id)

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        """The frame's JSON; ``untrusted.NotJson`` for anything else, ``NaN`` and ``Infinity`` included."""
        return untrusted.json_value(text_data)

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        """Compact JSON; never ``NaN`` or ``Infinity`` (ValueError instead), which no JSON parser need accept."""
        return json.dumps(content, separators=(",", ":"), allow_nan=False)

    def frame_event(self, event: Event) -> str:
        # The payload is already compact JSON; the frame equals encode_json of the same object.
        return f'{{"type":"event","event":"{event.kind}","payload":{event.payload_json},"offset":"{event.offset}"}}'

    async def send_stream(self, kind: str, message: dict[str, Any]) -> None:
        await self.send_json({"type": f"stream_{kind}", **message})

    # --- one handler per frame type ------------------------------------------------------------

    async def on_ping(self, frame: dict[str, Any], request_id: Any) -> None:
        await self._reply({"type": "pong"}, request_id)

    async def on_authenticate(self, frame: dict[str, Any], request_id: Any) -> None:
        if self.identity is not None:
            await self._error("already_authenticated", "this connection is already authenticated", request_id)
            return
        try:
            await self.authenticate(frame.get("token"))
        except tokens.InvalidToken as error:
            await self._error("unauthenticated", str(error), request_id)
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        await self._reply({"type": "authenticated", "user": self.identity.user}, request_id)

    async def on_join(self, frame: dict[str, Any], request_id: Any) -> None:
        """``join``; ``"after": <offset>`` resumes after that event, ``"history": true`` replays what is stored."""
        if self.identity is None:
            await self._error("unauthenticated", "send an authenticate frame first", request_id)
            return
        after = None
        if "after" in frame:
            after = Offset.parse(frame["after"])
            if after is None:
                await self._error("invalid_offset", "after must be an offset this server sent", request_id)
                return
        history = frame.get("history") is True and after is None
        try:
            joined = await self.join_conversation(frame.get("conversation"), after=after, history=history)
        except MembershipError as error:
            await self._error("invalid_conversation", str(error), request_id)
            return
        answer: dict[str, Any] = {"type": "joined", "conversation": joined.conversation}
        replay = joined.replay
        if replay is not None:
            answer.update(replayed=replay.total, complete=replay.complete)
        await self._reply(answer, request_id)
        if replay is not None and not replay.complete:
            await self.send_json({
                "type": "history_gap",
                "conversation": joined.conversation,
                "message": "the history no longer reaches back that far: events may be missing before the replay",
            })
        self.send_replay(replay)

    async def on_leave(self, frame: dict[str, Any], request_id: Any) -> None:
        await self._membership(self.leave_conversation, "left", frame.get("conversation"), request_id)

    async def on_stream_request(self, frame: dict[str, Any], request_id: Any) -> None:
        if self.identity is None:
            await self._error("unauthenticated", "send an authenticate frame first", request_id)
            return
        await self.stream_registry().request(self.identity, frame)  # refusals arrive as stream_error

    async def on_end_stream(self, frame: dict[str, Any], request_id: Any) -> None:
        _, stream_id = await self.stream_registry().end(frame)
        await self._reply({"type": "stream_ended", "streamId": stream_id}, request_id)

    frame_handlers: dict[str, FrameHandler] = {
        "ping": on_ping,
        "authenticate": on_authenticate,
        "join": on_join,
        "leave": on_leave,
        "stream_request": on_stream_request,
        "end_stream": on_end_stream,
    }

    # --- replies -------------------------------------------------------------------------------

    async def _membership(self, change, answer: str, conversation: Any, request_id: Any) -> None:
        if self.identity is None:
            await self._error("unauthenticated", "send an authenticate frame first", request_id)
            return
        try:
            name = await change(conversation)
        except MembershipError as error:
            await self._error("invalid_conversation", str(error), request_id)
            return
        await self._reply({"type": answer, "conversation": name}, request_id)

    async def _reply(self, content: dict[str, Any], request_id: Any) -> None:
        if request_id is not None:
            content["id"] = request_id
        await self.send_json(content)

    async def _error(self, code: str, message: str, request_id: Any = None) -> None:
        await self._reply({"type": "error", "code": code, "message": message}, request_id)

    async def token_expired(self) -> None:
        await self._error("token_expired", f"{tokens.EXPIRED_TOKEN_MESSAGE}: authenticate again on a new connection")
        await super().token_expired()

    async def authentication_deadline_passed(self) -> None:
        delay = settings.WEBSOCKET_AUTH_TIMEOUT
        await self._error("unauthenticated", f"no authenticate frame within {delay} seconds")
        await self.close(code=CLOSE_UNAUTHENTICATED)


def _echoable(request_id: Any) -> bool:
    """A request id the answer may repeat: none, a number within ``MAX_REQUEST_ID``, a short string."""
    if request_id is None or isinstance(request_id, bool):
        return True
    if isinstance(request_id, (int, float)):
        return abs(request_id) <= MAX_REQUEST_ID
    return isinstance(request_id, str) and len(request_id) <= MAX_ECHOED_CHARS
