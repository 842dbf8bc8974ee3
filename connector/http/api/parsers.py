"""Request-body parsers of the connector's DRF views, each with a documented size limit (413 beyond it).

The contract's clients send JSON bodies with any ``Content-Type`` or none, so
the parsers are chosen by the view (``negotiation.FixedNegotiation``), never
by the header. The body is read from the request stream, at most one byte
past the limit, instead of through Django's ``request.body``, whose
``DATA_UPLOAD_MAX_MEMORY_SIZE`` (2.5 MB) answered an HTML 400 and logged an
ERROR traceback.
"""

from __future__ import annotations

from typing import IO, Any

from django.conf import settings
from rest_framework import exceptions
from rest_framework.parsers import BaseParser

from common import untrusted
from connector.http.api.exceptions import RequestTooLarge

NOT_AN_OBJECT_MESSAGE = "The request body must be a JSON object (or empty)."


class NotJsonObject(exceptions.ParseError):
    """A body that is not blank and not a JSON object."""

    default_detail = NOT_AN_OBJECT_MESSAGE


def read_limited(stream: IO[bytes] | None, limit: int) -> bytes:
    """The whole body from ``stream``; ``RequestTooLarge`` when it is longer than ``limit`` bytes."""
    body = b"" if stream is None else stream.read(limit + 1)
    if len(body) > limit:
        raise RequestTooLarge(f"The request body is larger than {limit} bytes.")
    return body


class JsonObjectParser(BaseParser):
    """A JSON object, ``{}`` for a blank body; at most ``API_MAX_BODY_BYTES``."""

    media_type = "*/*"

    def parse(self, stream: IO[bytes], media_type: str | None = None, parser_context: Any = None) -> dict[str, Any]:
        """The body as a dict; ``NotJsonObject`` (400) or ``RequestTooLarge`` (413)."""
        body = read_limited(stream, settings.API_MAX_BODY_BYTES)
        if not body.strip():
            return {}
        try:
            return untrusted.json_object(body)
        except untrusted.NotJsonObject:
            raise NotJsonObject() from None


class RawBodyParser(BaseParser):
    """The body's bytes, unparsed, at most the setting ``limit_setting`` names (for bodies relayed as they came)."""

    media_type = "*/*"
    limit_setting = "API_MAX_BODY_BYTES"

    def parse(self, stream: IO[bytes], media_type: str | None = None, parser_context: Any = None) -> bytes:
        """The body; ``RequestTooLarge`` (413) past the limit."""
        return read_limited(stream, getattr(settings, self.limit_setting))
