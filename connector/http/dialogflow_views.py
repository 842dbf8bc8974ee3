"""The proxy endpoint: ``/<v>/projects/<p>/locations/<l>/...`` forwarded to Dialogflow (an async DRF view).

Order of judgement: the desktop JWT (401, ``DesktopJWTAuthentication``) or an
allow-listed service account's Google ID token (401/403/503,
``GoogleServiceAccountAuthentication``), the
route table (404/405), the project allow-list (403, ``ProjectAllowed``), the
body size (413, ``DialogflowBodyParser``), a header to forward that is not
ASCII (400), the service's Google credentials (503), then Dialogflow
itself: its answer, errors included, goes back as it came (status, body
bytes, content type and encoding) in a Django ``HttpResponse``, which DRF
does not re-render; a timeout is 504 and an unreachable Dialogflow 502.
Every answer of our own is JSON ``{"message": ...}``. No throttle: every
call needs a valid desktop token, and Dialogflow enforces the project's quota.

What crosses the proxy is an allow-list in both directions. Towards Dialogflow
only the headers that shape the call go (content type, accepted types,
languages and encodings) with the service's own ``Authorization``: never the
desktop's token, cookies, origin or hop-by-hop headers. Back to the desktop go
only the headers that describe the body or the retry (``Content-Type``,
``Content-Encoding``, ``Cache-Control``, ``Content-Language``, ``Retry-After``,
``Vary``): Google front-end headers such as ``Alt-Svc``, ``Set-Cookie`` or
``Access-Control-*`` would be wrong on our origin.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.http import HttpResponse
from rest_framework.permissions import IsAuthenticated

from common.responses import message_response
from connector.dialogflow_proxy import client, credentials, routes
from connector.dialogflow_proxy.permissions import ProjectAllowed
from connector.http.api.authentication import DesktopJWTAuthentication, GoogleServiceAccountAuthentication
from connector.http.api.parsers import RawBodyParser
from connector.http.api.views import AsyncAPIView

logger = logging.getLogger(__name__)

FORWARDED_REQUEST_HEADERS = ("content-type", "accept", "accept-language")
RETURNED_RESPONSE_HEADERS = ("content-encoding", "cache-control", "content-language", "retry-after", "vary")
# What Dialogflow's REST API reads; sent when a desktop posts a body without saying.
DEFAULT_CONTENT_TYPE = "application/json"


class DialogflowBodyParser(RawBodyParser):
    """The body as bytes, forwarded unchanged; at most ``DIALOGFLOW_MAX_REQUEST_BYTES`` (audio analyzeContent
    calls exceed Django's 2.5 MB default)."""

    limit_setting = "DIALOGFLOW_MAX_REQUEST_BYTES"


class DialogflowProxyView(AsyncAPIView):
    """Every method goes to ``forward``; the route table (``routes.match``) says which calls exist."""

    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options", "trace"]
    # A service account's Google ID token first (it passes on any other token), then the desktop JWT.
    authentication_classes = [GoogleServiceAccountAuthentication, DesktopJWTAuthentication]
    permission_classes = [IsAuthenticated, ProjectAllowed]
    throttle_classes: list[Any] = []
    parser_classes = [DialogflowBodyParser]

    def route(self, request: Any) -> routes.Match:
        """The route table's verdict on this request (computed once; the permission and the handler share it)."""
        if not hasattr(self, "_route"):
            self._route = routes.match(request.method or "GET", request.path)
        return self._route

    async def forward(self, request: Any, *args: Any, **kwargs: Any) -> HttpResponse:
        """Forward one call of the contract's route table to Dialogflow and return its answer unchanged."""
        method = request.method or "GET"
        match = self.route(request)
        if isinstance(match, routes.NotFound):
            return message_response(404, "Not found: this Dialogflow call is not exposed by the proxy.")
        if isinstance(match, routes.MethodNotAllowed):
            response = message_response(405, f"Method {method} is not allowed here.")
            response["Allow"] = ", ".join(match.allowed)
            return response
        body = request.data  # RequestTooLarge: 413
        forwarded = _forwarded_headers(request, body)
        # HTTP clients send header values as ASCII; httpx raises (a 500) on anything else.
        unsendable = [name for name, value in forwarded.items() if not value.isascii()]
        if unsendable:
            return message_response(400, f"Header {', '.join(unsendable)} is not ASCII and cannot be forwarded.")
        try:
            headers = await credentials.get_source().authorization_headers()
        except credentials.CredentialsUnavailable as error:
            return message_response(503, str(error))
        headers.update(forwarded)
        url = routes.upstream_url(match, request.META.get("QUERY_STRING", ""), settings.DIALOGFLOW_API_ROOT)
        try:
            upstream = await client.send(method, url, headers=headers, body=body)
        except client.UpstreamTimeout as error:
            logger.warning("Dialogflow timed out: %s %s (%s)", method, match.path, error)
            return message_response(504, "Dialogflow did not answer in time.")
        except client.UpstreamUnreachable as error:
            logger.warning("Dialogflow unreachable: %s %s (%s)", method, match.path, error)
            return message_response(502, "Dialogflow could not be reached.")
        if upstream.status >= 500:
            logger.warning("Dialogflow answered %s: %s %s", upstream.status, method, match.path)
        return _relay(upstream)

    get = post = put = patch = delete = head = options = trace = forward


def _forwarded_headers(request: Any, body: bytes) -> dict[str, str]:
    """The desktop's headers that go on to Dialogflow (names lower-cased), defaults filled in."""
    headers = {name: request.headers[name] for name in FORWARDED_REQUEST_HEADERS if name in request.headers}
    if body and "content-type" not in headers:
        headers["content-type"] = DEFAULT_CONTENT_TYPE
    # The body goes back undecoded, so ask only for encodings the desktop itself accepts
    # (httpx would otherwise offer its own, and the desktop could get gzip it never asked for).
    headers["accept-encoding"] = request.headers.get("Accept-Encoding") or "identity"
    return headers


def _relay(upstream: client.UpstreamResponse) -> HttpResponse:
    """Dialogflow's answer as our response: status and body unchanged, only the allowed headers."""
    response = HttpResponse(upstream.body, status=upstream.status)
    if "content-type" in upstream.headers:
        response["Content-Type"] = upstream.headers["content-type"]
    else:
        del response["Content-Type"]  # Django's text/html default would be a label Dialogflow never gave
    for name in RETURNED_RESPONSE_HEADERS:
        if name in upstream.headers:
            response[name] = upstream.headers[name]
    # Dialogflow's own errors are not ours: without this, Django would log a relayed
    # 500 as "Internal Server Error" at ERROR (django.utils.log.log_response honours the flag).
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


proxy = DialogflowProxyView.as_view()
