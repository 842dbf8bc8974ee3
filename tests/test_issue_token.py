"""``manage.py issue_token``: a token the connector accepts, signed with the secret start-up would load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jwt
import pytest
from django.core.management import CommandError, call_command

from connector import tokens
from testing.commands import assert_clean_failure, manage
from testing.processes import TEST_JWT_SECRET, TEST_PROJECT


def issue(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[str, str]:
    """Run the command in-process; (token from stdout, stderr)."""
    call_command("issue_token", *arguments)
    output = capsys.readouterr()
    return output.out.strip(), output.err


def test_token_validates_for_the_user_and_project(production_settings: Any, capsys: pytest.CaptureFixture[str]):
    """The printed token is accepted by connector.tokens and carries the user; stderr never holds the secret."""
    production_settings.JWT_SECRET_KEY = TEST_JWT_SECRET
    token, err = issue(capsys, "--user", "smoke@example.com")
    identity = tokens.validate_token(token)
    assert (identity.user, identity.project) == ("smoke@example.com", TEST_PROJECT)
    assert "JWT_SECRET_KEY" in err and TEST_JWT_SECRET not in err


def test_minutes_sets_the_lifetime(production_settings: Any, capsys: pytest.CaptureFixture[str]):
    """--minutes 5 gives exp - iat == 300 s, whatever JWT_LIFETIME_MINUTES says."""
    production_settings.JWT_SECRET_KEY = TEST_JWT_SECRET
    production_settings.JWT_LIFETIME_MINUTES = 60
    token, _ = issue(capsys, "--user", "a", "--minutes", "5")
    claims = jwt.decode(token, TEST_JWT_SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 300
    token, _ = issue(capsys, "--user", "a")
    claims = jwt.decode(token, TEST_JWT_SECRET, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 3600


def test_secret_from_the_mounted_file(production_settings: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    """With only JWT_SECRET_KEY_PATH, that file's secret signs (the way start-up loads it)."""
    path = tmp_path / "jwt_secret_key"
    path.write_text("file-secret-xPmGDafS19CTBWC-9puJy_NOSCI-RXUfPPAXTO9CotWgC00K\n")
    production_settings.JWT_SECRET_KEY = ""
    production_settings.JWT_SECRET_NAME = ""
    production_settings.JWT_SECRET_KEY_PATH = str(path)
    token, _ = issue(capsys, "--user", "a")
    claims = jwt.decode(token, "file-secret-xPmGDafS19CTBWC-9puJy_NOSCI-RXUfPPAXTO9CotWgC00K", algorithms=["HS256"])
    assert claims["gcp_agent_assist_user"] == "a"


@pytest.mark.parametrize("arguments, reason", [
    (["--user", "  "], "--user is empty"),
    (["--user", "a", "--minutes", "0"], "--minutes must be between"),
    (["--user", "a", "--minutes", "1441"], "--minutes must be between"),
])
def test_bad_arguments_are_refused(production_settings: Any, arguments: list[str], reason: str):
    production_settings.JWT_SECRET_KEY = TEST_JWT_SECRET
    with pytest.raises(CommandError, match=reason):
        call_command("issue_token", *arguments)


def test_no_secret_in_production_is_a_command_error(production_settings: Any, tmp_path: Path):
    """Production mode without any secret source: refused with start-up's reason, no development fallback."""
    production_settings.JWT_SECRET_KEY = ""
    production_settings.JWT_SECRET_NAME = ""
    production_settings.JWT_SECRET_KEY_PATH = str(tmp_path / "absent")
    with pytest.raises(CommandError, match="no signing secret"):
        call_command("issue_token", "--user", "a")


def test_as_a_process_only_the_token_is_on_stdout_and_failures_are_clean(tmp_path: Path):
    """manage.py issue_token: stdout is exactly the token; a short secret exits non-zero without a traceback."""
    environment = {"GCP_PROJECT_ID": TEST_PROJECT, "JWT_SECRET_KEY": TEST_JWT_SECRET}
    result = manage("issue_token", "--user", "proc", env=environment)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert "\n" not in token
    assert jwt.decode(token, TEST_JWT_SECRET, algorithms=["HS256"])["gcp_agent_assist_user"] == "proc"
    assert TEST_JWT_SECRET not in result.stderr
    short = manage("issue_token", "--user", "proc", env={**environment, "JWT_SECRET_KEY": "too-short"})
    assert_clean_failure(short, mentions="shorter than 32")
    assert "too-short" not in short.stderr
