"""Whether this process is draining: it received SIGTERM and is handing its clients to other instances.

Set once by the server (``aa_site.serve_uvicorn``) and never cleared: a draining
process only exits. Read on the paths that must behave differently meanwhile
(readiness, new handshakes, long-polls that would wait, leaving conversations);
a plain module flag, because one process serves one event loop and tests that
drain run the server in a process of its own.
"""

from __future__ import annotations

import time

_since: float | None = None


def begin() -> None:
    """Mark the process as draining (from now until it exits)."""
    global _since
    if _since is None:
        _since = time.monotonic()


def is_draining() -> bool:
    """Whether ``begin`` was called."""
    return _since is not None


def seconds_since() -> float:
    """Seconds since the drain began (0 when it has not)."""
    return 0.0 if _since is None else time.monotonic() - _since
