"""The admin's CSS, scripts and images at ``STATIC_URL``, found in the installed apps by staticfiles' finders.

A handful of small files for a few operators: each answer is the whole file,
read off the event loop, with a validator and a day's caching. No
``collectstatic`` step, so the image needs no build-time copy.
"""

from __future__ import annotations

import hashlib
import mimetypes
import posixpath
from pathlib import Path

from asgiref.sync import sync_to_async
from django.contrib.staticfiles import finders
from django.http import HttpRequest, HttpResponse, HttpResponseNotModified
from django.views.decorators.http import require_safe

from aa_site.errors import not_found

MAX_AGE_SECONDS = 86400


@require_safe
async def serve(request: HttpRequest, path: str) -> HttpResponse:
    """The file ``path`` names, 304 when the client holds it already, 404 when there is none."""
    normalised = posixpath.normpath(path).lstrip("/")
    if normalised.startswith("..") or "\\" in normalised:
        return not_found(request)
    content = await sync_to_async(_read, thread_sensitive=False)(normalised)
    if content is None:
        return not_found(request)
    etag = '"' + hashlib.sha256(content).hexdigest()[:32] + '"'
    if request.headers.get("If-None-Match") == etag:
        return HttpResponseNotModified(headers={"ETag": etag})
    content_type = mimetypes.guess_type(normalised)[0] or "application/octet-stream"
    return HttpResponse(content, content_type=content_type,
                        headers={"ETag": etag, "Cache-Control": f"public, max-age={MAX_AGE_SECONDS}"})


def _read(path: str) -> bytes | None:
    found = finders.find(path)
    if not found or not Path(found).is_file():
        return None
    return Path(found).read_bytes()
