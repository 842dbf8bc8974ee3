"""Reading a request's headers and writing a response over raw ASGI, for the handlers that answer ahead of Django.

Both handlers (``interceptor.fast_push``, ``connector.desktops.polling.http``) read
headers as Django does and write a response as one start message (status and
headers, in the order given) and one body message.
"""

from __future__ import annotations

from collections.abc import Iterable

from asgiref.typing import ASGISendCallable, HTTPScope


def header(scope: HTTPScope, name: bytes) -> str | None:
    """Header ``name`` (lower case) as Django reads it: latin-1, repeated headers joined with commas."""
    values = [value.decode("latin-1") for key, value in scope["headers"] if key == name]
    return ",".join(values) if values else None


async def send_response(
    send: ASGISendCallable,
    status: int,
    body: bytes,
    *,
    content_type: bytes | None,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """Answer ``status`` with ``body``: ``Content-Type`` and ``Content-Length`` first (neither when
    ``content_type`` is ``None``, as for a 204), then ``headers``."""
    described = []
    if content_type is not None:
        described = [(b"Content-Type", content_type), (b"Content-Length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*described, *headers]})
    await send({"type": "http.response.body", "body": body})
