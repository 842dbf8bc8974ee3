"""DRF throttle classes counted in Redis by the atomic window of ``connector.ratelimit``, shared by all instances.

Each class names its setting (``(requests, window seconds)`` or ``None`` for
off), a bucket, and whom a request is counted against. ``allow_request`` is
a coroutine: ``views.AsyncAPIView`` awaits it on the event loop, so a slow
Redis holds no thread. Over the limit the view answers 429 ``{"message"}``
with ``Retry-After`` (the window's remaining lifetime, whole seconds).
Redis unreachable: the request passes (``ratelimit.count`` warns), because
an outage of Redis must not lock every agent out.
"""

from __future__ import annotations

import hashlib
import logging
import math
from typing import Any

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from connector import ratelimit

logger = logging.getLogger(__name__)


class RedisWindowThrottle(BaseThrottle):
    """A fixed window per ``identity`` in ``bucket``, of ``settings.<rate_setting>`` requests."""

    rate_setting = ""
    bucket = ""
    # Only these methods count; None counts every method.
    methods: frozenset[str] | None = None
    # "{seconds}" is filled in; the 429's message.
    refusal = "Too many requests; retry in {seconds} seconds."

    def __init__(self) -> None:
        self.wait_seconds: float | None = None

    def identity(self, request: Any) -> str:
        """Whom ``request`` is counted against."""
        raise NotImplementedError

    async def allow_request(self, request: Any, view: Any) -> bool:  # type: ignore[override]
        """Count ``request`` into its window; False once the window holds more than the limit."""
        limit = getattr(settings, self.rate_setting)
        if limit is None or (self.methods is not None and request.method not in self.methods):
            return True
        requests, window = limit
        who = self.identity(request)
        counted = await ratelimit.count(f"{ratelimit.KEY_PREFIX}{self.bucket}:{who}", window, self.bucket)
        if counted is None or counted[0] <= requests:
            return True
        count, milliseconds_left = counted
        self.wait_seconds = max(1, math.ceil(milliseconds_left / 1000))
        if count == requests + 1:
            # Once per window and identity, not per refused request.
            logger.info("Rate limit %s/%ss reached for %s on %s", requests, window, self.loggable(who), self.bucket)
        return False

    def wait(self) -> float | None:
        """Seconds until the window ends (set by a refusing ``allow_request``)."""
        return self.wait_seconds

    def message(self) -> str:
        """The 429's message."""
        return self.refusal.format(seconds=self.wait_seconds)

    def loggable(self, who: str) -> str:
        """``who`` as it may appear in a log line."""
        return who


class RegistrationThrottle(RedisWindowThrottle):
    """``REGISTER_RATE_LIMIT`` per client address (``ratelimit.client_address``), /register and /register-app
    together: every attempt counts, accepted or refused by the provider, because the limit is what stops guessing."""

    rate_setting = "REGISTER_RATE_LIMIT"
    bucket = "register"
    refusal = "Too many registration attempts from this address; retry in {seconds} seconds."

    def identity(self, request: Any) -> str:
        """The client address."""
        return ratelimit.client_address(request)


class ConversationNameWriteThrottle(RedisWindowThrottle):
    """``CONVERSATION_NAME_RATE_LIMIT`` POSTs to /conversation-name per desktop token (its ``jti``).

    Per token, not per address: desktops of one contact center share an
    address. Reading and deleting count against ``ConversationNameLookupThrottle`` instead.
    """

    rate_setting = "CONVERSATION_NAME_RATE_LIMIT"
    bucket = "conversation-name"
    methods = frozenset({"POST"})
    refusal = "Too many conversation-name writes with this token; retry in {seconds} seconds."

    def identity(self, request: Any) -> str:
        """The token's id (``request.auth``, set by ``DesktopJWTAuthentication``)."""
        return str(request.auth or "no-jti")

    def loggable(self, who: str) -> str:
        """A token id is not a secret, but a short prefix says enough."""
        return f"token {who[:8]}..."


class ConversationNameLookupThrottle(ConversationNameWriteThrottle):
    """``CONVERSATION_NAME_LOOKUP_RATE_LIMIT`` GETs and DELETEs of /conversation-name per token (its ``jti``; a
    service caller's account).

    A key is often a customer's phone number, and an answer says whether it is stored: without a bound, one
    valid token could walk the numbers. The default is far above what a desktop or a companion service
    looking names up for its calls needs, and far below what guessing takes.
    """

    rate_setting = "CONVERSATION_NAME_LOOKUP_RATE_LIMIT"
    bucket = "conversation-name-lookup"
    methods = frozenset({"GET", "DELETE"})
    refusal = "Too many conversation-name lookups with this token; retry in {seconds} seconds."


class ConversationNameUserLookupThrottle(ConversationNameLookupThrottle):
    """``CONVERSATION_NAME_LOOKUP_USER_RATE_LIMIT`` GETs and DELETEs of /conversation-name per user (the
    token's ``gcp_agent_assist_user``; a service caller's account): a user's every token shares one budget, so
    registering again for more tokens buys no more lookups."""

    rate_setting = "CONVERSATION_NAME_LOOKUP_USER_RATE_LIMIT"
    bucket = "conversation-name-lookup-user"
    refusal = "Too many conversation-name lookups for this user; retry in {seconds} seconds."

    def identity(self, request: Any) -> str:
        """A digest of the project and user: a user name may be long, or an address, and is no key material."""
        user = request.user
        named = f"{getattr(user, 'project', '')}/{getattr(user, 'user', '')}"
        return hashlib.sha256(named.encode("utf-8", "surrogatepass")).hexdigest()[:32]

    def loggable(self, who: str) -> str:
        """The digest's prefix: enough to tell users apart in the log, and names no one."""
        return f"user {who[:8]}..."


class ConversationNameAddressLookupThrottle(ConversationNameLookupThrottle):
    """``CONVERSATION_NAME_LOOKUP_ADDRESS_RATE_LIMIT`` GETs and DELETEs of /conversation-name per client address
    (``ratelimit.client_address``), whatever users and tokens: generous, since a contact center's agents share
    an address, but it bounds what registering many users from one address buys."""

    rate_setting = "CONVERSATION_NAME_LOOKUP_ADDRESS_RATE_LIMIT"
    bucket = "conversation-name-lookup-address"
    refusal = "Too many conversation-name lookups from this address; retry in {seconds} seconds."

    def identity(self, request: Any) -> str:
        """The client address."""
        return ratelimit.client_address(request)

    def loggable(self, who: str) -> str:
        """An address, as the registration limit logs it."""
        return who
