"""A fake of the Google APIs the operator commands change: Dialogflow conversation profiles and Pub/Sub.

A real HTTP server on 127.0.0.1 answering the REST calls that google-cloud-dialogflow's and
google-cloud-pubsub's REST transports make (paths and bodies as in their ``transports/rest.py``):
``GET``/``PATCH /v2/projects/P/locations/L/conversationProfiles/ID`` (``updateMask`` honoured),
``PUT /v1/projects/P/topics/T``, ``PUT``/``GET /v1/projects/P/subscriptions/S`` and
``POST .../subscriptions/S:modifyPushConfig``. It checks the access token of
``testing.fake_secret_manager.write_credentials`` and records every request.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from testing.fake_secret_manager import ACCESS_TOKEN, _error
from testing.fake_server import serve_handler

PROFILE_PATH = re.compile(r"^/v2/(?P<name>projects/[^/]+/(?:locations/[^/]+/)?conversationProfiles/[^/:]+)$")
TOPIC_PATH = re.compile(r"^/v1/(?P<name>projects/[^/]+/topics/[^/:]+)$")
SUBSCRIPTION_PATH = re.compile(r"^/v1/(?P<name>projects/[^/]+/subscriptions/[^/:]+)(?P<verb>:modifyPushConfig)?$")


@dataclass
class FakeOperatorApis:
    port: int = 0
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    topics: set[str] = field(default_factory=set)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    received: list[tuple[str, str]] = field(default_factory=list)  # (method, path with query)
    forced_status: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        self.received.append((request.method, request.path_qs))
        if self.forced_status is not None:
            return _error(self.forced_status, "forced by the test")
        if request.headers.get("Authorization") != f"Bearer {ACCESS_TOKEN}":
            return _error(401, "Request had invalid authentication credentials.")
        if match := PROFILE_PATH.match(request.path):
            return await self._profile(request, match["name"])
        if (match := TOPIC_PATH.match(request.path)) and request.method == "PUT":
            if match["name"] in self.topics:
                return _error(409, "Resource already exists in the project (resource=topic).")
            self.topics.add(match["name"])
            return web.json_response({"name": match["name"]})
        if match := SUBSCRIPTION_PATH.match(request.path):
            return await self._subscription(request, match["name"], bool(match["verb"]))
        return _error(404, f"Unknown method {request.method} {request.path}.")

    async def _profile(self, request: web.Request, name: str) -> web.Response:
        if name not in self.profiles:
            return _error(404, f"Conversation profile {name} not found.")
        if request.method == "GET":
            return web.json_response(self.profiles[name])
        if request.method != "PATCH":
            return _error(405, "Method not allowed.")
        body = await request.json()
        mask = request.query.get("updateMask", "")
        if not mask:
            return _error(400, "update_mask is required.")
        profile = self.profiles[name]
        for path in mask.split(","):
            source, target = body, profile
            *parents, leaf = [_camel(part) for part in path.split(".")]
            for part in parents:
                source, target = source.get(part, {}), target.setdefault(part, {})
            if leaf in source:
                target[leaf] = _enum_names(source[leaf])
            else:
                target.pop(leaf, None)
        return web.json_response(profile)

    async def _subscription(self, request: web.Request, name: str, modify: bool) -> web.Response:
        if request.method == "PUT":
            if name in self.subscriptions:
                return _error(409, "Resource already exists in the project (resource=subscription).")
            body = await request.json()
            if body.get("topic") not in self.topics:
                return _error(404, "Resource not found (resource=topic).")
            self.subscriptions[name] = {**body, "name": name}
            return web.json_response(self.subscriptions[name])
        if name not in self.subscriptions:
            return _error(404, "Resource not found (resource=subscription).")
        if request.method == "GET":
            return web.json_response(self.subscriptions[name])
        if modify and request.method == "POST":
            self.subscriptions[name]["pushConfig"] = (await request.json()).get("pushConfig", {})
            return web.json_response({})
        return _error(405, "Method not allowed.")


# The REST transport sends enums as numbers ($alt=json;enum-encoding=int); the API stores them as values.
MESSAGE_FORMATS = {0: "MESSAGE_FORMAT_UNSPECIFIED", 1: "PROTO", 2: "JSON"}


def _enum_names(config: Any) -> Any:
    if isinstance(config, dict) and isinstance(config.get("messageFormat"), int):
        return {**config, "messageFormat": MESSAGE_FORMATS[config["messageFormat"]]}
    return config


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@contextlib.contextmanager
def serve() -> Iterator[FakeOperatorApis]:
    fake = FakeOperatorApis()
    with serve_handler(fake._handle, name="fake-operator-apis") as running:
        fake.port = running.port
        yield fake
