"""Conversation names: the one normalised form used by desktops, events and Redis keys.

Desktops may join with ``projects/P/locations/L/conversations/C`` or
``projects/P/conversations/C``; Dialogflow may publish either. Both map to the
normalised form ``projects/P/conversations/C``.
"""

from __future__ import annotations

import re

from common.untrusted import is_utf8_text

MAX_LENGTH = 512
_NAME = re.compile(r"^projects/([^/\s]+)/(?:locations/([^/\s]+)/)?conversations/([^/\s]+)$")
# Dialogflow's ids are letters, digits, '-', '_' and '.': braces are never in a name it publishes, and in a
# Redis key they would choose its Redis Cluster slot (a hash tag).
_BRACES = re.compile(r"[{}]")


class InvalidConversationName(ValueError):
    """Not a Dialogflow conversation resource name."""


def normalise(name: object) -> str:
    """Return ``projects/P/conversations/C`` for either accepted form, or raise ``InvalidConversationName``."""
    if not isinstance(name, str):
        raise InvalidConversationName("conversation name must be a string")
    if len(name) > MAX_LENGTH:
        raise InvalidConversationName(f"conversation name is longer than {MAX_LENGTH} characters")
    if not is_utf8_text(name):
        # A lone surrogate (a JSON "\ud800" escape) cannot be a Redis key or channel name.
        raise InvalidConversationName("conversation name is not valid Unicode text")
    if _BRACES.search(name):
        raise InvalidConversationName("conversation name may not contain '{' or '}'")
    match = _NAME.match(name.strip())
    if match is None:
        raise InvalidConversationName(
            "conversation name must look like projects/P/conversations/C "
            "or projects/P/locations/L/conversations/C"
        )
    project, _location, conversation = match.groups()
    return f"projects/{project}/conversations/{conversation}"
