"""Django's security and common middleware, run inline on the event loop; the request's trace for logs.

Under ASGI, Django runs a ``MiddlewareMixin``'s ``process_request`` and
``process_response`` through ``sync_to_async``, which in a request's
thread-sensitive context starts a fresh thread per request and joins it at
the end: about a sixth of the interceptor's time per push, measured with
py-spy. These two middlewares' hooks only read settings and set headers (no
I/O), so running them inline keeps Django's behaviour without the hop.
"""

from __future__ import annotations

from asgiref.sync import markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.middleware import common, security

from aa_site import log_format


class InlineHooksMixin:
    """Call ``process_request`` / ``process_response`` directly in async mode; only for hooks that do no I/O."""

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.process_request(request) if hasattr(self, "process_request") else None
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            response = self.process_response(request, response)
        return response


class SecurityMiddleware(InlineHooksMixin, security.SecurityMiddleware):
    """``django.middleware.security.SecurityMiddleware`` without the thread hop."""


class CommonMiddleware(InlineHooksMixin, common.CommonMiddleware):
    """``django.middleware.common.CommonMiddleware`` without the thread hop."""


class TraceMiddleware:
    """Tag every log line of a request with its trace (``X-Cloud-Trace-Context`` or ``traceparent``); async only."""

    sync_capable = False
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        trace = log_format.trace_id(request.headers.get("X-Cloud-Trace-Context"), request.headers.get("traceparent"))
        if trace is None:
            return await self.get_response(request)
        token = log_format.current_trace.set(log_format.trace_resource(settings.GCP_PROJECT_ID, trace))
        try:
            return await self.get_response(request)
        finally:
            log_format.current_trace.reset(token)


class TraceASGIMiddleware:
    """The same for an ASGI application: ``interceptor.fast_push`` answers pushes before Django's
    middleware runs, so the trace is set around the whole HTTP application instead."""

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send) -> None:
        headers = dict(scope.get("headers") or ())
        trace = log_format.trace_id(
            (headers.get(b"x-cloud-trace-context") or b"").decode("latin-1") or None,
            (headers.get(b"traceparent") or b"").decode("latin-1") or None,
        )
        if trace is None:
            await self.application(scope, receive, send)
            return
        token = log_format.current_trace.set(log_format.trace_resource(settings.GCP_PROJECT_ID, trace))
        try:
            await self.application(scope, receive, send)
        finally:
            log_format.current_trace.reset(token)
