"""``common.bearer``: the token in an ``Authorization`` value, bare or ``Bearer``, as each caller requires."""

from __future__ import annotations

import pytest

from common.bearer import bearer_token


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("abc", "abc"), ("Bearer abc", "abc"), ("bearer   abc ", "abc"), ("Basic abc", "Basic abc"), ("", "")],
)
def test_strip_bearer(raw: str, expected: str) -> None:
    """Only a ``Bearer`` scheme is removed; other schemes are left for validation to refuse."""
    assert bearer_token(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("Bearer abc", "abc"), ("BEARER  abc ", "abc"), ("abc", ""), ("Basic abc", ""), ("Bearer", ""),
     ("Bearer   ", ""), ("", ""), (None, "")],
)
def test_scheme_required_gives_no_token_without_bearer(raw: str | None, expected: str) -> None:
    """With ``scheme_required`` a bare value or another scheme carries no token."""
    assert bearer_token(raw, scheme_required=True) == expected
