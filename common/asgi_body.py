"""Reading an ASGI request's body within a bound, for the handlers that answer ahead of Django."""

from __future__ import annotations

from asgiref.typing import ASGIReceiveCallable


async def read_body(receive: ASGIReceiveCallable, keep: int) -> bytes | None:
    """The body's first ``keep`` bytes (the rest is read and dropped), or ``None`` if the client disconnected."""
    chunks, kept = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        if kept < keep and chunk:
            chunks.append(chunk[: keep - kept])
            kept += len(chunks[-1])
        if not message.get("more_body", False):
            return b"".join(chunks)
