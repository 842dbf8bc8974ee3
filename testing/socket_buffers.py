"""How many events it takes to fill a stalled desktop's socket buffers, for the tests that stall one."""

from __future__ import annotations

from pathlib import Path

# The stalled desktop's events: payloads of ~8.5 KB, so a few MB of socket buffers fill with a few hundred.
SLOW_PADDING = 8000
SLOW_LIMIT = 100


def pushes_past_the_socket_buffers() -> int:
    """Enough events that the stalled desktop's socket buffers (the server's send buffer grows up to
    ``tcp_wmem``'s maximum) fill and ``SLOW_LIMIT`` more wait in the connector, twice over."""
    most_buffered = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    return max(2000, 2 * (most_buffered // SLOW_PADDING + SLOW_LIMIT))
