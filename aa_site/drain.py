"""SIGTERM under uvicorn: take no new work, hand what this process holds to other instances, exit within the 10 s
Cloud Run allows before SIGKILL.

``DrainingServer`` is uvicorn's server with a shutdown that begins the drain
(``common.draining``: ``/readyz`` answers 503 from the signal on) and stops
accepting connections at once, then, on a connector, runs
``connector.desktops.drain`` (every desktop told to reconnect elsewhere, every
recovery window started in batches) before uvicorn's own shutdown closes what
is left and waits for requests in flight: a push in flight is answered (2xx
only once stored) if it completes within the budget left, else its connection
is dropped unanswered and Pub/Sub redelivers it. ``RefuseWhileDraining``
answers 503 to what still reaches the process on a connection it had already
accepted: a WebSocket handshake, a long-polling handshake, a push; so a client
(or Pub/Sub) retries, and reaches another instance.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from types import FrameType
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from asgiref.typing import ASGIReceiveCallable, ASGISendCallable, Scope
from django.conf import settings

from common import draining
from common.asgi_responses import send_response
from events.kinds import EventKind

logger = logging.getLogger(__name__)

#: From SIGTERM to exit: Cloud Run sends SIGKILL 10 s after SIGTERM; a second is left for the process to end.
SHUTDOWN_SECONDS = 9.0
#: The most a connector's drain may take of that (its own bounds are shorter: ``connector.desktops.drain``).
DRAIN_SECONDS = 6.0
#: What uvicorn's wait for requests in flight gets at the least, however long the drain took.
MIN_GRACE_SECONDS = 0.5

PUSH_PATHS = frozenset(f"/{kind}" for kind in EventKind)
POLLING_PATHS = frozenset({"/socket.io/", "/socket.io"})
DRAINING_BODY = b'{"status": "draining", "message": "this instance is shutting down; retry"}'


class DrainingServer(uvicorn.Server):
    """uvicorn's server, draining on SIGTERM before it closes the connections left."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM:
            draining.begin()  # readiness fails from now, before the main loop even notices the signal
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[Any] | None = None) -> None:
        draining.begin()
        for server in getattr(self, "servers", ()):
            server.close()  # no new connection from now (uvicorn closes them again: harmless)
        if settings.SERVICE_ROLE in ("connector", "all"):
            from connector.desktops import drain

            try:
                await asyncio.wait_for(drain.drain(), DRAIN_SECONDS)
            except Exception as error:  # noqa: BLE001 - whatever failed, uvicorn below closes what is left (1012)
                logger.error("The drain did not finish: %s: %s", type(error).__name__, error)
        self.config.timeout_graceful_shutdown = max(MIN_GRACE_SECONDS, SHUTDOWN_SECONDS - draining.seconds_since())
        await super().shutdown(sockets)


def run(application: Any, **options: Any) -> None:
    """``uvicorn.run(application, **options)`` with ``DrainingServer`` (no reload, one worker: as the image runs)."""
    config = uvicorn.Config(application, **options)
    server = DrainingServer(config=config)
    server.run()
    if not server.started:
        raise SystemExit(3)  # uvicorn's STARTUP_FAILURE


class RefuseWhileDraining:
    """ASGI middleware: while draining, 503 for new WebSocket handshakes, long-polling handshakes and pushes."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if not draining.is_draining() or not _refused(scope):
            await self.application(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            if "websocket.http.response" in scope.get("extensions", {}):
                await send({"type": "websocket.http.response.start", "status": 503,
                            "headers": [(b"content-type", b"application/json"), (b"retry-after", b"0")]})
                await send({"type": "websocket.http.response.body", "body": DRAINING_BODY})
            else:
                await send({"type": "websocket.close"})  # 403: the client retries all the same
            return
        await send_response(send, 503, DRAINING_BODY, content_type=b"application/json",
                            headers=[(b"Retry-After", b"0"), (b"Connection", b"close")])


def _refused(scope: Scope) -> bool:
    if scope["type"] == "websocket":
        return True
    if scope["type"] != "http":
        return False
    path = scope["path"]
    if path in PUSH_PATHS:
        return scope["method"] == "POST"
    if path in POLLING_PATHS:
        # A handshake starts a session here; a session's own requests go on (it lives in Redis, and its GET
        # answers at once while draining).
        return "sid" not in parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return False
