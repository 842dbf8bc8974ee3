"""``common.google_certs.freshness_seconds``: how long a copy of Google's certificates may be kept.

Pure header arithmetic, no server; fetching and caching are tested through the
push endpoints in ``test_push_auth.py``.
"""

from __future__ import annotations

import pytest

from common.google_certs import DEFAULT_MAX_AGE_SECONDS, MAX_DELTA_SECONDS, freshness_seconds

GOOGLE_CACHE_CONTROL = "public, max-age=21600, must-revalidate, no-transform"


def test_max_age_is_the_lifetime() -> None:
    """Google's own header: fresh for its max-age."""
    assert freshness_seconds(GOOGLE_CACHE_CONTROL, None) == 21600


def test_age_is_taken_off_max_age_but_never_below_zero() -> None:
    """A copy that sat in a cache on the way has that much less left, and none once it is older than max-age."""
    assert freshness_seconds(GOOGLE_CACHE_CONTROL, "600") == 21000
    assert freshness_seconds(GOOGLE_CACHE_CONTROL, "30000") == 0


@pytest.mark.parametrize("cache_control", [None, "", "no-transform", "max-age=soon"])
def test_without_a_usable_max_age_the_default_applies(cache_control: str | None) -> None:
    """No max-age (a proxy stripped it): keep the copy for the default rather than fetch per push."""
    assert freshness_seconds(cache_control, None) == DEFAULT_MAX_AGE_SECONDS


@pytest.mark.parametrize("age", ["", "soon", "-5", "\u00b2", "1\u00b2"], ids=["empty", "word", "negative", "²", "1²"])
def test_an_age_that_is_not_a_number_is_ignored(age: str) -> None:
    """An unusable Age, superscript digits included (``isdigit()`` yet not ``int()``-able), counts as 0."""
    assert freshness_seconds("max-age=60", age) == 60


def test_numbers_beyond_any_sensible_size_are_capped_not_fatal() -> None:
    """Thousands of digits (beyond Python's int conversion limit) count as 2**31 seconds, as RFC 9111 says."""
    huge = "9" * 5000
    assert freshness_seconds(f"max-age={huge}", None) == MAX_DELTA_SECONDS
    assert freshness_seconds("max-age=60", huge) == 0
