"""The four push endpoints served ahead of Django: a small ASGI handler on the interceptor's hot path.

A Django view costs a push more CPU than the push's own work (request and
response objects, URL resolution, middleware, signals: py-spy figures in
docs/performance.md). This handler answers a ``POST`` to one of
the four paths itself, with the same judgement as the Django views
(``interceptor.push.accept_push``: authentication, size limit, parsing,
publishing, log lines) and the same answer and headers Django's stack would
give. Everything else goes to Django unchanged, including whatever takes
Django's machinery to answer the same way: other methods (405 with ``Allow``),
requests carrying ``Origin`` (CORS), a host not in ``ALLOWED_HOSTS`` (400),
and the settings that make Django redirect or refuse before any view.
"""

from __future__ import annotations

import functools
import io
import json
import logging
from collections.abc import Callable

from asgiref.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope, Scope
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.core.signals import setting_changed
from django.utils import timezone

from common.asgi_body import read_body
from common.asgi_responses import header, send_response
from events import metrics
from events.kinds import EventKind
from interceptor import push_auth
from interceptor.push import Answer, accept_push

ASGIApp = Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], object]
PATHS = {f"/{kind}": str(kind) for kind in EventKind}
# What Django's handler logs for a 5xx it answers, on the logger it uses.
request_logger = logging.getLogger("django.request")
REASONS = {200: "OK", 204: "No Content", 401: "Unauthorized", 403: "Forbidden", 500: "Internal Server Error",
           503: "Service Unavailable"}


class FastPush:
    """ASGI application: the push endpoints, then ``django_application`` for every other request."""

    def __init__(self, django_application: ASGIApp) -> None:
        self.django_application = django_application

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        """Serve a push, or hand the request to Django."""
        event = PATHS.get(scope.get("path", "")) if scope["type"] == "http" else None
        if event is None or not _served_here(scope):
            await self.django_application(scope, receive, send)
            return
        received_at = timezone.now()
        body = await read_body(receive, settings.PUSH_MAX_BODY_BYTES + 1)
        if body is None:
            return  # the client went away; Django answers nothing either
        try:
            answer = await accept_push(
                event,
                body,
                authorization=header(scope, b"authorization"),
                audiences=lambda: push_auth.request_audiences(_django_request(scope)),
                received_at=received_at,
            )
        except Exception:
            # As Django's handler does for an exception in a view: logged with its traceback, JSON 500.
            request_logger.exception("Internal Server Error: %s", scope["path"], extra={"status_code": 500})
            answer = Answer(500, {"message": "Internal error; the service logged it."})
        else:
            if 400 <= answer.status < 500:
                # Django's handler logs every 4xx answer on django.request, "<reason>: <path>". A 5xx was
                # logged by accept_push already, with why: one ERROR line per 503 is enough.
                request_logger.warning(
                    "%s: %s", REASONS.get(answer.status, "Error"), scope["path"], extra={"status_code": answer.status}
                )
        metrics.push_answered(event, answer.status)
        await _send(send, answer)


def _served_here(scope: HTTPScope) -> bool:
    """Whether this request's answer needs nothing of Django's beyond what ``_send`` writes."""
    if scope["method"] != "POST" or scope.get("root_path") or settings.SECURE_SSL_REDIRECT:
        return False
    if settings.DISALLOWED_USER_AGENTS or (settings.SECURE_HSTS_SECONDS and settings.SECURE_PROXY_SSL_HEADER):
        return False
    if any(name == b"origin" for name, _ in scope["headers"]):
        return False  # CORS headers: corsheaders decides
    if "*" not in settings.ALLOWED_HOSTS:
        try:
            _django_request(scope).get_host()
        except DisallowedHost:
            return False  # Django answers 400 and logs it
    return True


def _django_request(scope: HTTPScope) -> ASGIRequest:
    """A Django request for ``scope`` without its body, for the helpers that read host, scheme and path."""
    return ASGIRequest(scope, io.BytesIO())


@functools.cache
def _security_headers() -> tuple[tuple[bytes, bytes], ...]:
    """The headers Django's ``SecurityMiddleware`` and corsheaders add to a push answer (no ``Origin`` sent).
    Made once (a settings read is a Python call; five a push here), again after a setting changes."""
    headers = [(b"Vary", b"origin")]
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append((b"X-Content-Type-Options", b"nosniff"))
    policy = settings.SECURE_REFERRER_POLICY
    if policy:
        value = policy if isinstance(policy, str) else ",".join(policy)
        headers.append((b"Referrer-Policy", value.encode("latin-1")))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append((b"Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY.encode("latin-1")))
    return tuple(headers)


setting_changed.connect(lambda **kwargs: _security_headers.cache_clear(), weak=False)


async def _send(send: ASGISendCallable, answer: Answer) -> None:
    """Write ``answer`` as Django would: ``JsonResponse``'s encoding, or an empty 204, Django's header names."""
    if answer.body is None:
        content, content_type = b"", b"text/html; charset=utf-8"
    else:
        content, content_type = json.dumps(answer.body).encode(), b"application/json"
    headers = _security_headers()
    if answer.retry_after is not None:
        headers += ((b"Retry-After", str(answer.retry_after).encode()),)
    await send_response(send, answer.status, content, content_type=content_type, headers=headers)
