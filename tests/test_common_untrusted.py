"""``common.untrusted``: what every reader of untrusted JSON refuses, whichever endpoint it serves."""

from __future__ import annotations

import pytest

from common import untrusted


@pytest.mark.parametrize(
    "text",
    ["NaN", "Infinity", "-Infinity", '{"id": NaN}', "[1, [Infinity]]", "1e400", '{"x": -2e308}'],
)
def test_non_finite_numbers_are_not_json(text: str) -> None:
    """Python's json reads these as nan/inf; they are not JSON (RFC 8259) and could not be sent back as JSON."""
    with pytest.raises(untrusted.NotJson):
        untrusted.json_value(text)


@pytest.mark.parametrize(("text", "value"), [("1.5", 1.5), ("-0.0", -0.0), ("1e308", 1e308), ('"NaN"', "NaN"), ("12", 12)])
def test_finite_numbers_and_strings_still_decode(text: str, value: object) -> None:
    assert untrusted.json_value(text) == value


def test_a_push_envelope_with_nan_is_refused_as_not_json() -> None:
    with pytest.raises(untrusted.NotJson):
        untrusted.json_object(b'{"message": {"data": "e30=", "messageId": NaN}}')
