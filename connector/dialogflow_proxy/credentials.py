"""The service's own Google credentials (Application Default Credentials), refreshed off the event loop.

``google.auth.default()`` finds the credentials the usual way
(``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's application-default login, or the
metadata server on Cloud Run / GCE). google-auth is synchronous, so discovery
and every token refresh run in a worker thread (``asyncio.to_thread``) behind
an ``asyncio.Lock``: concurrent requests that find the token stale share one
refresh instead of each starting their own. A token is refreshed once it is
within google-auth's refresh threshold of expiry (a few minutes), so a
request never goes out with a token about to lapse.

One ``CredentialSource`` per event loop (an ``asyncio.Lock`` belongs to one loop);
a daphne process has one loop, so in production this is one per process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import google.auth
import google.auth.transport.requests
from google.auth import exceptions as google_exceptions
from google.auth.credentials import Credentials, TokenState

from common.loop_local import LoopLocal

logger = logging.getLogger(__name__)

# Least privilege: Dialogflow only (what the sample asks for), not cloud-platform.
SCOPES = ("https://www.googleapis.com/auth/dialogflow",)
# A token endpoint or metadata server that hangs must not hold every proxied
# call behind the lock for google-auth's default of 120 s per attempt.
TOKEN_REQUEST_TIMEOUT_SECONDS = 10.0
# After discovery finds no credentials, answer 503 at once for this long instead of
# repeating the search (which probes the metadata server) on every request.
DISCOVERY_RETRY_SECONDS = 30.0


class CredentialsUnavailable(Exception):
    """No usable Google credentials right now; ``str()`` is safe to show a client."""


class _TimedRequest(google.auth.transport.requests.Request):
    """google-auth's requests transport with a bounded default timeout."""

    def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Any = None,
                 timeout: float | None = None, **kwargs: Any) -> Any:
        return super().__call__(url, method=method, body=body, headers=headers,
                                timeout=timeout or TOKEN_REQUEST_TIMEOUT_SECONDS, **kwargs)


class CredentialSource:
    """Application Default Credentials for one event loop, with one refresh at a time."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._credentials: Credentials | None = None
        self._discovery_failed_until = 0.0
        # One HTTP session for token requests; the lock means one refresh uses it at a time.
        self._request = _TimedRequest()

    def close(self) -> None:
        """Close the HTTP session that token requests use."""
        self._request.session.close()

    async def authorization_headers(self) -> dict[str, str]:
        """Headers that authorise a Google API call (``Authorization``, and a quota project when configured)."""
        credentials = self._credentials
        if credentials is None or credentials.token_state is not TokenState.FRESH:
            async with self._lock:
                # Whoever held the lock before us may have refreshed already.
                credentials = await self._fresh()
        headers: dict[str, str] = {}
        credentials.apply(headers)
        return headers

    async def _fresh(self) -> Credentials:
        credentials = self._credentials or await self._discover()
        if credentials.token_state is not TokenState.FRESH:
            try:
                await asyncio.to_thread(credentials.refresh, self._request)
            except (google_exceptions.GoogleAuthError, ValueError, OSError) as error:
                # RefreshError (the token endpoint said no) and TransportError (it could not be reached).
                logger.warning("Refreshing the Google access token failed: %s: %s", type(error).__name__, error)
                raise CredentialsUnavailable("The service's Google credentials could not be refreshed.") from None
        return credentials

    async def _discover(self) -> Credentials:
        if time.monotonic() < self._discovery_failed_until:
            raise CredentialsUnavailable("The service has no Google credentials.")
        try:
            credentials, _ = await asyncio.to_thread(google.auth.default, scopes=list(SCOPES))
        except (google_exceptions.GoogleAuthError, ValueError, OSError) as error:
            # DefaultCredentialsError mostly; a broken key file can surface as ValueError or OSError.
            self._discovery_failed_until = time.monotonic() + DISCOVERY_RETRY_SECONDS
            logger.warning("No Google Application Default Credentials: %s", error)
            raise CredentialsUnavailable("The service has no Google credentials.") from None
        self._credentials = credentials
        return credentials


_sources: LoopLocal[CredentialSource] = LoopLocal(CredentialSource, close=CredentialSource.close)


def get_source() -> CredentialSource:
    """The running loop's ``CredentialSource``, created on first use and closed with its loop."""
    return _sources.get()
