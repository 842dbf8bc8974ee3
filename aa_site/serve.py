"""``python -m aa_site.serve``: daphne's command line, with an access log that never records a query string.

daphne's own access log (``daphne.access.AccessLogGenerator``, on by default)
writes each request's full URI to stdout. Query strings carry what this
service must not log: ``/conversation-name?conversationIntegrationKey=<key>``
(often a customer's phone number), and a token a client wrongly put in a URL
(refused, but still valid). This entry point takes every ``daphne`` argument
and replaces that log with one line per request through Python logging
(logger ``aa_site.access``, INFO, so ``LOG_LEVEL`` and ``LOGGING_FILE`` apply),
with the path only. ``--verbosity 0`` (without ``--access-log``) still turns it off.
The lines of 429 and 503 answers, which come in floods, are sampled (``LOG_SAMPLE_SECONDS``).

Two more changes to how daphne (Twisted underneath) reads requests, in
``PathOnlyLoggingServer.protocol_connected``, which daphne calls for each new request:

- a request whose headers are not all in within ``HTTP_HEADER_TIMEOUT`` seconds
  (default 30) of its request line is closed: none of daphne's own timeouts
  applies before the request is complete, and Twisted's idle timeout is reset
  by every byte, so a client trickling header lines ("slowloris") was kept
  forever. In production Cloud Run's front end reads requests before they
  reach the container, so this matters for direct exposure and local runs.
- a POST body is never parsed as a form by Twisted: daphne does not use what
  it parses, and for ``multipart/form-data`` it cannot parse Twisted answered
  400 and hung up before the application saw the request (a push endpoint must
  acknowledge such a body as poison instead).
"""

from __future__ import annotations

from typing import Any

from daphne.cli import CommandLineInterface
from daphne.http_protocol import WebRequest
from daphne.server import Server

from aa_site.access_log import (
    HEADER_TIMEOUT_SECONDS,
    access_line_wanted,
    log_request,
    log_websocket_step,
    logger,
    path_only,
)

# daphne's action names for WebSocket handshakes, as its own access log writes them.
_WEBSOCKET_ACTIONS = {
    "connecting": "WSCONNECTING",
    "rejected": "WSREJECT",
    "connected": "WSCONNECT",
    "disconnected": "WSDISCONNECT",
}


class PathOnlyAccessLog:
    """daphne's action logger interface: one INFO line per request, the query string left out."""

    def __call__(self, protocol: str, action: str, details: dict[str, Any]) -> None:
        """Log a finished HTTP request or a WebSocket handshake step, as daphne reports them."""
        client = details.get("client") or "-"
        path = path_only(str(details.get("path", "")))
        if protocol == "http" and action == "complete":
            if not access_line_wanted(details.get("status", "-")):
                return
            log_request(client, details.get("method", "-"), path, details.get("status", "-"),
                        details.get("size", "-"), details.get("time_taken") or 0.0)
        elif protocol == "websocket" and action in _WEBSOCKET_ACTIONS:
            if not access_line_wanted(403 if action == "rejected" else None):
                return
            log_websocket_step(client, _WEBSOCKET_ACTIONS[action], path)


class PathOnlyLoggingServer(Server):
    """daphne's server with ``PathOnlyAccessLog`` in place of the access log daphne's CLI configured."""

    def __init__(self, *args: Any, action_logger: Any = None, **kwargs: Any) -> None:
        # The CLI passes an AccessLogGenerator whenever its access log is on (the default),
        # None when it is off: keep that decision, change only what is written.
        super().__init__(*args, action_logger=None if action_logger is None else PathOnlyAccessLog(), **kwargs)

    def protocol_connected(self, protocol: Any) -> None:
        """daphne's bookkeeping, then, for an HTTP request: no form parsing, and the header deadline."""
        super().protocol_connected(protocol)
        if isinstance(protocol, WebRequest):
            # Twisted's Request.__init__ sets it (True); requestReceived, later, reads it.
            protocol._parsePOSTFormSubmission = False
            if HEADER_TIMEOUT_SECONDS:
                from twisted.internet import reactor  # daphne.server installed the asyncio reactor first

                reactor.callLater(HEADER_TIMEOUT_SECONDS, _close_unless_headers_arrived, protocol)


def _close_unless_headers_arrived(request: WebRequest) -> None:
    # Twisted sets request.content once every header is in (Request.gotLength); None before.
    if request.content is None and not request.finished and not request._disconnected:
        logger.info("%s closed: request headers incomplete after %ss", _peer(request), HEADER_TIMEOUT_SECONDS)
        request.channel.transport.abortConnection()


def _peer(request: WebRequest) -> str:
    peer = request.channel.transport.getPeer()
    return f"{getattr(peer, 'host', '-')}:{getattr(peer, 'port', '-')}"


class PathOnlyLoggingCLI(CommandLineInterface):
    """``daphne`` with every option it has, serving through ``PathOnlyLoggingServer``."""

    server_class = PathOnlyLoggingServer


if __name__ == "__main__":
    PathOnlyLoggingCLI.entrypoint()
