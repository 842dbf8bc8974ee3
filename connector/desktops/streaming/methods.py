"""The streaming method table and what a stream request must name, as pure functions.

One method today, as in Google's sample: ``streaming_reactive_companion_suggestions``
on ``google.cloud.dialogflow.v2beta1.Participants``. A stream goes to the
WebChannel endpoint of the location of ``payload.participant``
(``projects/P/locations/L/...``); the project must be one the REST proxy
serves. Response keys are converted from snake_case to camelCase for the UI
modules, as the sample does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from connector.dialogflow_proxy import routes


@dataclass(frozen=True)
class Method:
    """A streaming RPC the desktop may open, by the name the UI modules use."""

    name: str
    channel_path: str  # the WebChannel path of the RPC, without a leading slash


METHODS: dict[str, Method] = {
    method.name: method
    for method in (
        Method(
            "streaming_reactive_companion_suggestions",
            "google.cloud.dialogflow.v2beta1.Participants/StreamingReactiveCompanionSuggestions/channel",
        ),
    )
}

# Project ids are lower-case words joined by hyphens; the segment also goes into log-free error text only.
_PARTICIPANT = re.compile(r"projects/(?P<project>[a-z][a-z0-9-]{0,62})/locations/(?P<location>[^/]+)/.+")


class StreamRefused(ValueError):
    """A stream request that cannot be served; ``str()`` is safe to show the client."""


@dataclass(frozen=True)
class Target:
    """Where a stream goes: the method, and the project and location of its participant."""

    method: Method
    project: str
    location: str


def method_named(name: object) -> Method:
    """The method called ``name``, or ``StreamRefused`` saying why not."""
    if name is None or name == "":
        raise StreamRefused("the first stream-request of a stream must name its method")
    if not isinstance(name, str):
        raise StreamRefused("method must be a string")
    method = METHODS.get(name)
    if method is None:
        raise StreamRefused(f"unknown streaming method {name[:100]!r}; known: {', '.join(sorted(METHODS))}")
    return method


def target_of(method: Method, payload: object) -> Target:
    """The project and location of ``payload.participant``, or ``StreamRefused`` when it names none."""
    participant = payload.get("participant") if isinstance(payload, dict) else None
    if not isinstance(participant, str):
        raise StreamRefused("payload.participant is required: projects/P/locations/L/conversations/C/participants/X")
    found = _PARTICIPANT.fullmatch(participant)
    if found is None or not routes.is_location(found["location"]):
        raise StreamRefused("payload.participant has no location: expected projects/P/locations/L/...")
    return Target(method=method, project=found["project"], location=found["location"])


def channel_url(target: Target, override: str = "") -> str:
    """The WebChannel URL for ``target``: under ``override`` when set (tests, proxies), else Google's host."""
    root = override.rstrip("/") if override else f"https://{target.location}-dialogflow-webchannel.googleapis.com"
    return f"{root}/{target.method.channel_path}"


def snake_to_camel(value: Any) -> Any:
    """``value`` with every object key converted from snake_case to camelCase, recursively."""
    if isinstance(value, dict):
        return {_camel(key): snake_to_camel(item) for key, item in value.items()}
    if isinstance(value, list):
        return [snake_to_camel(item) for item in value]
    return value


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    # The sample's conversion, except that it keeps a word's own capitals (str.title would lower "ID" to "Id").
    return head + "".join(word[:1].upper() + word[1:] for word in rest)
