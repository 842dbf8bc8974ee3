"""A plain JSON WebSocket protocol at ``/ws/`` for clients that cannot speak Socket.IO.

Every frame is a JSON object with a ``type``; the README documents the
protocol with an example session. The token travels in the first frame,
never in the URL, so it stays out of access logs.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings

from connector import close_codes, tokens
from connector.desktop import DesktopConsumer, EventsUnavailable, MembershipError

CLOSE_UNAUTHENTICATED = close_codes.UNAUTHENTICATED
MAX_FRAME_CHARS = 64 * 1024


class PlainWebSocketConsumer(DesktopConsumer):
    """authenticate -> join/leave -> receive ``event`` frames."""

    async def connect(self) -> None:
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        frame = self._parse(text_data)
        if isinstance(frame, str):
            await self._error("bad_frame", frame)
            return
        request_id = frame.get("id")
        kind = frame.get("type")
        if kind == "ping":
            await self._reply({"type": "pong"}, request_id)
        elif kind == "authenticate":
            await self._authenticate(frame.get("token"), request_id)
        elif kind in ("join", "leave"):
            await self._membership(kind, frame.get("conversation"), request_id)
        else:
            await self._error("unknown_type", f"unknown frame type {kind!r}", request_id)

    async def send_event(self, event: str, payload: dict[str, Any]) -> None:
        await self.send_json({"type": "event", "event": event, "payload": payload})

    async def send_json(self, content: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(content, separators=(",", ":")))

    # --- frames --------------------------------------------------------------------------

    async def _authenticate(self, token: Any, request_id: Any) -> None:
        if self.identity is not None:
            await self._error("already_authenticated", "this connection is already authenticated", request_id)
            return
        try:
            await self.authenticate(token)
        except tokens.InvalidToken as error:
            await self._error("unauthenticated", str(error), request_id)
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        except EventsUnavailable:
            return
        await self._reply({"type": "authenticated", "user": self.identity.user}, request_id)

    async def _membership(self, kind: str, conversation: Any, request_id: Any) -> None:
        if self.identity is None:
            await self._error("unauthenticated", "send an authenticate frame first", request_id)
            return
        change = self.join_conversation if kind == "join" else self.leave_conversation
        try:
            name = await change(conversation)
        except MembershipError as error:
            await self._error("invalid_conversation", str(error), request_id)
            return
        await self._reply({"type": "joined" if kind == "join" else "left", "conversation": name}, request_id)

    @staticmethod
    def _parse(text_data: str | None) -> dict[str, Any] | str:
        """Return the frame, or a message saying why it is not acceptable."""
        if text_data is None:
            return "binary frames are not supported; send JSON text"
        if len(text_data) > MAX_FRAME_CHARS:
            return f"frame is longer than {MAX_FRAME_CHARS} characters"
        try:
            frame = json.loads(text_data)
        except (ValueError, RecursionError):
            # ValueError: JSONDecodeError, and integers longer than Python's int_max_str_digits;
            # RecursionError: deeply nested arrays or objects. Both fit well within MAX_FRAME_CHARS.
            return "frame is not valid JSON"
        if not isinstance(frame, dict):
            return "frame must be a JSON object"
        return frame

    async def _reply(self, content: dict[str, Any], request_id: Any) -> None:
        if request_id is not None:
            content["id"] = request_id
        await self.send_json(content)

    async def _error(self, code: str, message: str, request_id: Any = None) -> None:
        await self._reply({"type": "error", "code": code, "message": message}, request_id)

    async def authentication_deadline_passed(self) -> None:
        delay = settings.WEBSOCKET_AUTH_TIMEOUT
        await self._error("unauthenticated", f"no authenticate frame within {delay} seconds")
        await self.close(code=CLOSE_UNAUTHENTICATED)
