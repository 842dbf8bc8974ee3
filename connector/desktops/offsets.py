"""The one offset a Socket.IO client hands back, saying where it is in every conversation it joined.

socket.io-client keeps only the offset of the last event it received and
sends it back (``auth.offset``) when it reconnects. Each conversation has its
own sequence (``events.history``), so that offset is a vector: ``v1``, then
per joined conversation ``.`` and 8 hex digits of a digest of its name, the
12 hex digits of its epoch and its sequence number, in decimal::

    v1.3f0c9a1be1c2d3e4f5a617.77aa01c20b1c2d3e4f5a203

The digest names the conversation among those the session record holds
(``connector.desktops.sessions``): it is never resolved against anything else,
so 32 bits keep two of one session's conversations apart (two that collide
make the offset unusable, and the client is told it was not recovered). A
vector holds at most ``membership.MAX_CONVERSATIONS_PER_CONNECTION`` entries
and ``MAX_LENGTH`` characters; anything else is refused. An offset of the
form the single shared sequence had (``<epoch>-<seq>``) is recognised as
such: its epoch is no conversation's.

Each frame carries the vector as it is once the frame's event is counted in
it: the event's body is encoded once for every desktop, and each socket adds
its own vector after it (``Vector.encoded``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from hashlib import blake2b

from connector.desktops.membership import MAX_CONVERSATIONS_PER_CONNECTION
from events.history import EPOCH_HEX_DIGITS, Event, Offset

VERSION = "v1"
DIGEST_HEX_DIGITS = 8
MAX_SEQ_DIGITS = 15
MAX_LENGTH = len(VERSION) + MAX_CONVERSATIONS_PER_CONNECTION * (
    1 + DIGEST_HEX_DIGITS + EPOCH_HEX_DIGITS + MAX_SEQ_DIGITS)
_ENTRY = re.compile(rf"[0-9a-f]{{{DIGEST_HEX_DIGITS + EPOCH_HEX_DIGITS}}}[0-9]{{1,{MAX_SEQ_DIGITS}}}")
_EPOCH = re.compile(rf"[0-9a-f]{{{EPOCH_HEX_DIGITS}}}")


def digest(conversation: str) -> str:
    """The short name of ``conversation`` in a vector."""
    return blake2b(conversation.encode("utf-8"), digest_size=DIGEST_HEX_DIGITS // 2).hexdigest()


@dataclass(frozen=True, slots=True)
class Given:
    """What a client's offset says: per conversation digest, the position it reached; or, ``old``, that it is
    an offset of the single sequence all conversations once shared (no position in any conversation now)."""

    positions: dict[str, Offset]
    old: bool = False


def parse(text: object) -> Given | None:
    """The offset ``text`` names, or None when it is not one this server sends (or sent before)."""
    if not isinstance(text, str) or len(text) > MAX_LENGTH:
        return None
    if not text.startswith(VERSION):
        return Given({}, old=True) if Offset.parse(text) is not None else None
    entries = text[len(VERSION):].split(".")
    if entries[0] != "" or len(entries) - 1 > MAX_CONVERSATIONS_PER_CONNECTION:
        return None
    positions: dict[str, Offset] = {}
    for entry in entries[1:]:
        if _ENTRY.fullmatch(entry) is None or entry[:DIGEST_HEX_DIGITS] in positions:
            return None
        epoch_end = DIGEST_HEX_DIGITS + EPOCH_HEX_DIGITS
        positions[entry[:DIGEST_HEX_DIGITS]] = Offset(entry[DIGEST_HEX_DIGITS:epoch_end], int(entry[epoch_end:]))
    return Given(positions)


def resolve(given: Given, conversations: Iterable[str]) -> dict[str, Offset] | None:
    """The positions ``given`` holds for ``conversations`` (those it names); None when two of them share a
    digest (the offset cannot say which is which)."""
    names: dict[str, str] = {}
    for conversation in conversations:
        if names.setdefault(digest(conversation), conversation) != conversation:
            return None
    return {names[d]: position for d, position in given.positions.items() if d in names}


class Vector:
    """One socket's position in each conversation it joined, in join order, and their encoding (kept until one
    of them moves)."""

    __slots__ = ("_encoded", "_entries", "_positions")

    def __init__(self, positions: dict[str, Offset] | None = None) -> None:
        self._positions: dict[str, Offset] = {}
        self._entries: dict[str, str] = {}
        self._encoded: str | None = None
        for conversation, position in (positions or {}).items():
            self.set(conversation, position)

    @property
    def positions(self) -> dict[str, Offset]:
        return dict(self._positions)

    def set(self, conversation: str, position: Offset) -> None:
        """``conversation`` is at ``position`` (joined there, or recovered there)."""
        self._positions[conversation] = position
        if _EPOCH.fullmatch(position.epoch) and 0 <= position.seq < 10**MAX_SEQ_DIGITS:
            self._entries[conversation] = f".{digest(conversation)}{position.epoch}{position.seq}"
        else:
            self._entries.pop(conversation, None)  # no epoch yet: the session record's position stands
        self._encoded = None

    def forget(self, conversation: str) -> None:
        """``conversation`` was left."""
        if self._positions.pop(conversation, None) is not None:
            self._entries.pop(conversation, None)
            self._encoded = None

    def sent(self, event: Event) -> None:
        """``event`` is going out: its conversation's position moves to it (never back, but to another epoch).
        A conversation not ``set`` (left, or its join not recorded yet) stays out."""
        current = self._positions.get(event.conversation)
        if current is not None and (current.epoch != event.epoch or event.seq > current.seq):
            self.set(event.conversation, event.position)

    def encoded(self) -> str:
        if self._encoded is None:
            self._encoded = VERSION + "".join(self._entries.values())
        return self._encoded


def position(text: object, conversation: str) -> Offset | None:
    """Where the vector offset ``text`` says its client is in ``conversation`` (None: it does not say)."""
    given = parse(text)
    if given is None or given.old:
        return None
    return given.positions.get(digest(conversation))


def is_vector(text: object) -> bool:
    """Whether ``text`` is an offset of the form this server sends now."""
    given = parse(text)
    return given is not None and not given.old
