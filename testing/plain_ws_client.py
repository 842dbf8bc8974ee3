"""A client of the plain JSON WebSocket protocol at ``/ws/``, driving the real ASGI application in process."""

from __future__ import annotations

from typing import Any

from channels.testing import WebsocketCommunicator

from aa_site.asgi import application
from events.history import Offset

PATH = "/ws/"
# Generous waits for frames that must come; never an assertion on speed.
WAIT = 5.0


class PlainTestClient:
    """One plain-protocol client driving the real application."""

    def __init__(self) -> None:
        self.communicator = WebsocketCommunicator(application, PATH)
        self.last_offset: str | None = None

    async def open(self) -> None:
        """Open the WebSocket; the server must accept before any frame."""
        accepted, _ = await self.communicator.connect()
        assert accepted

    async def send(self, frame: dict[str, Any]) -> None:
        """Send one JSON text frame."""
        await self.communicator.send_json_to(frame)

    async def receive(self) -> dict[str, Any]:
        """The next frame from the server, decoded from JSON; an event frame's offset is checked and left
        out (``last_offset`` keeps it)."""
        frame = await self.communicator.receive_json_from(WAIT)
        if frame.get("type") == "event":
            offset = frame.pop("offset", None)
            assert Offset.parse(offset) is not None, frame
            self.last_offset = offset
        return frame

    async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send ``frame``; return the next frame."""
        await self.send(frame)
        return await self.receive()

    async def close_code(self) -> int:
        """Wait for the server to close the connection; its close code."""
        output = await self.communicator.receive_output(WAIT)
        assert output["type"] == "websocket.close", output
        return output.get("code", 1000)
