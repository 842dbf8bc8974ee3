"""A raw Socket.IO client for the consumer tests: Engine.IO 4 / Socket.IO 5 text frames, in process.

Each client drives the real ASGI application through ``WebsocketCommunicator``;
server frames are decoded with python-socketio's own packet classes. Used by
``tests/sio/`` and ``test_properties_frames.py``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from channels.testing import WebsocketCommunicator
from engineio import packet as eio
from socketio import packet as sio

from aa_site.asgi import application
from connector import tokens
from connector.desktops import offsets
from events.kinds import EventKind
from events.publish import publish as publish_event

PATH = "/socket.io/?EIO=4&transport=websocket"
LONG_NAME = "projects/p/locations/global/conversations/c1"
SHORT_NAME = "projects/p/conversations/c1"
OTHER = "projects/p/conversations/c2"
# Generous waits for frames that must come; never an assertion on speed.
WAIT = 5.0


class SocketIOTestClient:
    """One raw Socket.IO client driving the real application."""

    def __init__(self, path: str) -> None:
        self.communicator = WebsocketCommunicator(application, path)
        self.last_offset: str | None = None
        self._ack_ids = itertools.count(1)

    async def open(self) -> dict[str, Any]:
        """Open the WebSocket; return the Engine.IO OPEN packet's data."""
        accepted, _ = await self.communicator.connect()
        assert accepted
        opening = eio.Packet(encoded_packet=await self.receive())
        assert opening.packet_type == eio.OPEN
        return opening.data

    async def send(self, frame: str) -> None:
        """Send one text frame as it would appear on the wire."""
        await self.communicator.send_to(text_data=frame)

    async def receive(self, timeout: float = WAIT) -> str:
        """The next text frame from the server."""
        return await self.communicator.receive_from(timeout)

    async def receive_packet(self) -> sio.Packet:
        """The next frame, decoded as python-socketio's client decodes a MESSAGE."""
        outer = eio.Packet(encoded_packet=await self.receive())
        assert outer.packet_type == eio.MESSAGE
        return sio.Packet(encoded_packet=outer.data)

    async def connect_namespace(self, token: str | None) -> sio.Packet:
        """CONNECT to ``/`` with ``auth.token`` (no token when None); the first packet in reply."""
        await self.send("40" + json.dumps({} if token is None else {"token": token}))
        return await self.receive_packet()

    async def call(self, event: str, *args: Any) -> list[Any]:
        """Emit ``event`` with an ack id; return the acknowledgement's arguments."""
        ack_id = next(self._ack_ids)
        await self.send("42" + str(ack_id) + json.dumps([event, *args]))
        ack = await self.receive_packet()
        assert (ack.packet_type, ack.id) == (sio.ACK, ack_id)
        return ack.data

    async def receive_event(self) -> list[Any]:
        """The next frame, which must be an EVENT; its ``[name, *args]``, without the offset that a
        conversation event carries last (checked, and kept in ``last_offset``)."""
        packet = await self.receive_packet()
        assert packet.packet_type == sio.EVENT
        data = packet.data
        if data[0] in set(EventKind):
            assert len(data) == 3 and offsets.is_vector(data[-1]), data
            self.last_offset = data[-1]
            return data[:-1]
        return data

    async def close_code(self) -> int:
        """Wait for the server to close the connection; its close code (1000 when none is given)."""
        return (await self.closed())[0]

    async def closed(self) -> tuple[int, str]:
        """Wait for the server to close the connection; its close code (1000 when none is given) and reason."""
        output = await self.communicator.receive_output(WAIT)
        assert output["type"] == "websocket.close", output
        return output.get("code", 1000), output.get("reason") or ""


@contextlib.asynccontextmanager
async def client_factory() -> AsyncIterator[Callable[..., SocketIOTestClient]]:
    """Make clients; disconnect them all afterwards, which re-raises any error the consumer hit."""
    made: list[SocketIOTestClient] = []

    def make(path: str = PATH) -> SocketIOTestClient:
        made.append(SocketIOTestClient(path))
        return made[-1]

    yield make
    for client in made:
        await client.communicator.disconnect(timeout=WAIT)


async def open_connected(make: Callable[..., SocketIOTestClient], user: str = "alice") -> SocketIOTestClient:
    """A client from ``make``, opened and CONNECTed to ``/`` with a valid token for ``user``."""
    client = make()
    await client.open()
    packet = await client.connect_namespace(tokens.issue_token(user=user))
    assert packet.packet_type == sio.CONNECT
    return client


def desktop_payload(event: str, conversation: str = SHORT_NAME) -> dict[str, Any]:
    """A payload shaped like the interceptor's, with text that must survive unchanged."""
    notification = {"conversation": conversation, "text": 'Grüß dich, 你好 "quoted"\n'}
    return {
        "conversation_name": conversation,
        "data": json.dumps(notification),
        "data_type": event,
        "ack_time": "2026-11-20T14:03:07Z",
        "publish_time": "2026-11-20T14:03:06.123Z",
        "message_id": "17",
    }


async def publish(conversation: str, event: str = EventKind.NEW_MESSAGE) -> dict[str, Any]:
    """Publish through the real delivery path, as the interceptor does; return the payload sent."""
    payload = desktop_payload(event, conversation)
    await publish_event(conversation_name=conversation, event=event, payload=payload)
    return payload
