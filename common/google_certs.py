"""Google's token-signing certificates, fetched asynchronously and cached as long as Google allows.

The document at the URL a caller names (``PUSH_AUTH_CERTS_URL`` for push
authentication, ``SERVICE_AUTH_CERTS_URL`` for service callers of the
connector; by default https://www.googleapis.com/oauth2/v1/certs) maps each
key id to a PEM X.509 certificate. It is fetched with a pooled ``httpx`` client per event loop
(``common.http_clients``), never with
google-auth's synchronous ``requests`` transport, which would block the event
loop. A copy is kept until its ``Cache-Control: max-age`` (less any ``Age``)
runs out; concurrent callers that find no fresh copy share one fetch.

State is kept per event loop, like the client: an ``asyncio.Task`` belongs to
the loop that made it. Daphne runs one loop, so in production that is one
cache per process.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx
from django.core.signals import setting_changed

from common import untrusted
from common.http_clients import pooled_client
from common.loop_local import LoopLocal

#: Google always sends max-age; should a proxy strip it, keep the copy this long rather than fetch per push.
DEFAULT_MAX_AGE_SECONDS = 300.0
#: Pub/Sub waits 10 s by default for a push's answer; a fetch must leave room to answer 503 before that.
FETCH_TIMEOUT = httpx.Timeout(connect=3.0, read=5.0, write=5.0, pool=3.0)
FETCH_DEADLINE_SECONDS = 6.0
#: RFC 9111: a delta-seconds too large to represent is taken as this.
MAX_DELTA_SECONDS = 2**31

_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d+)\"?", re.IGNORECASE)

Certificates = Mapping[str, str]


class CertificatesUnavailable(Exception):
    """The certificates could not be fetched or were unusable; the request should be retried (503)."""


@dataclass
class _Copy:
    certificates: Certificates
    expires_at: float  # loop.time()


@dataclass
class _LoopCache:
    copies: dict[str, _Copy] = field(default_factory=dict)
    fetches: dict[str, asyncio.Task[_Copy]] = field(default_factory=dict)


_caches: LoopLocal[_LoopCache] = LoopLocal(_LoopCache)


async def get_certificates(url: str) -> Certificates:
    """Return the key id -> PEM certificate mapping served at ``url``, from cache while it is fresh.

    Raises ``CertificatesUnavailable`` when the endpoint is unreachable, slow,
    answers other than 200, or serves something that is not such a mapping.
    A failure is not cached: the next call tries again.
    """
    loop = asyncio.get_running_loop()
    cache = _caches.get()
    copy = cache.copies.get(url)
    if copy is not None and loop.time() < copy.expires_at:
        return copy.certificates
    fetch = cache.fetches.get(url)
    if fetch is None:
        fetch = cache.fetches[url] = loop.create_task(_fetch(url))
        fetch.add_done_callback(lambda done: _store(cache, url, done))
    # Shielded: a request whose client goes away must not cancel the fetch other requests wait on.
    return (await asyncio.shield(fetch)).certificates


def _store(cache: _LoopCache, url: str, done: asyncio.Task[_Copy]) -> None:
    if cache.fetches.get(url) is done:
        del cache.fetches[url]
    if not done.cancelled() and done.exception() is None:
        cache.copies[url] = done.result()


async def _fetch(url: str) -> _Copy:
    try:
        async with asyncio.timeout(FETCH_DEADLINE_SECONDS):
            response = await pooled_client("google-certs").get(url, timeout=FETCH_TIMEOUT)
    except (httpx.TimeoutException, TimeoutError):
        raise CertificatesUnavailable(f"certificates at {url} did not arrive in time") from None
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        raise CertificatesUnavailable(f"certificates at {url} could not be fetched: {type(error).__name__}") from None
    if response.status_code != 200:
        raise CertificatesUnavailable(f"certificates at {url} answered HTTP {response.status_code}")
    try:
        document = untrusted.json_value(response.content)
    except untrusted.NotJson:
        raise CertificatesUnavailable(f"certificates at {url} are not JSON") from None
    if (
        not isinstance(document, dict)
        or not document
        or not all(isinstance(key, str) and isinstance(pem, str) for key, pem in document.items())
    ):
        # The JWK form ({"keys": [...]}, the v3 endpoint) lands here too: only the v1 PEM form is supported.
        raise CertificatesUnavailable(f"certificates at {url} are not a mapping of key ids to PEM certificates")
    lifetime = freshness_seconds(response.headers.get("Cache-Control"), response.headers.get("Age"))
    return _Copy(certificates=dict(document), expires_at=asyncio.get_running_loop().time() + lifetime)


def freshness_seconds(cache_control: str | None, age: str | None) -> float:
    """How long a response stays fresh: ``max-age`` less ``Age`` (RFC 9111), or the default without max-age."""
    match = _MAX_AGE.search(cache_control or "")
    if match is None:
        return DEFAULT_MAX_AGE_SECONDS
    return max(0.0, float(_delta_seconds(match.group(1)) - _delta_seconds(age or "0")))


def _delta_seconds(text: str) -> int:
    """A delta-seconds value, 0 when ``text`` is not one, and 2**31 when it is larger (RFC 9111, 1.2.2).

    ``int()`` alone would raise on a superscript digit (``isdigit()`` but not decimal)
    or on more than 4300 digits, and that would answer the request with a 500.
    """
    text = text.strip()
    if not text.isdecimal():
        return 0
    return MAX_DELTA_SECONDS if len(text) > 10 else min(int(text), MAX_DELTA_SECONDS)


def _reset(*, setting: str, **kwargs: object) -> None:
    # Tests point the *_CERTS_URL settings at a fake; a changed URL must not see another's copy.
    if setting.endswith("_CERTS_URL"):
        _caches.clear()


setting_changed.connect(_reset)
