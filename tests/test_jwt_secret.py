"""``connector.jwt_secret``: where the signing secret comes from, and every unusable secret refused.

Each test points ``JWT_SECRET_KEY_FILE`` into its own ``tmp_path`` so the
host's ``/secret/jwt_secret_key`` (if any) never leaks in; changing settings
through the ``settings`` fixture also exercises the cache reset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connector import jwt_secret
from connector.jwt_secret import SecretUnavailable, describe_source, signing_secret

STRONG = "s" * jwt_secret.MINIMUM_LENGTH + "-strong-secret"
OTHER_STRONG = "o" * jwt_secret.MINIMUM_LENGTH + "-other-secret"


@pytest.fixture
def secret_file(settings: Any, tmp_path: Path) -> Path:
    """``JWT_SECRET_KEY_FILE`` pointed at a not-yet-existing file; ``JWT_SECRET_KEY`` and ``JWT_SECRET_NAME`` empty."""
    path = tmp_path / "jwt_secret_key"
    settings.JWT_SECRET_KEY = ""
    settings.JWT_SECRET_NAME = ""
    settings.JWT_SECRET_KEY_FILE = str(path)
    return path


def test_setting_wins_over_the_file(settings: Any, secret_file: Path) -> None:
    """``JWT_SECRET_KEY`` is used even when the file exists."""
    secret_file.write_text(OTHER_STRONG)
    settings.JWT_SECRET_KEY = STRONG
    assert signing_secret() == STRONG
    assert describe_source() == "JWT_SECRET_KEY"


def test_file_is_read_when_the_setting_is_empty(production_settings: Any, secret_file: Path) -> None:
    """The mounted secret file is used (surrounding whitespace, like a trailing newline, removed)."""
    secret_file.write_text(f"  {STRONG}\n")
    assert signing_secret() == STRONG
    assert str(secret_file) in describe_source()


def test_file_is_read_once(settings: Any, secret_file: Path) -> None:
    """The secret is read on first use and kept; a later change to the file needs a restart (or a settings change)."""
    secret_file.write_text(STRONG)
    assert signing_secret() == STRONG
    secret_file.write_text(OTHER_STRONG)
    assert signing_secret() == STRONG


def test_cache_resets_when_a_jwt_setting_changes(settings: Any, secret_file: Path) -> None:
    """Changing a JWT_* setting (setting_changed) makes the next call read the new source."""
    settings.JWT_SECRET_KEY = STRONG
    assert signing_secret() == STRONG
    settings.JWT_SECRET_KEY = OTHER_STRONG
    assert signing_secret() == OTHER_STRONG


def test_cache_resets_when_development_mode_changes(settings: Any, secret_file: Path) -> None:
    """Leaving development mode drops the cached development secret, so production refuses to sign."""
    settings.DEVELOPMENT_MODE = True
    assert describe_source() == jwt_secret.DEVELOPMENT_SOURCE
    settings.DEVELOPMENT_MODE = False
    with pytest.raises(SecretUnavailable):
        signing_secret()


def test_short_setting_refused_outside_development(production_settings: Any, secret_file: Path) -> None:
    """A secret shorter than ``MINIMUM_LENGTH`` is refused, and the error does not reveal it."""
    short = "x" * (jwt_secret.MINIMUM_LENGTH - 1)
    production_settings.JWT_SECRET_KEY = short
    with pytest.raises(SecretUnavailable, match="shorter") as caught:
        signing_secret()
    assert short not in str(caught.value)
    assert "JWT_SECRET_KEY" in str(caught.value)


def test_secret_of_minimum_length_is_accepted_outside_development(
    production_settings: Any, secret_file: Path
) -> None:
    """Exactly ``MINIMUM_LENGTH`` characters is enough."""
    production_settings.JWT_SECRET_KEY = "m" * jwt_secret.MINIMUM_LENGTH
    assert signing_secret() == "m" * jwt_secret.MINIMUM_LENGTH


def test_short_file_refused_outside_development(production_settings: Any, secret_file: Path) -> None:
    """A short mounted secret is refused, naming the file."""
    secret_file.write_text("tiny\n")
    with pytest.raises(SecretUnavailable, match="shorter") as caught:
        describe_source()
    assert str(secret_file) in str(caught.value)
    assert "tiny" not in str(caught.value)


@pytest.mark.parametrize("content", ["", "\n", "   \n\t"])
def test_empty_file_refused_outside_development(production_settings: Any, secret_file: Path, content: str) -> None:
    """An empty (or blank) secret file is refused: the sample's empty-key tokens must never be signed again."""
    secret_file.write_text(content)
    with pytest.raises(SecretUnavailable):
        signing_secret()


def test_empty_file_refused_even_in_development(settings: Any, secret_file: Path) -> None:
    """Development mode relaxes the length, never an empty key."""
    settings.DEVELOPMENT_MODE = True
    secret_file.write_text("\n")
    with pytest.raises(SecretUnavailable, match="empty"):
        signing_secret()


def test_short_secret_allowed_in_development(settings: Any, secret_file: Path) -> None:
    """In development mode a short secret is used as given."""
    settings.DEVELOPMENT_MODE = True
    settings.JWT_SECRET_KEY = "dev"
    assert signing_secret() == "dev"


def test_unreadable_file_is_refused(production_settings: Any, secret_file: Path) -> None:
    """A secret file that is not UTF-8 text is refused with its path, not a traceback."""
    secret_file.write_bytes(b"\xff\xfe" + b"\x00" * 40)
    with pytest.raises(SecretUnavailable, match="cannot be read"):
        signing_secret()


def test_missing_everything_refused_outside_development(production_settings: Any, secret_file: Path) -> None:
    """No setting, no file, no development mode: refused, naming the file that was looked for."""
    with pytest.raises(SecretUnavailable) as caught:
        signing_secret()
    assert str(secret_file) in str(caught.value)


def test_directory_instead_of_file_counts_as_missing(production_settings: Any, secret_file: Path) -> None:
    """A directory at the secret path is not a secret."""
    secret_file.mkdir()
    with pytest.raises(SecretUnavailable):
        signing_secret()


def test_development_default_in_development_mode(settings: Any, secret_file: Path) -> None:
    """With nothing configured, development mode signs with the public development secret, and says so."""
    settings.DEVELOPMENT_MODE = True
    assert signing_secret() == jwt_secret.DEVELOPMENT_SECRET
    assert describe_source() == jwt_secret.DEVELOPMENT_SOURCE


def test_secret_name_is_refused_with_a_message(production_settings: Any, secret_file: Path) -> None:
    """JWT_SECRET_NAME (Secret Manager) is not read yet: refused, telling the operator what to do instead."""
    production_settings.JWT_SECRET_NAME = "projects/p/secrets/jwt/versions/latest"
    with pytest.raises(SecretUnavailable) as caught:
        describe_source()
    assert "JWT_SECRET_NAME" in str(caught.value)
    assert "--update-secrets" in str(caught.value)


def test_describe_source_never_contains_the_secret(settings: Any, secret_file: Path) -> None:
    """The source description is safe to log."""
    settings.JWT_SECRET_KEY = STRONG
    assert STRONG not in describe_source()
