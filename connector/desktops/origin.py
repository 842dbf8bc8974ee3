"""Refuse WebSocket handshakes from browser pages the operator has not listed (cross-site WebSocket hijacking).

Browsers do not apply CORS to WebSockets, so without this check any web page
could open ``/socket.io/`` or ``/ws/`` from an agent's browser. A handshake
carrying ``Origin`` must match ``CORS_ALLOWED_ORIGINS`` (scheme, host and
port; anything goes with ``*``, development mode only), the same list that
governs the HTTP endpoints. A handshake without ``Origin`` comes from a
non-browser client, which no page controls: its token alone decides.

Channels' ``OriginValidator`` supplies the scheme/host/port matching (default
ports implied); this subclass lets a missing Origin through (the parent
refuses it), reads the allowed list from the settings on each handshake,
refuses a malformed or repeated Origin instead of raising, and logs each
refusal once.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import ParseResult, urlparse

from asgiref.typing import ASGIReceiveCallable, ASGISendCallable, Scope
from channels.security.websocket import OriginValidator
from django.conf import settings

logger = logging.getLogger(__name__)

MAX_LOGGED_ORIGIN_CHARS = 200


class BrowserOriginCheck(OriginValidator):
    """ASGI middleware for the WebSocket router; see the module docstring."""

    def __init__(self, application: Any) -> None:
        """Wrap ``application``; the allowed origins are read from the settings at each handshake instead."""
        super().__init__(application, allowed_origins=())

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        """Pass the handshake on when it has no ``Origin`` or one allowed one; else log and refuse it."""
        origins = [value for name, value in scope.get("headers", []) if name == b"origin"]
        if not origins:
            await self.application(scope, receive, send)
            return
        # latin-1 never fails, so every byte string has a text form to judge and to log.
        origin = ", ".join(value.decode("latin-1") for value in origins)
        if len(origins) == 1 and self.allowed(origin):
            await self.application(scope, receive, send)
            return
        logger.warning(
            "Refused a WebSocket handshake to %r from origin %r: not an allowed origin (CORS_ALLOWED_ORIGINS)",
            scope.get("path", ""),
            origin[:MAX_LOGGED_ORIGIN_CHARS],
        )
        # Refused before accepting: daphne answers 403. Channels' WebsocketDenier would do the
        # same but, as a consumer, first opens a channel on the channel layer for nothing.
        await receive()  # websocket.connect
        await send({"type": "websocket.close"})

    def allowed(self, origin: str) -> bool:
        """Whether a handshake with this ``Origin`` value may proceed."""
        if settings.CORS_ALLOW_ALL_ORIGINS:
            return True
        try:
            parsed: ParseResult = urlparse(origin.strip())
            # .port raises ValueError for a port that is not a number.
            return any(
                self.match_allowed_origin(parsed, pattern)
                for pattern in settings.CORS_ALLOWED_ORIGINS
                # The parent reads "https://.example.com" as every subdomain; CORS for the
                # HTTP endpoints (django-cors-headers) does not, and neither do we.
                if not (urlparse(pattern).hostname or "").startswith(".")
            )
        except ValueError:
            return False


_CHECK = BrowserOriginCheck(None)


def origin_allowed(origin: str) -> bool:
    """Whether a browser page at ``origin`` may use ``/socket.io/`` (the WebSocket handshakes' rule, which the
    long-polling transport's CORS answers follow too)."""
    return _CHECK.allowed(origin)
