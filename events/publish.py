"""Accepts one conversation event: stored in the history, de-duplicated, and published to every connector.

The interceptor calls ``publish`` for each valid push; each connector process
receives the event once (``connector.desktops.fanout``) and relays it to its desktops
in that conversation. One Redis round trip per call (``events.history``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from django.conf import settings

from events import conversations, metrics
from events.history import Appended, get_history
from events.kinds import EventKind
from events.replica_ack import ReplicasBehind


class DeliveryUnavailable(Exception):
    """The event could not be stored; the caller should retry later (Pub/Sub: answer 5xx)."""


class ReplicationUnconfirmed(DeliveryUnavailable):
    """The event is stored on the primary, but fewer of its replicas than ``REDIS_ACK_REPLICAS`` confirmed it in
    time: retry later (the retry is a duplicate, acknowledged once the replicas have it)."""


def encode_payload(payload: dict[str, Any]) -> str:
    """The payload as the compact JSON every desktop frame embeds as it is.

    orjson: the same JSON as ``json.dumps(payload, separators=(",", ":"))`` once parsed, several
    times faster. It writes non-ASCII characters as UTF-8 instead of ``\\u`` escapes (the frames
    are UTF-8 text) and refuses a lone surrogate, which ``interceptor.envelope`` never lets through.
    """
    return orjson.dumps(payload).decode("utf-8")


async def publish(
    *, conversation_name: str, event: EventKind | str, payload: dict[str, Any], message_id: str | None = None
) -> Appended:
    """Store ``payload`` as ``event`` in the conversation's history and send it to the connectors.

    ``conversation_name`` may be in either accepted form (``InvalidConversationName`` otherwise).
    ``message_id`` (Pub/Sub's) de-duplicates: an event with the same kind and id already accepted
    for the conversation is not stored or sent again (``Appended.duplicate``). Raises
    ``DeliveryUnavailable`` when Redis is unreachable or does not answer within
    ``EVENT_STORE_TIMEOUT`` seconds; ``ReplicationUnconfirmed`` when it stored the event but fewer replicas
    than ``REDIS_ACK_REPLICAS`` confirmed it in time.
    """
    conversation = conversations.normalise(conversation_name)
    payload_json = encode_payload(payload)
    try:
        async with asyncio.timeout(settings.EVENT_STORE_TIMEOUT):
            return await get_history().append(
                conversation=conversation, kind=str(event), message_id=message_id, payload_json=payload_json
            )
    except ReplicasBehind as error:
        metrics.redis_error("replicas")
        raise ReplicationUnconfirmed(str(error)) from error
    except Exception as error:
        # Redis errors, OSError and timeouts alike: the event was not accepted. (CancelledError
        # is a BaseException, so a cancelled request still ends as cancelled.)
        metrics.redis_error("publish")
        raise DeliveryUnavailable(f"{error.__class__.__name__}: {error}") from error
