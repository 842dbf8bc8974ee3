"""The service's own Google access token as its Redis password: Memorystore's IAM authentication.

Memorystore for Redis Cluster created with ``--auth-mode=iam-auth`` has no AUTH
string: a connection sends ``AUTH <access token>`` of a principal holding
``roles/redis.dbConnectionUser`` (``REDIS_IAM_AUTH``). The token comes from
Application Default Credentials (the metadata server on Cloud Run) and lives
an hour; each new connection takes the current one, refreshed once it is
within ``REFRESH_MARGIN_SECONDS`` of expiry. google-auth is synchronous, so
discovery and refreshes run in a worker thread, one at a time; one provider
per event loop serves both of its clients (commands and subscriptions), so
they share a token rather than each fetching its own. The token is never
logged; a failure surfaces as ``RedisIamTokenUnavailable``, a ``RedisError``,
so callers treat it as Redis being unavailable.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Any

import google.auth
import google.auth.transport.requests
from google.auth import exceptions as google_exceptions
from google.auth.credentials import Credentials
from redis.credentials import CredentialProvider
from redis.exceptions import RedisError

from common.loop_local import LoopLocal

logger = logging.getLogger(__name__)

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
# A connection made with a token must not outlive it by much before the next one gets a new token.
REFRESH_MARGIN_SECONDS = 300.0
TOKEN_REQUEST_TIMEOUT_SECONDS = 10.0


class RedisIamTokenUnavailable(RedisError):
    """No access token for Redis right now (no credentials, or the token endpoint failed); no secret in it."""


class _TimedRequest(google.auth.transport.requests.Request):
    def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Any = None,
                 timeout: float | None = None, **kwargs: Any) -> Any:
        return super().__call__(url, method=method, body=body, headers=headers,
                                timeout=timeout or TOKEN_REQUEST_TIMEOUT_SECONDS, **kwargs)


class IamAccessToken(CredentialProvider):
    """redis-py's credential provider: ``(token,)``, so each connection sends ``AUTH <token>``."""

    def __init__(self) -> None:
        self._credentials: Credentials | None = None
        self._lock = asyncio.Lock()

    def get_credentials(self) -> tuple[str]:
        raise RedisIamTokenUnavailable("the IAM token is read by the asyncio clients only")

    async def get_credentials_async(self) -> tuple[str]:
        async with self._lock:
            try:
                return (await asyncio.to_thread(self._token),)
            except (google_exceptions.GoogleAuthError, ValueError, OSError) as error:
                logger.warning("No Google access token for Redis (REDIS_IAM_AUTH): %s", type(error).__name__)
                raise RedisIamTokenUnavailable(f"no Google access token for Redis ({type(error).__name__})") \
                    from None

    def _token(self) -> str:
        if self._credentials is None:
            self._credentials, _ = google.auth.default(scopes=list(SCOPES))
        credentials = self._credentials
        if not credentials.token or _expires_within(credentials, REFRESH_MARGIN_SECONDS):
            request = _TimedRequest()
            try:
                credentials.refresh(request)
            finally:
                request.session.close()
        return credentials.token


def _expires_within(credentials: Credentials, seconds: float) -> bool:
    expiry = credentials.expiry  # naive UTC, google-auth's convention
    if expiry is None:
        return False
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    return (expiry - now).total_seconds() < seconds


_providers: LoopLocal[IamAccessToken] = LoopLocal(IamAccessToken)


def provider() -> IamAccessToken:
    """The running event loop's provider."""
    return _providers.get()
