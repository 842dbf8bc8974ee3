"""The access log both server entry points write (``aa_site.serve``: daphne; ``aa_site.serve_uvicorn``: uvicorn).

One line per request through logger ``aa_site.access`` at INFO, the path only
(never a query string), as ``ACCESS_LOG`` asks; the lines of answers that come
in floods are sampled. Apart from daphne's entry point, so that the image's
server (uvicorn) does not import daphne and the Twisted under it (a quarter of
a second of every cold start).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings

from aa_site import env
from common.log_sampling import LogSampler

logger = logging.getLogger("aa_site.access")
# A 429 or a 503 comes in floods, each answer like the one before (a client over its limit retrying; every
# push and poll while Redis is out): their lines are sampled (LOG_SAMPLE_SECONDS), the rest written one each.
SAMPLED_STATUSES = frozenset({429, 503})
repeated = LogSampler(logger)

#: Seconds a request may take from its request line to the end of its headers; 0 turns the limit off.
HEADER_TIMEOUT_SECONDS = env.number("HTTP_HEADER_TIMEOUT", 30.0, minimum=0, maximum=3600)


def access_line_wanted(status: Any) -> bool:
    """Whether ``ACCESS_LOG`` asks for the access line of a request answered ``status`` (``None``: a WebSocket
    handshake step other than a refusal; ``"-"``: no response)."""
    wanted = settings.ACCESS_LOG
    if wanted == "all":
        return True
    return wanted == "errors" and status is not None and not (isinstance(status, int) and status < 400)


def log_request(client: str, method: str, path: str, status: Any, size: Any, seconds: float) -> None:
    """Write a finished HTTP request's access line (``path`` already without its query)."""
    if status in SAMPLED_STATUSES:
        repeated.log(logging.INFO, (method, path, status), '%s "%s %s" %s %s %.3fs', client, method, path, status,
                     size, seconds)
    else:
        logger.info('%s "%s %s" %s %s %.3fs', client, method, path, status, size, seconds)


def log_websocket_step(client: str, action: str, path: str) -> None:
    """Write a WebSocket handshake step's access line; refusals (a client over its handshake or unauthenticated
    bound retries at will) are sampled like 429s, one line and then a count per path."""
    if action == "WSREJECT":
        repeated.log(logging.INFO, (action, path), '%s "%s %s"', client, action, path)
    else:
        logger.info('%s "%s %s"', client, action, path)


def path_only(uri: str) -> str:
    """``uri`` without its query string (or fragment): what the access log may show."""
    return uri.split("?", 1)[0].split("#", 1)[0]
