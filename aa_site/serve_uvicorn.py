"""``python -m aa_site.serve_uvicorn``: uvicorn (uvloop, httptools, websockets) with an access log that never records a query string.

uvicorn's own access log (logger ``uvicorn.access``) writes each request's
path with its query string, which must never be logged (see ``aa_site.serve``),
so it is off, as are the INFO lines of ``uvicorn.error`` (its WebSocket
handshake lines carry the query string too), and ``PathOnlyAccessLog`` writes
the same lines as the daphne entry point does, through logger
``aa_site.access`` at INFO, path only.
Forwarded headers are not trusted (no ``--proxy-headers``: uvicorn would
otherwise take the client address from ``X-Forwarded-For`` sent by a local
peer); the rate limit reads the entry Cloud Run's front end appended instead.

    python -m aa_site.serve_uvicorn --host 0.0.0.0 --port 8080 [aa_site.asgi:application]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
import warnings
from typing import Any

from asgiref.typing import ASGIReceiveCallable, ASGISendCallable, Scope

from aa_site import gc_tuning
from aa_site.access_log import HEADER_TIMEOUT_SECONDS, access_line_wanted, log_request, log_websocket_step, path_only

logger = logging.getLogger("aa_site.access")


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "-"


class PathOnlyAccessLog:
    """ASGI middleware: one INFO line per HTTP request and WebSocket handshake step, as ``aa_site.serve`` writes them."""

    def __init__(self, application: Any) -> None:
        self.application = application
        from django.conf import settings  # configured by importing the application

        self._off = settings.ACCESS_LOG == "off"

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        """Serve the request through the application, logging it without its query string."""
        if not logger.isEnabledFor(logging.INFO) or scope["type"] not in ("http", "websocket") or self._off:
            await self.application(scope, receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        else:
            await self._websocket(scope, receive, send)

    async def _http(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        started, status, size = time.monotonic(), "-", 0

        async def logged_send(message: dict) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            await send(message)

        try:
            await self.application(scope, receive, logged_send)
        finally:
            if access_line_wanted(status):
                log_request(_client(scope), scope.get("method", "-"), path_only(scope["path"]), status, size,
                            time.monotonic() - started)

    async def _websocket(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        client, path = _client(scope), path_only(scope["path"])
        accepted, every_step = False, access_line_wanted(None)
        if every_step:
            logger.info('%s "WSCONNECTING %s"', client, path)

        async def logged_send(message: dict) -> None:
            nonlocal accepted
            if message["type"] == "websocket.accept" and not accepted:
                accepted = True
                if every_step:
                    logger.info('%s "WSCONNECT %s"', client, path)
            elif message["type"] == "websocket.close" and not accepted:
                log_websocket_step(client, "WSREJECT", path)
            await send(message)

        try:
            await self.application(scope, receive, logged_send)
        finally:
            if accepted and every_step:
                logger.info('%s "WSDISCONNECT %s"', client, path)


def header_deadline_protocol() -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol, closing a connection whose request headers are not all in within
    ``HTTP_HEADER_TIMEOUT`` seconds of its request line (uvicorn has no such limit of its own: a client
    trickling header lines would hold the connection for ever). As ``aa_site.serve`` does for daphne."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class HeaderDeadlineProtocol(HttpToolsProtocol):
        _header_deadline: asyncio.TimerHandle | None = None

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if HEADER_TIMEOUT_SECONDS:
                self._header_deadline = self.loop.call_later(HEADER_TIMEOUT_SECONDS, self._headers_too_slow)

        def on_headers_complete(self) -> None:
            self._stop_deadline()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_deadline()
            super().connection_lost(exc)

        def _stop_deadline(self) -> None:
            if self._header_deadline is not None:
                self._header_deadline.cancel()
                self._header_deadline = None

        def _headers_too_slow(self) -> None:
            self._header_deadline = None
            peer = self.transport.get_extra_info("peername") or ("-", "-")
            logger.info("%s:%s closed: request headers incomplete after %ss", peer[0], peer[1], HEADER_TIMEOUT_SECONDS)
            self.transport.abort()

    return HeaderDeadlineProtocol


def websocket_protocol() -> type[asyncio.Protocol]:
    """uvicorn's websockets protocol, letting several coroutines wait for a full write buffer to drain, and
    without websockets' keepalive pings on Engine.IO's connections.

    The legacy websockets protocol under it copied an old asyncio helper that allows one waiter only: while
    a send waits on a desktop that stopped reading, a second send on the connection (its close, a ping, an
    acknowledgement, websockets' own keepalive ping) fails an assertion instead of waiting, and a close
    that fails so never completes. As asyncio's own helper does since Python 3.12, every waiter here waits
    on one future (each through ``shield``, so one cancelled waiter leaves the others waiting).
    """
    from uvicorn.protocols.websockets.websockets_impl import WebSocketProtocol

    from connector.desktops.polling.http import PATHS as ENGINE_IO_PATHS

    class DesktopWebSocketProtocol(WebSocketProtocol):
        def connection_open(self) -> None:
            # Engine.IO's heartbeat (one timer per process) already pings every /socket.io/ connection and
            # closes one whose pong does not come; websockets' keepalive would ping each again from a task
            # of its own (500 pings a second at 10,000 idle desktops, most of the idle connector's CPU).
            if self.scope["path"] in ENGINE_IO_PATHS:
                self.ping_interval = None
            super().connection_open()

        async def _drain_helper(self) -> None:
            if self.connection_lost_waiter.done():
                raise ConnectionResetError("Connection lost")
            if not self._paused:
                return
            if self._drain_waiter is None or self._drain_waiter.done():
                self._drain_waiter = self.loop.create_future()
                # A lost connection sets an exception on it; retrieved here, in case every waiter was cancelled.
                self._drain_waiter.add_done_callback(lambda waiter: waiter.cancelled() or waiter.exception())
            await asyncio.shield(self._drain_waiter)

    return DesktopWebSocketProtocol


def load_application(name: str) -> Any:
    """The ASGI application ``name`` (``module:attribute``), imported with the collector paused until its start-up
    is over (``aa_site.gc_tuning``; ``aa_site.asgi`` ends it)."""
    gc_tuning.pause_during_start_up()
    from uvicorn.importer import import_from_string  # uvicorn's package: a start-up import like the others

    return import_from_string(name)


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until stopped."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("application", nargs="?", default="aa_site.asgi:application")
    parser.add_argument("--host", "-b", "--bind", dest="host", default="127.0.0.1")
    parser.add_argument("--port", "-p", type=int, default=8080)
    args = parser.parse_args(argv)

    application = load_application(args.application)  # sets Django and its logging up
    from aa_site import drain

    application = PathOnlyAccessLog(drain.RefuseWhileDraining(application))
    from django.conf import settings
    # uvicorn's websockets protocol logs each handshake at INFO with the query string
    # ('"WebSocket /ws/?token=..." [accepted]'), and every connection open and close: warnings only.
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    # Measured and chosen (docs/performance.md, "The image's server: uvicorn instead of daphne"); the warning would be the one line on stderr that is
    # not a log record (and not JSON).
    warnings.filterwarnings("ignore", message="The `websockets` implementation is deprecated")
    drain.run(  # uvicorn.run, draining on SIGTERM (aa_site.drain)
        application,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http=header_deadline_protocol(),
        ws=websocket_protocol(),  # "websockets", with drains that wait together
        ws_ping_interval=settings.WEBSOCKET_KEEPALIVE_SECONDS,  # /ws/ only (websocket_protocol)
        ws_ping_timeout=settings.WEBSOCKET_KEEPALIVE_SECONDS,
        lifespan="off",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        # As daphne: no permessage-deflate. Compressing would cost CPU per socket for every event,
        # where the frame is otherwise built once per event for all of a process's desktops.
        ws_per_message_deflate=False,
        # Cloud Run allows 10 s between SIGTERM and SIGKILL: the drain sets what its own part leaves of them.
        timeout_graceful_shutdown=drain.SHUTDOWN_SECONDS,
        log_config=None,  # Django's LOGGING (aa_site.settings) configures every logger, uvicorn's too
    )


if __name__ == "__main__":
    main()
