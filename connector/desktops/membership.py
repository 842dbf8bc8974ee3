"""The rules of a desktop's conversations, whichever transport it uses: which names it may join, and how many.

The websocket consumers (``connector.desktops.consumer`` and its protocols) and the
long-polling application (``connector.desktops.polling.application``) apply the same
rules and refuse with the same words, so a client reads one set of reasons.
"""

from __future__ import annotations

from collections.abc import Collection

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
