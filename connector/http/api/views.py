"""``AsyncAPIView``: adrf's async ``APIView`` with every policy check awaited on the event loop.

adrf 0.1.14 runs DRF's ``initial()`` (authentication, permissions, throttles)
through ``sync_to_async``, which under ASGI starts a thread per request, and
from that thread runs async throttles and permissions through
``async_to_sync``. Here the same steps run in DRF's order on the event loop,
awaiting whichever of them are coroutines, so a slow Redis (the throttles) or
a slow identity provider never holds a thread.

Other differences from DRF's defaults, each for the contract's sake:

- the method is checked first: an unknown method is 405 before it is
  authenticated or counted against a rate limit, as before DRF;
- no ``Allow`` or ``Vary`` on every answer (only on a 405): the proxy must
  return Dialogflow's headers and no others;
- parser and renderer are the view's first, whatever ``Accept`` and
  ``Content-Type`` say (``negotiation.FixedNegotiation``);
- the body is read from the stream even without ``Content-Length``.

Handlers return Django's own response classes (``HttpResponse``,
``JsonResponse``), which DRF passes through untouched; DRF's ``Response``
would re-render them.
"""

from __future__ import annotations

import inspect
import io
from typing import Any

from adrf.requests import AsyncRequest
from adrf.views import APIView
from django.http import HttpRequest, HttpResponseBase
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer

from connector import tokens
from connector.http.api.exceptions import RateLimited
from connector.http.api.negotiation import FixedNegotiation


class StreamRequest(AsyncRequest):
    """adrf's request, reading the body stream even when ``Content-Length`` is absent (a chunked upload)."""

    def _load_stream(self) -> None:
        request = self._request
        self._stream = io.BytesIO(request.body) if request._read_started else request  # type: ignore[attr-defined]


class AsyncAPIView(APIView):
    """Base of the connector's endpoints: declare ``http_method_names`` and the policy classes on each view."""

    renderer_classes = [JSONRenderer]
    content_negotiation_class = FixedNegotiation

    @property
    def default_response_headers(self) -> dict[str, str]:
        """None: DRF would add ``Allow`` (and ``Vary``) to every answer."""
        return {}

    def initialize_request(self, request: HttpRequest, *args: Any, **kwargs: Any) -> StreamRequest:
        """The DRF request around Django's, with this view's parsers and authenticators."""
        return StreamRequest(
            request,
            parsers=self.get_parsers(),
            authenticators=self.get_authenticators(),
            negotiator=self.get_content_negotiator(),
            parser_context=self.get_parser_context(request),
        )

    async def async_dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:  # type: ignore[override]
        """The method (405), then ``initial``'s policies, then the handler; any exception through the handler."""
        self.args, self.kwargs = args, kwargs
        drf_request = self.initialize_request(request, *args, **kwargs)
        self.request = drf_request
        self.headers = self.default_response_headers
        try:
            method = (drf_request.method or "").lower()
            if method not in self.http_method_names or not hasattr(self, method):
                raise exceptions.MethodNotAllowed(drf_request.method)
            handler = getattr(self, method)
            await self.async_initial(drf_request, *args, **kwargs)
            response = await handler(drf_request, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - DRF's contract: every exception goes to handle_exception
            response = self.handle_exception(exc)
        self.response = self.finalize_response(drf_request, response, *args, **kwargs)
        return self.response

    async def async_initial(self, request: StreamRequest, *args: Any, **kwargs: Any) -> None:
        """DRF's ``initial()`` on the event loop: negotiation, version, authentication, permissions, throttles."""
        self.format_kwarg = self.get_format_suffix(**kwargs)
        request.accepted_renderer, request.accepted_media_type = self.perform_content_negotiation(request)
        request.version, request.versioning_scheme = self.determine_version(request, *args, **kwargs)
        await self.async_authenticate(request)
        await self.async_check_permissions(request)
        await self.async_check_throttles(request)

    async def async_authenticate(self, request: StreamRequest) -> None:
        """The first authenticator that recognises the request sets ``user`` and ``auth``; a refusal raises."""
        for authenticator in request.authenticators:
            try:
                result = authenticator.authenticate(request)
                if inspect.isawaitable(result):
                    result = await result
            except exceptions.APIException:
                request._not_authenticated()
                raise
            if result is not None:
                request._authenticator = authenticator
                request.user, request.auth = result
                return
        request._not_authenticated()

    async def async_check_permissions(self, request: StreamRequest) -> None:
        """Every permission class in order; the first refusal raises (401 when unauthenticated, else 403)."""
        for permission in self.get_permissions():
            granted = permission.has_permission(request, self)
            if inspect.isawaitable(granted):
                granted = await granted
            if not granted:
                self.permission_denied(
                    request, message=getattr(permission, "message", None), code=getattr(permission, "code", None)
                )

    def permission_denied(self, request: Any, message: str | None = None, code: str | None = None) -> None:
        """DRF's, with the contract's message for a request that carried no token."""
        if request.authenticators and not request.successful_authenticator:
            raise exceptions.NotAuthenticated(tokens.MISSING_TOKEN_MESSAGE)
        raise exceptions.PermissionDenied(detail=message, code=code)

    async def async_check_throttles(self, request: StreamRequest) -> None:
        """Every throttle counts the request; any refusal is a 429 with the longest wait and its message."""
        refusals = []
        for throttle in self.get_throttles():
            allowed = throttle.allow_request(request, self)
            if inspect.isawaitable(allowed):
                allowed = await allowed
            if not allowed:
                refusals.append(throttle)
        if refusals:
            longest = max(refusals, key=lambda throttle: throttle.wait() or 0)
            message = longest.message() if hasattr(longest, "message") else "Too many requests."
            raise RateLimited(longest.wait() or 1, message)
