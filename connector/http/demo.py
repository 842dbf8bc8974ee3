"""``GET /``: a self-contained demo page for the connector (register, connect over ``/ws/``, join, watch events).

The page lives in ``connector/http/demo/``: ``index.html`` with ``demo.css`` and
``demo.js`` inlined, so it needs nothing but this origin (no CDN, works
offline). In development mode with ``SERVICE_ROLE=all`` it also carries
``push-sample.html`` and ``push-sample.js``, a button that POSTs a sample
Pub/Sub push to ``/new-message-event`` on the same origin; otherwise neither
the button nor its script is in the page at all.

Each response gets a fresh CSP nonce: the policy allows only the page's own
inline script and style blocks that carry it, and network access to this
origin only. The files are read once per process, on the first request.
"""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

PAGE_DIRECTORY = Path(__file__).resolve().parent / "demo"
NONCE_MARK = "__CSP_NONCE__"
PUSH_SAMPLE_MARK = "<!--PUSH_SAMPLE-->"
PUSH_SAMPLE_SCRIPT_MARK = "<!--PUSH_SAMPLE_SCRIPT-->"
CSS_MARK = "/*DEMO_CSS*/"
JS_MARK = "/*DEMO_JS*/"


@dataclass(frozen=True)
class PageParts:
    """The page with its CSS and JS inlined, and the development-only push controls."""

    page: str
    push_sample_markup: str
    push_sample_script: str


@functools.cache
def page_parts() -> PageParts:
    """Read and assemble the page files (once per process; on first use, never at import)."""

    def read(name: str) -> str:
        return (PAGE_DIRECTORY / name).read_text(encoding="utf-8")

    page = read("index.html").replace(CSS_MARK, read("demo.css")).replace(JS_MARK, read("demo.js"))
    return PageParts(
        page=page,
        push_sample_markup=read("push-sample.html"),
        push_sample_script=read("push-sample.js"),
    )


def push_sample_enabled() -> bool:
    """Whether the page offers the sample push: development mode, and this process also runs the interceptor."""
    return bool(settings.DEVELOPMENT_MODE) and settings.SERVICE_ROLE == "all"


def content_security_policy(nonce: str) -> str:
    """A policy that runs only the page's own nonce-tagged blocks and talks only to this origin.

    ``connect-src 'self'`` covers fetch() to this origin and, in CSP level 3
    browsers, ``ws:``/``wss:`` to the same host and port.
    """
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src 'nonce-{nonce}'",
            f"style-src 'nonce-{nonce}'",
            "connect-src 'self'",
            "img-src data:",  # the empty favicon only, so the browser does not request /favicon.ico
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


@require_GET
async def demo_page(request: HttpRequest) -> HttpResponse:
    """The demo page, with a per-response CSP nonce; push controls only in development mode."""
    parts = page_parts()
    # token_urlsafe: letters, digits, '-' and '_' only, safe both in the header and in an HTML attribute.
    nonce = secrets.token_urlsafe(18)
    enabled = push_sample_enabled()
    script = f'<script nonce="{NONCE_MARK}">\n{parts.push_sample_script}</script>' if enabled else ""
    html = (
        parts.page.replace(PUSH_SAMPLE_MARK, parts.push_sample_markup if enabled else "")
        .replace(PUSH_SAMPLE_SCRIPT_MARK, script)
        .replace(NONCE_MARK, nonce)
    )
    response = HttpResponse(html, content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = content_security_policy(nonce)
    # A nonce must never be served twice, so no cache may keep the page.
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response
