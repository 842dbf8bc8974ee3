"""Pub/Sub push handling, whoever serves the request: what one push to an event's endpoint is answered.

``accept_push`` takes what a push brings (its event kind, body bytes and
``Authorization`` header) and returns an ``Answer``: status, JSON body and
``Retry-After``. It knows no request or response type: ``interceptor.fast_push``
(raw ASGI, ahead of Django) and ``interceptor.views`` (Django) turn their
requests into its input and its answer into their responses.

Status codes tell Pub/Sub what to do: 204 once the event is stored in the
conversation's history and published (``events.publish``), or is a redelivery
of one already stored; 200 for a poison message (acknowledged so it is not redelivered
forever, with one WARNING line naming the reason and messageId, never the
content); 503 when Redis is unreachable, so Pub/Sub retries, and with
``REDIS_ACK_REPLICAS`` when fewer replicas than it asks confirmed the stored
event in time (the redelivery is a duplicate: 204 once they have it).
Bodies up to ``PUSH_MAX_BODY_BYTES`` (14 MiB: Pub/Sub's 10 MiB of data,
base64'd, plus the envelope) are read; a larger one cannot come from Pub/Sub
and is acknowledged as poison.

With ``PUSH_AUTH_SERVICE_ACCOUNT`` set, every push must first carry Pub/Sub's
OIDC token for that account (``interceptor.push_auth``; certificates from ``common.google_certs``): 401/403 otherwise,
checked before the body is parsed, so an unauthenticated push is never
acknowledged as poison; 503 when Google's certificates cannot be fetched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings

from common import google_certs
from common.log_sampling import LogSampler
from events import metrics
from events.publish import DeliveryUnavailable, ReplicationUnconfirmed, publish
from interceptor import push_auth
from interceptor.envelope import PoisonMessage, parse_push
from interceptor.payload import desktop_payload

logger = logging.getLogger(__name__)
# Pub/Sub retries every refused push and keeps pushing new ones: while Redis or Google's certificates are
# out, or while a subscription sends the wrong token, each would write the same line again.
repeated = LogSampler(logger)

# Pub/Sub redelivers with backoff; this hints the retry delay to other callers.
RETRY_AFTER_SECONDS = 5
# Pub/Sub's messageIds are short decimal strings; anything far longer is not one of theirs.
MAX_LOGGED_ID = 100


@dataclass(frozen=True)
class Answer:
    """What a push is answered, whoever serves it: ``body`` as JSON (none for 204), ``Retry-After`` seconds."""

    status: int
    body: dict[str, Any] | None = None
    retry_after: int | None = None


ACCEPTED = Answer(204)


async def accept_push(
    event: str,
    body: bytes,
    *,
    authorization: str | None,
    audiences: Callable[[], list[str]],
    received_at: datetime,
) -> Answer:
    """Judge, parse and publish one push to ``event``'s endpoint; the answer for Pub/Sub.

    ``body`` is the request body, or its first ``PUSH_MAX_BODY_BYTES + 1`` bytes when longer;
    ``authorization`` the request's ``Authorization`` header; ``audiences`` gives the request's own URLs
    (called only when push authentication needs them).
    """
    refusal = await _refuse_unauthenticated(event, authorization, audiences)
    if refusal is not None:
        return refusal
    limit = settings.PUSH_MAX_BODY_BYTES
    if len(body) > limit:
        return _discard(event, f"body is larger than {limit} bytes", None)
    try:
        message = parse_push(body)
    except PoisonMessage as error:
        return _discard(event, str(error), error.message_id)

    payload = desktop_payload(message, event=event, received_at=received_at)
    try:
        appended = await publish(
            conversation_name=message.conversation_name, event=event, payload=payload, message_id=message.message_id
        )
    except ReplicationUnconfirmed as error:
        repeated.error(
            ("replicas behind", event),
            "Event %s (messageId=%s) %s; answering 503 so Pub/Sub redelivers",
            event,
            _loggable(message.message_id),
            error,
        )
        return _message(503, "The event is not yet on enough Redis replicas; retry later.",
                        retry_after=RETRY_AFTER_SECONDS)
    except DeliveryUnavailable as error:
        repeated.error(
            ("event store unavailable", event),
            "Event store unavailable for %s (messageId=%s): %s; answering 503 so Pub/Sub retries",
            event,
            _loggable(message.message_id),
            error,
        )
        return _message(503, "The event store is unavailable; retry later.", retry_after=RETRY_AFTER_SECONDS)
    if appended.duplicate:
        # A redelivery of what was already accepted (Pub/Sub missed our answer): acknowledged, not sent again.
        metrics.push_redelivered(event)
        logger.info("Redelivery of %s messageId=%s acknowledged; not sent again", event, _loggable(message.message_id))
    else:
        logger.debug("Accepted %s for %s at %s: %s", event, message.conversation_name, appended.offset, message.data)
    return ACCEPTED


async def _refuse_unauthenticated(
    event: str, authorization: str | None, audiences: Callable[[], list[str]]
) -> Answer | None:
    """The answer refusing a push without a valid Pub/Sub token, or ``None`` to go on (or when auth is off)."""
    service_account = settings.PUSH_AUTH_SERVICE_ACCOUNT
    if not service_account:
        return None
    try:
        token = push_auth.token_from_header(authorization)
        certificates = await google_certs.get_certificates(settings.PUSH_AUTH_CERTS_URL)
        audience = settings.PUSH_AUTH_AUDIENCE
        push_auth.verify(
            token, certificates, audiences=[audience] if audience else audiences(), service_account=service_account
        )
    except push_auth.PushAuthError as error:
        repeated.warning(("refused", event, error.status), "Refusing push to /%s with HTTP %s: %s", event,
                         error.status, error.reason)
        return _message(error.status, error.reason)
    except google_certs.CertificatesUnavailable as error:
        repeated.error(("certificates unavailable", event),
                       "Cannot check the push token for /%s: %s; answering 503 so Pub/Sub retries", event, error)
        return _message(503, "Google's certificates are unavailable; retry later.", retry_after=RETRY_AFTER_SECONDS)
    return None


def _message(status: int, message: str, *, retry_after: int | None = None) -> Answer:
    """The service's error shape, ``{"message"}`` (as ``common.responses.message_response`` writes it)."""
    return Answer(status, {"message": message}, retry_after)


def _discard(event: str, reason: str, message_id: str | None) -> Answer:
    logger.warning("Discarding push to /%s: %s (messageId=%s)", event, reason, _loggable(message_id))
    return Answer(200, {"status": "discarded", "reason": reason, "messageId": message_id})


def _loggable(message_id: str | None) -> str | None:
    """``message_id`` as it is when it looks like one, else quoted and cut short.

    Anyone can POST here when push authentication is off: a messageId with a line break
    would forge log lines, and a long one would flood the log.
    """
    if message_id is None or (len(message_id) <= MAX_LOGGED_ID and message_id.isprintable()):
        return message_id
    text = repr(message_id)
    return text if len(text) <= MAX_LOGGED_ID else text[:MAX_LOGGED_ID] + "..."
