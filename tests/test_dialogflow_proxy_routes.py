"""The proxy's route table and endpoint choice (connector/dialogflow_proxy/routes.py), as pure functions."""

from __future__ import annotations

import pytest

from connector.dialogflow_proxy import routes

PREFIX = "/v2/projects/p-1/locations/global"


@pytest.mark.parametrize(
    ("method", "tail"),
    [
        ("GET", "/conversations/c"), ("GET", "/conversations/c/participants/p"),
        ("GET", "/conversationProfiles/x"), ("GET", "/conversationModels/x"), ("GET", "/generators/x"),
        ("POST", "/conversations"), ("POST", "/conversations/c:complete"),
        ("POST", "/conversations/c/participants/p:analyzeContent"),
        ("POST", "/suggestions:searchKnowledge"), ("POST", "/statelessSuggestion:generate"),
        ("PATCH", "/conversations/c/participants/p"), ("PATCH", "/answerRecords/a"),
    ],
)
@pytest.mark.parametrize("version", ["v2", "v2beta1"])
def test_table_rows_are_forwarded(version: str, method: str, tail: str) -> None:
    """Every row of the route table (docs/dialogflow-proxy.md), in both versions, is a Forward carrying project, location and path."""
    path = f"/{version}/projects/p-1/locations/us-central1{tail}"
    assert routes.match(method, path) == routes.Forward(version=version, project="p-1", location="us-central1",
                                                       path=path)


@pytest.mark.parametrize(
    "path",
    [
        "/v3/projects/p-1/locations/global/conversations/c",  # unknown version
        "/v2/projects/p-1/conversations/c",  # no locations part
        "/v2/project/p-1/locations/global/conversations/c",
        f"{PREFIX}/answerRecords",  # answerRecords.list is not exposed
        f"{PREFIX}/conversationProfiles",  # list
        f"{PREFIX}/agents/a",
        f"{PREFIX}/conversations/c/",  # empty segment
        f"{PREFIX}/conversations//c",
        f"{PREFIX}/conversations/c/../../../../p-2/locations/global/conversations/c",
        f"{PREFIX}/conversations/./c",
        f"{PREFIX}/conversations/c d",
        f"{PREFIX}/conversations/c?x",
        f"{PREFIX}/conversations/c#x",
        f"{PREFIX}/conversations/c@evil.example",
        f"{PREFIX}/suggestions:searchKnowledge/x",
        "/v2/projects/p-1/locations/Global/conversations/c",  # location ids are lower case
        "/v2/projects/p-1/locations/evil.example.com/conversations/c",
        "/v2/projects/p-1/locations/-us/conversations/c",
        "v2/projects/p-1/locations/global/conversations/c",  # not absolute
        "/v2",
        "",
    ],
)
def test_everything_else_is_not_found(path: str) -> None:
    """Paths outside the table, malformed locations and dot segments are NotFound for every method."""
    for method in ("GET", "POST", "PATCH", "DELETE"):
        assert routes.match(method, path) == routes.NotFound(), (method, path)


@pytest.mark.parametrize(
    ("method", "tail", "allowed"),
    [
        ("DELETE", "/conversations/c", ("GET", "POST", "PATCH")),
        ("PUT", "/answerRecords/a", ("PATCH",)),
        ("GET", "/statelessSuggestion:generate", ("POST",)),
        ("PATCH", "/generators/g", ("GET",)),
    ],
)
def test_known_path_with_another_method_is_method_not_allowed(method: str, tail: str, allowed: tuple[str, ...]) -> None:
    """A path of the table with another method names the methods it does take."""
    assert routes.match(method, PREFIX + tail) == routes.MethodNotAllowed(allowed=allowed)


@pytest.mark.parametrize("tail", ["/conversations", "/answerRecords"])
def test_list_calls_are_not_found(tail: str) -> None:
    """conversations.list and answerRecords.list are deliberately not exposed: 404 as in Google's sample, not 405."""
    assert routes.match("GET", PREFIX + tail) == routes.NotFound()


@pytest.mark.parametrize(
    ("location", "root"),
    [
        ("global", "https://dialogflow.googleapis.com"),
        ("us-central1", "https://us-central1-dialogflow.googleapis.com"),
        ("europe-west2", "https://europe-west2-dialogflow.googleapis.com"),
        ("asia-northeast1", "https://asia-northeast1-dialogflow.googleapis.com"),
    ],
)
def test_each_location_goes_to_its_google_endpoint(location: str, root: str) -> None:
    """global is dialogflow.googleapis.com; any other location is <location>-dialogflow.googleapis.com."""
    assert routes.api_root(location) == root


def test_override_replaces_every_locations_endpoint() -> None:
    """DIALOGFLOW_API_ROOT (trailing slash ignored) serves every location."""
    for location in ("global", "us-central1"):
        assert routes.api_root(location, "http://127.0.0.1:9/") == "http://127.0.0.1:9"


@pytest.mark.parametrize("location", ["evil.example.com#", "a.b", "US", "a_b", "", "a" * 64, "x--"])
def test_a_malformed_location_never_becomes_a_host(location: str) -> None:
    """A location that is not a location id raises instead of naming another host."""
    with pytest.raises(ValueError):
        routes.api_root(location)


def test_upstream_url_keeps_path_and_raw_query() -> None:
    """The forwarded URL is the endpoint, the path as received and the query string as sent."""
    forward = routes.match("GET", "/v2beta1/projects/p-1/locations/us-east1/conversations/c/messages")
    assert isinstance(forward, routes.Forward)
    assert routes.upstream_url(forward, "pageSize=5&filter=a%20b") == (
        "https://us-east1-dialogflow.googleapis.com/v2beta1/projects/p-1/locations/us-east1/conversations/c/messages"
        "?pageSize=5&filter=a%20b"
    )
    assert routes.upstream_url(forward, "").endswith("/conversations/c/messages")
