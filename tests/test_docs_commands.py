"""The shell blocks README.md and every page of the documentation site (docs/) mark runnable run as printed.

A block is runnable when the line before its ```sh fence is ``<!-- runnable -->``
(invisible when the Markdown is rendered). Each command of such a block runs
in order, in one environment without any of our settings (as on a fresh
clone), with its SQLite file in a temporary directory; every one must exit 0
within its timeout and print no traceback, from the repository root. Only local
commands are marked: nothing here reaches a cloud or serves forever.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest

from testing import processes

MARKER = "<!-- runnable -->"
BLOCK = re.compile(re.escape(MARKER) + r"\n```sh\n(.*?)^```", re.S | re.M)
# Every page of the site, however deep (docs/hooks/ holds the site's build code, no page).
DOCUMENTS = [processes.REPOSITORY / "README.md",
             *sorted(path for path in (processes.REPOSITORY / "docs").rglob("*.md") if "hooks" not in path.parts)]
TIMEOUT = 180  # the first command on a fresh clone makes .venv and installs the requirements
# Settings a developer's shell would not have on a fresh clone; the test process has several.
UNSET = ("DJANGO_", "REDIS", "JWT_", "AUTH_", "APP_AUTH_", "GCP_", "AA_TEST_", "DEVELOPMENT_MODE", "DATABASE_URL",
         "SQLITE_PATH", "LOG_FORMAT", "CORS_", "SECRET_MANAGER_", "SERVICE_")


def commands(block: str) -> list[str]:
    """The block's commands: continuation lines joined, blank and comment-only lines left out."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def runnable_blocks() -> list[pytest.param]:
    blocks = []
    for document in DOCUMENTS:
        text = document.read_text()
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 2  # the fence's line, 1-based
            where = f"{document.relative_to(processes.REPOSITORY)}:{line}"
            blocks.append(pytest.param(commands(match.group(1)), id=where))
    return blocks


def fresh_environment(tmp_path: Path) -> dict[str, str]:
    environment = {name: value for name, value in os.environ.items() if not name.startswith(UNSET + ("VIRTUAL_ENV",))}
    # Nor an activated virtualenv: a bare `python manage.py` must fail here as it does there.
    environment["PATH"] = os.pathsep.join(entry for entry in environment.get("PATH", "").split(os.pathsep)
                                          if not Path(entry, "activate").exists())
    environment["SQLITE_PATH"] = str(tmp_path / "admin.sqlite3")
    return environment


def run(command: str, environment: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=processes.REPOSITORY, env=environment, capture_output=True,
                          text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)


BLOCKS = runnable_blocks()


def test_getting_started_marks_the_newcomers_commands_runnable() -> None:
    """The first local commands after run-local.sh (docs/getting-started.md) are among the blocks this module runs."""
    page = [command for block in BLOCKS if block.id.startswith("docs/getting-started.md:") for command in block.values[0]]
    for expected in ("./scripts/manage check", "./scripts/manage help", "./scripts/manage deploy_plan --help",
                     "./scripts/manage createsuperuser"):
        assert any(expected in command for command in page), expected


@pytest.mark.parametrize("block", BLOCKS)
def test_runnable_block_runs_as_printed(block: list[str], tmp_path: Path) -> None:
    environment = fresh_environment(tmp_path)
    for command in block:
        finished = run(command, environment)
        output = finished.stdout + finished.stderr
        assert finished.returncode == 0, f"{command}\nexit {finished.returncode}\n{output}"
        assert "Traceback" not in output, f"{command}\n{output}"


def test_manage_creates_a_superuser_locally(tmp_path: Path) -> None:
    """The admin block's createsuperuser, through scripts/manage, makes a staff superuser in the local database."""
    (block,) = [block.values[0] for block in BLOCKS if any("createsuperuser" in command for command in block.values[0])]
    environment = fresh_environment(tmp_path)
    for command in block:
        finished = run(command, environment)
        assert finished.returncode == 0, f"{command}\n{finished.stdout}{finished.stderr}"
    with sqlite3.connect(tmp_path / "admin.sqlite3") as database:
        users = database.execute("SELECT username, is_superuser, is_staff FROM auth_user").fetchall()
    assert users == [("admin", 1, 1)]


def test_manage_check_warns_of_the_development_secret_without_asking_for_development_mode(tmp_path: Path) -> None:
    """scripts/manage applies run-local.sh's settings: development mode, so W001 (not E005), and W001 does not tell
    the developer to set DEVELOPMENT_MODE=true, which is set."""
    finished = run("./scripts/manage check", fresh_environment(tmp_path))
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, output
    assert "aa_site.W001" in output and "aa_site.E005" not in output
    assert "run with DEVELOPMENT_MODE=true" not in output


def test_without_the_wrapper_the_development_defaults_are_not_applied(tmp_path: Path) -> None:
    """The same check through .venv/bin/python manage.py, as operators run it, gets no development mode: E005."""
    finished = run(".venv/bin/python manage.py check", fresh_environment(tmp_path))
    output = finished.stdout + finished.stderr
    assert finished.returncode != 0 and "aa_site.E005" in output and "run with DEVELOPMENT_MODE=true" in output
