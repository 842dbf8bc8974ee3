"""The WebSocket close codes the connector sends, on ``/socket.io/`` and ``/ws/`` alike.

RFC 6455 reserves 1001-2999 for the protocol itself, and the WebSocket library
under daphne (autobahn) refuses any of them from an application: a consumer
that closes with 1008 gets an exception instead of a close, daphne then ends
the connection with 1011 and logs a traceback, and the consumer never runs its
clean-up. So the connector closes with 1000 or a code from the application
range 4000-4999, numbered after the HTTP status that means the same thing
(``RECONNECT`` after RFC 6455's own 1012, Service Restart, which no HTTP
status says). docs/desktops.md lists them for client authors;
docs/rolling-deploys.md tells what a client does on ``RECONNECT``.
"""

from __future__ import annotations

NORMAL = 1000
#: A frame that is not valid Engine.IO 4 / Socket.IO 5 text (or, on ``/ws/``, never sent).
PROTOCOL_ERROR = 4400
#: No valid authentication within ``WEBSOCKET_AUTH_TIMEOUT`` seconds, or a refused token on ``/ws/``.
UNAUTHENTICATED = 4401
#: A frame longer than ``SOCKETIO_MAX_PAYLOAD``.
MESSAGE_TOO_BIG = 4413
#: A binary frame where only text frames are spoken.
UNSUPPORTED_DATA = 4415
#: The desktop fell ``WEBSOCKET_SEND_QUEUE_LIMIT`` events (or ``WEBSOCKET_SEND_QUEUE_BYTES``) behind; it can
#: reconnect and recover them.
TOO_SLOW = 4429
TOO_SLOW_REASON = "too far behind in reading events; reconnect to recover them"
#: An operator disconnected this desktop (the admin's live view, ``connector.desktops.instances``); it may reconnect.
OPERATOR_DISCONNECT = 4410
#: Redis could not be reached to set the connection up (its session or events); reconnect later.
UNAVAILABLE = 4503
#: This instance is shutting down (a deploy, a scale-in): reconnect now, to the same URL, which reaches another
#: instance; a Socket.IO client recovers what came meanwhile, a ``/ws/`` client joins again with ``after``.
RECONNECT = 4012
RECONNECT_REASON = "server restarting; reconnect now"

#: The longest close reason a close frame carries: its payload is at most 125 bytes, two of them the code.
MAX_REASON_BYTES = 123


def reason(text: str) -> str:
    """``text`` as a close frame's reason: cut to ``MAX_REASON_BYTES`` of UTF-8, never inside a character (a
    lone surrogate, which UTF-8 cannot carry, becomes ``?``)."""
    return text.encode("utf-8", "replace")[:MAX_REASON_BYTES].decode("utf-8", "ignore")
