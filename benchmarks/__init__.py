"""Benchmarks: scripts that print figures, run by hand (``python -m benchmarks.<name>``), never by pytest.

See ``benchmarks/README.md`` for what each one measures and the figures measured so far.
"""

from __future__ import annotations

import logging
import math
import os


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (``fraction`` in 0..1); NaN when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


def mint_tokens(users: list[str]) -> list[str]:
    """Desktop JWTs for ``users``, signed in-process with the secret and project of ``testing.processes``' servers."""
    from testing import processes

    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    # tests.settings only sets these when absent; the servers use exactly these values.
    os.environ["JWT_SECRET_KEY"] = processes.TEST_JWT_SECRET
    os.environ["GCP_PROJECT_ID"] = processes.TEST_PROJECT
    import django

    django.setup()
    # The test settings log INFO to the console; httpx would print a line per request.
    logging.getLogger().setLevel(logging.WARNING)
    from connector import tokens

    return [tokens.issue_token(user=user) for user in users]
