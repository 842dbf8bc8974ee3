"""``events.conversations``: name normalisation, and one Redis channel per conversation."""

from __future__ import annotations

import pytest

from events import conversations
from events.conversations import InvalidConversationName, normalise
from events.history import channel_name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("projects/acme/locations/global/conversations/CONV-1", "projects/acme/conversations/CONV-1"),
        ("projects/acme/locations/us-central1/conversations/x_y.z", "projects/acme/conversations/x_y.z"),
        ("projects/acme/conversations/CONV-1", "projects/acme/conversations/CONV-1"),
        ("  projects/acme/conversations/CONV-1\n", "projects/acme/conversations/CONV-1"),
    ],
)
def test_normalise_drops_the_location(name: str, expected: str) -> None:
    """Both accepted forms give ``projects/P/conversations/C``."""
    assert normalise(name) == expected


def test_normalise_is_idempotent() -> None:
    """A normalised name normalises to itself."""
    once = normalise("projects/p/locations/l/conversations/c")
    assert normalise(once) == once


@pytest.mark.parametrize("name", [None, 42, b"projects/p/conversations/c", ["projects/p/conversations/c"], {}])
def test_normalise_refuses_non_strings(name: object) -> None:
    """Only strings are names."""
    with pytest.raises(InvalidConversationName):
        normalise(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "   ",
        "conversations/c",
        "projects/p",
        "projects/p/conversations/",
        "projects//conversations/c",
        "projects/p/locations//conversations/c",
        "projects/p/locations/l/conversations",
        "projects/p/conversations/c/participants/a",
        "projects/p/locations/l/conversations/c/messages/m",
        "projects/p/regions/l/conversations/c",
        "/projects/p/conversations/c",
        "projects/p/conversations/c d",
        "projects/p q/conversations/c",
        "Projects/p/conversations/c",
    ],
)
def test_normalise_refuses_other_shapes(name: str) -> None:
    """Anything but the two resource-name forms is refused."""
    with pytest.raises(InvalidConversationName):
        normalise(name)


def test_normalise_refuses_a_name_that_is_not_unicode_text() -> None:
    """A lone surrogate (what a JSON "\\ud800" escape decodes to) is refused, so hashing its group cannot fail."""
    with pytest.raises(InvalidConversationName):
        normalise("projects/p/conversations/c\ud800")


def test_normalise_refuses_overlong_names() -> None:
    """Names longer than ``MAX_LENGTH`` are refused before matching (bounds work per request)."""
    name = "projects/p/conversations/" + "c" * conversations.MAX_LENGTH
    with pytest.raises(InvalidConversationName, match=str(conversations.MAX_LENGTH)):
        normalise(name)


def test_normalise_accepts_a_name_at_the_length_limit() -> None:
    """A well-formed name of exactly ``MAX_LENGTH`` characters is fine."""
    prefix = "projects/p/conversations/"
    name = prefix + "c" * (conversations.MAX_LENGTH - len(prefix))
    assert normalise(name) == name


def test_invalid_name_error_is_a_value_error() -> None:
    """Callers may treat it as an ordinary ``ValueError``."""
    assert issubclass(InvalidConversationName, ValueError)


def test_both_forms_share_one_channel() -> None:
    """A desktop joining with one form receives events published with the other."""
    with_location = channel_name(normalise("projects/p/locations/europe-west2/conversations/c"))
    without_location = channel_name(normalise("projects/p/conversations/c"))
    assert with_location == without_location


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("projects/p/conversations/c1", "projects/p/conversations/c2"),
        ("projects/p1/conversations/c", "projects/p2/conversations/c"),
        ("projects/p/conversations/C", "projects/p/conversations/c"),
    ],
)
def test_different_conversations_get_different_channels(first: str, second: str) -> None:
    """Conversations differing in project, id or case never share a channel."""
    assert channel_name(first) != channel_name(second)


@pytest.mark.parametrize("name", ["projects/p/conversations/{}x", "projects/p/conversations/a{b}",
                                  "projects/{p}/conversations/c", "projects/p/locations/}/conversations/c"])
def test_normalise_refuses_braces(name: str) -> None:
    """Braces never appear in Dialogflow's names; in a Redis key they would pick its cluster slot."""
    with pytest.raises(InvalidConversationName, match="may not contain"):
        normalise(name)
