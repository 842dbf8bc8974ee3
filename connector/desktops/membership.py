"""The rules of a desktop's conversations, whichever transport it uses: which names it may join, and how many.

The websocket consumers (``connector.desktops.consumer`` and its protocols) and the
long-polling application (``connector.desktops.polling.application``) apply the same
rules and refuse with the same words, so a client reads one set of reasons.
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection

from django.conf import settings

from connector import ratelimit
from events import conversations

# Bounds what one connection can make this process subscribe to.
MAX_CONVERSATIONS_PER_CONNECTION = 64
# A join refused because Redis failed it: the client may try again.
UNAVAILABLE_MESSAGE = "conversation events are unavailable right now; try again"


class MembershipError(ValueError):
    """A join or leave that cannot be done; ``str()`` is safe to show the client."""


def normalise(name: object) -> str:
    """``name``'s normalised form (either accepted form joins the same conversation), or ``MembershipError``."""
    try:
        return conversations.normalise(name)
    except conversations.InvalidConversationName as error:
        raise MembershipError(str(error)) from None


def check_room(joined: Collection[str]) -> None:
    """Raise ``MembershipError`` when a connection in the ``joined`` conversations may join no other."""
    if len(joined) >= MAX_CONVERSATIONS_PER_CONNECTION:
        raise MembershipError(f"a connection may join at most {MAX_CONVERSATIONS_PER_CONNECTION} conversations")


def too_fast() -> MembershipError:
    """The refusal of a join past the connection's rate (``JoinRate``)."""
    return MembershipError(f"joining conversations too fast: at most {settings.DESKTOP_JOINS_PER_SECOND:g} a second "
                           f"(bursts of {settings.DESKTOP_JOIN_BURST}); try again shortly")


async def count_session_join(session: str) -> None:
    """Count one join of a long-polling session (each of its POSTs may reach another process): in Redis, a
    window of DESKTOP_JOIN_BURST joins every burst ÷ rate seconds, the token bucket's average. Raises
    ``MembershipError`` past it; lets the join through when Redis cannot count (its join fails then anyway)."""
    window = max(1, math.ceil(settings.DESKTOP_JOIN_BURST / settings.DESKTOP_JOINS_PER_SECOND))
    counted = await ratelimit.count(f"{ratelimit.KEY_PREFIX}joins:{session}", window, "desktop join")
    if counted is not None and counted[0] > settings.DESKTOP_JOIN_BURST:
        raise too_fast()


class JoinRate:
    """One connection's joins, a token bucket (DESKTOP_JOINS_PER_SECOND, DESKTOP_JOIN_BURST): each join takes a
    conversation's position in Redis, which makes a key for a name without one, so their count over time is
    bounded, not only how many are joined at once."""

    def __init__(self) -> None:
        self._tokens = float(settings.DESKTOP_JOIN_BURST)
        self._at = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(float(settings.DESKTOP_JOIN_BURST),
                           self._tokens + (now - self._at) * settings.DESKTOP_JOINS_PER_SECOND)
        self._at = now

    def check(self) -> None:
        """Raise ``MembershipError`` when a join now would be refused (takes nothing)."""
        self._refill()
        if self._tokens < 1:
            raise too_fast()

    def take(self) -> None:
        """Count one join, or raise ``MembershipError`` when the connection is joining too fast."""
        self.check()
        self._tokens -= 1
