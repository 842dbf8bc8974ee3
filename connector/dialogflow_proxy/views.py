"""The proxy endpoint: ``/<v>/projects/<p>/locations/<l>/...`` forwarded to Dialogflow.

Order of judgement: the desktop JWT (401), the route table (404/405), the
project allow-list (403), the body size (413), a header to forward that is
not ASCII (400), the service's Google credentials (503), then Dialogflow
itself: its answer, errors included, goes back as it came (status, body
bytes, content type and encoding); a timeout is 504 and an unreachable
Dialogflow 502. Every answer of our own is JSON ``{"message": ...}``.

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

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from common.responses import message_response
from connector.dialogflow_proxy import client, credentials, routes
from connector.http_auth import jwt_required

logger = logging.getLogger(__name__)

FORWARDED_REQUEST_HEADERS = ("content-type", "accept", "accept-language")
RETURNED_RESPONSE_HEADERS = ("content-encoding", "cache-control", "content-language", "retry-after", "vary")
# What Dialogflow's REST API reads; sent when a desktop posts a body without saying.
DEFAULT_CONTENT_TYPE = "application/json"


@jwt_required
async def proxy(request: HttpRequest) -> HttpResponse:
    """Forward one call of the contract's route table to Dialogflow and return its answer unchanged."""
    method = request.method or "GET"
    match = routes.match(method, request.path)
    if isinstance(match, routes.NotFound):
        return message_response(404, "Not found: this Dialogflow call is not exposed by the proxy.")
    if isinstance(match, routes.MethodNotAllowed):
        response = message_response(405, f"Method {method} is not allowed here.")
        response["Allow"] = ", ".join(match.allowed)
        return response
    if match.project not in allowed_projects():
        return message_response(403, f"Project {match.project} is not served by this backend.")
    limit = settings.DIALOGFLOW_MAX_REQUEST_BYTES
    # read(), not .body: Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) would refuse
    # audio analyzeContent calls with a 400; this proxy has its own limit.
    body = request.read(limit + 1)
    if len(body) > limit:
        return message_response(413, f"The request body is larger than {limit} bytes.")
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


def allowed_projects() -> frozenset[str]:
    """``DIALOGFLOW_ALLOWED_PROJECTS``, or ``GCP_PROJECT_ID`` alone when it is empty."""
    return frozenset(settings.DIALOGFLOW_ALLOWED_PROJECTS or [settings.GCP_PROJECT_ID])


def _forwarded_headers(request: HttpRequest, body: bytes) -> dict[str, str]:
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
