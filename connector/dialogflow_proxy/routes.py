"""The Dialogflow proxy's route table, as a pure function of (method, path).

The proxy exposes, as Google's sample does (``docs/dialogflow-proxy.md``), under ``/<v>/projects/<p>/locations/<l>`` with ``<v>`` in
``v2``/``v2beta1``, exactly these calls (``/**`` = one or more further segments):

    GET    /conversations/**  /conversationProfiles/**  /conversationModels/**  /generators/**
    POST   /conversations  /conversations/**  /suggestions:searchKnowledge  /statelessSuggestion:generate
    PATCH  /conversations/**  /answerRecords/**

A path in the table with another method is ``MethodNotAllowed``; anything else
is ``NotFound``. The two list calls, ``GET .../conversations`` and
``GET .../answerRecords``, are 404 as in the sample: they are deliberately
not exposed (they would let any desktop enumerate every conversation), not a
method the path lacks.

Every segment is checked against a conservative character set and ``.``/``..``
are refused: the path is forwarded as it is, and an HTTP client that removes dot
segments would otherwise let ``conversations/../../..`` reach another project or
API. The location becomes part of a host name, so it is checked more strictly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

VERSIONS = frozenset({"v2", "v2beta1"})
GLOBAL_LOCATION = "global"
GLOBAL_ROOT = "https://dialogflow.googleapis.com"

# Google Cloud location ids: lower-case words joined by single hyphens ("us-central1", "europe-west2").
_LOCATION = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_MAX_LOCATION_LENGTH = 63  # one DNS label
# Resource ids, collection names and ":method" suffixes of the Dialogflow REST API
# use only these characters; anything else cannot be a call we proxy.
_SEGMENT = re.compile(r"[A-Za-z0-9._~:-]+")


class Tail(Enum):
    """What may follow the collection segment."""

    NONE = "exact"  # nothing: the collection itself (create, or a custom method like suggestions:searchKnowledge)
    SOME = "subpath"  # one or more segments: a resource or a method on it


@dataclass(frozen=True)
class Route:
    """One row of the table: ``method`` on ``/<collection>`` or ``/<collection>/**``."""

    method: str
    collection: str
    tail: Tail


ROUTES: tuple[Route, ...] = (
    Route("GET", "conversations", Tail.SOME),
    Route("GET", "conversationProfiles", Tail.SOME),
    Route("GET", "conversationModels", Tail.SOME),
    Route("GET", "generators", Tail.SOME),
    Route("POST", "conversations", Tail.NONE),
    Route("POST", "conversations", Tail.SOME),
    Route("POST", "suggestions:searchKnowledge", Tail.NONE),
    Route("POST", "statelessSuggestion:generate", Tail.NONE),
    Route("PATCH", "conversations", Tail.SOME),
    Route("PATCH", "answerRecords", Tail.SOME),
)
# List calls deliberately not exposed (as in the sample): 404, not 405.
NOT_EXPOSED = frozenset({("GET", "conversations", Tail.NONE), ("GET", "answerRecords", Tail.NONE)})


@dataclass(frozen=True)
class Forward:
    """A call to forward: ``path`` (already checked) goes to the Dialogflow endpoint of ``location``."""

    version: str
    project: str
    location: str
    path: str


@dataclass(frozen=True)
class NotFound:
    """Not a call this proxy exposes."""


@dataclass(frozen=True)
class MethodNotAllowed:
    """A path in the table, asked with a method it does not take; ``allowed`` for the Allow header."""

    allowed: tuple[str, ...]


Match = Forward | NotFound | MethodNotAllowed


def match(method: str, path: str) -> Match:
    """Classify a request: ``Forward`` for a call in the table, else ``NotFound`` or ``MethodNotAllowed``."""
    segments = path.split("/")
    # ["", v, "projects", p, "locations", l, collection, *tail]
    if len(segments) < 7 or segments[0] != "" or not all(_is_segment(s) for s in segments[1:]):
        return NotFound()
    _, version, projects, project, locations, location, collection, *tail = segments
    if version not in VERSIONS or projects != "projects" or locations != "locations" or not is_location(location):
        return NotFound()
    shape = Tail.SOME if tail else Tail.NONE
    if (method, collection, shape) in NOT_EXPOSED:
        return NotFound()
    allowed = tuple(r.method for r in ROUTES if r.collection == collection and r.tail is shape)
    if not allowed:
        return NotFound()
    if method not in allowed:
        return MethodNotAllowed(allowed=allowed)
    return Forward(version=version, project=project, location=location, path=path)


def is_location(location: str) -> bool:
    """Whether ``location`` is a well-formed location id (safe to put in a host name)."""
    return len(location) <= _MAX_LOCATION_LENGTH and _LOCATION.fullmatch(location) is not None


def api_root(location: str, override: str = "") -> str:
    """The Dialogflow endpoint for ``location``: ``override`` when set (tests, private endpoints), else Google's."""
    if override:
        return override.rstrip("/")
    if not is_location(location):
        raise ValueError(f"not a location id: {location!r}")
    if location == GLOBAL_LOCATION:
        return GLOBAL_ROOT
    return f"https://{location}-dialogflow.googleapis.com"


def upstream_url(forward: Forward, query_string: str, override: str = "") -> str:
    """The full Dialogflow URL for ``forward``, with the desktop's query string as it was sent."""
    url = api_root(forward.location, override) + forward.path
    return f"{url}?{query_string}" if query_string else url


def _is_segment(segment: str) -> bool:
    return segment not in (".", "..") and _SEGMENT.fullmatch(segment) is not None
