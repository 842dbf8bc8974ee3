"""``aa_site.middleware``: Django's security and common middleware, without a thread per request."""

from __future__ import annotations

import threading

import pytest
from channels.testing import HttpCommunicator

from aa_site.asgi import application


async def get(path: str) -> dict:
    communicator = HttpCommunicator(application, "GET", path)
    return await communicator.get_response(timeout=10)


async def test_responses_keep_the_security_and_common_middleware_headers() -> None:
    """nosniff, Referrer-Policy, Cross-Origin-Opener-Policy and Content-Length, as Django's middleware sets them."""
    response = await get("/status")
    headers = {name.decode().lower(): value.decode() for name, value in response["headers"]}
    assert response["status"] == 200
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    assert headers["cross-origin-opener-policy"] == "same-origin"
    assert headers["content-length"] == str(len(response["body"]))


async def test_a_request_starts_no_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole middleware chain and the view run on the event loop: no sync_to_async thread per request."""
    await get("/status")  # warm-up: URL resolver and middleware chain built
    started: list[threading.Thread] = []
    original_start = threading.Thread.start

    def counting_start(thread: threading.Thread) -> None:
        started.append(thread)
        original_start(thread)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    for _ in range(3):
        assert (await get("/status"))["status"] == 200
    assert started == []
