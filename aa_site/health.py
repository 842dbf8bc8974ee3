"""Health endpoints for every role: ``/healthz`` (the process answers) and ``/readyz`` (it can do its job).

Cloud Run's startup probe asks ``/readyz`` and its liveness probe ``/healthz``
(``deploy/*.yaml``). Readiness means: the settings pass the start-up checks,
Redis answers a PING within ``REDIS_TIMEOUT_SECONDS`` when ``REDISHOST`` is set,
and, on a process that signs tokens, the signing secret is loaded. The answer
names each check and, for a failed one, the reason; never a secret value. A
process that received SIGTERM is not ready (503, ``draining``) until it exits.
With ``REDIS_ACK_REPLICAS``, the first check logs a warning when Redis has
fewer replicas connected than it asks for; readiness does not wait for them.
"""

from __future__ import annotations

import asyncio
import logging

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core import checks
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_safe

from common import draining
from connector import jwt_secret
from events import redis_client, replica_ack

logger = logging.getLogger(__name__)
# A probe must answer well within Cloud Run's probe timeout (1 s by default, 2 s in deploy/).
REDIS_TIMEOUT_SECONDS = 1.0
OK = "ok"
NOT_CONFIGURED = "not configured"


@require_safe
async def healthz(request: HttpRequest) -> HttpResponse:
    """200 ``ok`` while the process serves requests; nothing else is consulted."""
    return HttpResponse("ok", content_type="text/plain; charset=utf-8")


@require_safe
async def readyz(request: HttpRequest) -> JsonResponse:
    """200 ``{"status": "ready", "checks": {...}}``, or 503 ``{"status": "unavailable", ...}`` naming what failed;
    503 ``{"status": "draining"}`` once the process began to shut down (``aa_site.drain``)."""
    if draining.is_draining():
        return JsonResponse({"status": "draining"}, status=503, headers={"Cache-Control": "no-store"})
    results = {"settings": await sync_to_async(_settings_check, thread_sensitive=False)()}
    results["redis"] = await _redis_check()
    if settings.SERVICE_ROLE != "interceptor":
        results["signing_secret"] = await sync_to_async(_signing_secret_check, thread_sensitive=False)()
    ready = all(value in (OK, NOT_CONFIGURED) for value in results.values())
    return JsonResponse(
        {"status": "ready" if ready else "unavailable", "checks": results},
        status=200 if ready else 503,
        headers={"Cache-Control": "no-store"},
    )


def _settings_check() -> str:
    """``ok``, or the ids of the start-up checks that fail (their messages may quote setting values)."""
    messages = checks.run_checks(include_deployment_checks=False)
    failed = sorted({m.id or "unknown" for m in messages if m.is_serious() and not m.is_silenced()})
    return OK if not failed else "failed: " + ", ".join(failed)


async def _redis_check() -> str:
    """``ok`` when Redis answers PING in time, ``not configured`` without ``REDISHOST``."""
    if not redis_client.is_configured():
        return NOT_CONFIGURED
    global _redis_version_ok
    client = redis_client.get_redis()
    try:
        await asyncio.wait_for(client.ping(), timeout=REDIS_TIMEOUT_SECONDS)
        if not _redis_version_ok:
            info = await asyncio.wait_for(client.info("server"), timeout=REDIS_TIMEOUT_SECONDS)
            too_old = old_redis_version(info)
            if too_old:
                # The history appends through a Redis function and publishes with SPUBLISH: both Redis 7.
                return f"failed: Redis {too_old} is older than {MIN_REDIS_VERSION[0]}.{MIN_REDIS_VERSION[1]}"
            _redis_version_ok = True
            await _warn_if_replicas_short(client)
    except asyncio.TimeoutError:
        return f"failed: no answer within {REDIS_TIMEOUT_SECONDS:g} s"
    except Exception as error:  # any client or socket error means "not reachable"; the class name says which
        return f"failed: {error.__class__.__name__}"
    return OK


async def _warn_if_replicas_short(client) -> None:
    try:
        await asyncio.wait_for(replica_ack.warn_if_short(client), timeout=REDIS_TIMEOUT_SECONDS)
    except Exception as error:  # a warning's own failure must not make the process unready
        logger.warning("Could not count Redis's replicas for REDIS_ACK_REPLICAS: %s", error.__class__.__name__)


MIN_REDIS_VERSION = (7, 0)
# Checked once per process: a server's version changes only with the server.
_redis_version_ok = False


def old_redis_version(info: dict) -> str | None:
    """The oldest ``redis_version`` in ``info`` (``INFO server`` of one server, or of each node of a cluster,
    keyed by node) when it is below ``MIN_REDIS_VERSION``; else None."""
    nodes = [node for node in info.values() if isinstance(node, dict)]
    found = [info.get("redis_version"), *(node.get("redis_version") for node in nodes)]
    for version in filter(None, found):
        numbers = tuple(int(part) for part in str(version).split(".")[:2] if part.isdigit())
        if numbers < MIN_REDIS_VERSION:
            return str(version)
    return None


def _signing_secret_check() -> str:
    """``ok`` once the signing secret is loaded (it is read once and cached, as at start-up)."""
    try:
        jwt_secret.describe_source()
    except jwt_secret.SecretUnavailable:
        # The start-up check (aa_site.E005) carries the full reason; here only the fact.
        return "failed: the JWT signing secret is unavailable (see aa_site.E005 at start-up)"
    return OK
