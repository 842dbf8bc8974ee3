"""Content negotiation that the contract's clients never lose: the view's first parser and renderer, always.

DRF's default answers 406 to an ``Accept`` it cannot serve and 415 to a
``Content-Type`` no parser claims; the sample answered JSON whatever the
desktop sent, and the Dialogflow proxy must leave both headers to Dialogflow.
"""

from __future__ import annotations

from typing import Any

from rest_framework.negotiation import BaseContentNegotiation


class FixedNegotiation(BaseContentNegotiation):
    """The first of the view's parsers and renderers, whatever the request's headers say."""

    def select_parser(self, request: Any, parsers: list[Any]) -> Any:
        """The view's first parser."""
        return parsers[0] if parsers else None

    def select_renderer(self, request: Any, renderers: list[Any], format_suffix: str | None = None) -> tuple[Any, str]:
        """The view's first renderer and its media type."""
        return renderers[0], renderers[0].media_type
