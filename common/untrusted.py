"""Decoding text and JSON that nobody vouches for (push bodies, frames, request bodies, upstream answers).

Two surprises of the standard library, handled here once:

- ``json.loads`` raises ``RecursionError``, not ``ValueError``, for deeply
  nested arrays or objects (a few kilobytes of ``[`` suffice), and
  ``ValueError`` for integers longer than Python's ``int_max_str_digits``
  (valid JSON, yet refused).
- ``json.loads`` accepts ``NaN``, ``Infinity`` and ``-Infinity``, which are
  not JSON (RFC 8259): echoed back, they make frames that strict parsers
  (browsers' ``JSON.parse``) refuse; a number too large for a float
  (``1e400``) becomes ``inf`` the same way. Both are refused here.
- JSON may carry a lone surrogate (``"\\ud800"``), which decodes into a
  ``str`` that UTF-8 cannot encode: hashing it, sending it on a WebSocket or
  putting it into Redis then raises far from where it came in.
"""

from __future__ import annotations

import json
import math
from typing import Any

# What json.loads raises for input it refuses: JSONDecodeError, UnicodeDecodeError and overlong
# integers are ValueErrors; deep nesting is a RecursionError.
JSON_ERRORS = (ValueError, RecursionError)


class NotJsonObject(ValueError):
    """The input is not a JSON object: JSON of another type, or (``NotJson``) not JSON at all."""


class NotJson(NotJsonObject):
    """The input is not JSON that ``json.loads`` accepts."""


def _refuse_constant(name: str) -> Any:
    # Called by json.loads for NaN, Infinity and -Infinity only; a ValueError is what it raises for bad JSON.
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    # Called for every number with a fraction or exponent; 1e400 would otherwise be inf.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} does not fit a float")
    return value


# Made once: json.loads with these options builds a decoder and its scanner on every call (two per push).
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)


def json_value(data: bytes | str) -> Any:
    """``data`` decoded as JSON; ``NotJson`` when it is not (``NaN`` and ``Infinity`` included)."""
    try:
        # What json.loads does before decoding: bytes in the JSON encoding they are in, a UTF-8 BOM refused.
        text = data if isinstance(data, str) else data.decode(json.detect_encoding(data), "surrogatepass")
        if text.startswith("\ufeff"):
            raise ValueError("Unexpected UTF-8 BOM")
        return _DECODER.decode(text)
    except JSON_ERRORS:
        raise NotJson("not valid JSON") from None


def json_object(data: bytes | str) -> dict[str, Any]:
    """``data`` decoded as a JSON object; ``NotJson`` or ``NotJsonObject`` for anything else."""
    value = json_value(data)
    if not isinstance(value, dict):
        raise NotJsonObject("JSON that is not an object")
    return value


def is_utf8_text(*texts: str | None) -> bool:
    """Whether every text (``None`` aside) can be encoded as UTF-8, that is, holds no lone surrogate."""
    try:
        for text in texts:
            if text is not None:
                text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
