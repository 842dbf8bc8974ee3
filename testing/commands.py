"""Running ``manage.py`` commands as an operator does: in a separate process, output and exit code captured."""

from __future__ import annotations

import os
import subprocess
import sys

from testing.processes import REPOSITORY

COMMAND_TIMEOUT = 60.0
# What tests/settings.py and pytest put in the environment: a command starts from production defaults.
TEST_VARIABLES = ("DJANGO_", "PYTEST_", "AA_", "REDIS", "JWT_", "AUTH_OPTION", "DEVELOPMENT_MODE", "GCP_",
                  "REGISTER_RATE_LIMIT", "SECRET_MANAGER_", "SERVICE_")


def manage(*arguments: str, env: dict[str, str] | None = None, stdin: str | None = None,
           timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """``python manage.py <arguments>`` from the repository with the production settings module.

    ``env`` is added to a copy of this process's environment, minus the test settings' variables.
    """
    return subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=REPOSITORY, env=operator_environment(env), input=stdin, capture_output=True, text=True, timeout=timeout,
    )


def operator_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment minus the test settings' variables, with the production settings and ``env``."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith(TEST_VARIABLES)}
    environment.update(DJANGO_SETTINGS_MODULE="aa_site.settings", PYTHONPATH=str(REPOSITORY))
    environment.update(env or {})
    return environment


def assert_clean_failure(result: subprocess.CompletedProcess[str], *, mentions: str) -> None:
    """A refusal as operators should see it: non-zero exit, the reason on stderr, no traceback."""
    assert result.returncode != 0, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr
    assert mentions in result.stderr, result.stderr
