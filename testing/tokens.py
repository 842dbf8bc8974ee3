"""Desktop tokens: ones that expire soon (signed with the configured secret, for tests), and the ones the server
processes of ``testing.processes`` accept (minted by a benchmark, which Django is set up in for it)."""

from __future__ import annotations

import logging
import os
from datetime import timedelta

from testing import processes

# connector.tokens reads Django's settings when imported: the benchmarks import this module before they set
# Django up (mint_tokens does), so it is imported where it is used.


def short_lived_token(seconds: float, *, user: str = "agent") -> str:
    """A token signed with the configured secret that expires ``seconds`` from now."""
    from connector import tokens

    token = tokens.AgentAssistToken()
    token.set_exp(lifetime=timedelta(seconds=seconds))
    token[tokens.PROJECT_CLAIM] = tokens.settings.GCP_PROJECT_ID
    token[tokens.USER_CLAIM] = user
    return str(token)


def mint_tokens(users: list[str]) -> list[str]:
    """Desktop JWTs for ``users``, signed in-process with the secret and project of ``testing.processes``' servers."""
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
