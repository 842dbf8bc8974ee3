"""``connector.jwt_secret``: where the signing secret comes from, and every unusable secret refused.

Each test points ``JWT_SECRET_KEY_PATH`` into its own ``tmp_path`` so the
host's ``/secret/jwt_secret_key`` (if any) never leaks in; changing settings
through the ``settings`` fixture also exercises the cache reset.
"""

from __future__ import annotations

import base64
import secrets
from pathlib import Path
from typing import Any

import pytest

from connector import jwt_secret
from connector.jwt_secret import SecretUnavailable, describe_source, verification_secrets

# Fixed output of secrets.token_urlsafe: random, so they pass the entropy rule.
STRONG = "strong-kOw0Ra8WBRMRmQ6ri1Vpg8sTTKxGCO9Gj9kl0p1UeD4o"
OTHER_STRONG = "other-strong-xL2YummtF2oodg5ino6EDZIV8G3Epg4EpB7TnsrWAou0"
# Weak secrets of at least MINIMUM_LENGTH characters: the kinds of mistake the entropy rule is for.
PREDICTABLE = {
    "one_character": "a" * 32,
    "one_character_long": "a" * 100,
    "two_characters": "ab" * 24,
    "repeated_word": "secret" * 8,
    "digits_repeated": "0123456789" * 4,
    "alphabet": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "keyboard_row_repeated": "qwertyuiop" * 4,
    "hex_of_128_bits": "c10b35a7eee9df65b6be48dfa4f97319",
}


@pytest.fixture
def secret_file(settings: Any, tmp_path: Path) -> Path:
    """``JWT_SECRET_KEY_PATH`` pointed at a not-yet-existing file; every other secret setting empty.

    The previous-secret file is pointed into ``tmp_path`` too (see ``previous_file``), never created here.
    """
    path = tmp_path / "jwt_secret_key"
    settings.JWT_SECRET_KEY = ""
    settings.JWT_SECRET_NAME = ""
    settings.JWT_SECRET_KEY_PATH = str(path)
    settings.JWT_PREVIOUS_SECRET_KEY = ""
    settings.JWT_PREVIOUS_SECRET_NAME = ""
    settings.JWT_PREVIOUS_SECRET_KEY_FILE = str(tmp_path / "jwt_previous_secret_key")
    return path


@pytest.fixture
def previous_file(settings: Any, secret_file: Path) -> Path:
    """The (not yet existing) file ``JWT_PREVIOUS_SECRET_KEY_FILE`` points at."""
    return Path(settings.JWT_PREVIOUS_SECRET_KEY_FILE)


def test_setting_wins_over_the_file(settings: Any, secret_file: Path) -> None:
    """``JWT_SECRET_KEY`` is used even when the file exists."""
    secret_file.write_text(OTHER_STRONG)
    settings.JWT_SECRET_KEY = STRONG
    assert verification_secrets()[0] == STRONG
    assert describe_source() == "JWT_SECRET_KEY"


def test_file_is_read_when_the_setting_is_empty(production_settings: Any, secret_file: Path) -> None:
    """The mounted secret file is used (surrounding whitespace, like a trailing newline, removed)."""
    secret_file.write_text(f"  {STRONG}\n")
    assert verification_secrets()[0] == STRONG
    assert str(secret_file) in describe_source()


def test_file_is_read_once(settings: Any, secret_file: Path) -> None:
    """The secret is read on first use and kept; a later change to the file needs a restart (or a settings change)."""
    secret_file.write_text(STRONG)
    assert verification_secrets()[0] == STRONG
    secret_file.write_text(OTHER_STRONG)
    assert verification_secrets()[0] == STRONG


def test_cache_resets_when_a_jwt_setting_changes(settings: Any, secret_file: Path) -> None:
    """Changing a JWT_* setting (setting_changed) makes the next call read the new source."""
    settings.JWT_SECRET_KEY = STRONG
    assert verification_secrets()[0] == STRONG
    settings.JWT_SECRET_KEY = OTHER_STRONG
    assert verification_secrets()[0] == OTHER_STRONG


def test_cache_resets_when_development_mode_changes(settings: Any, secret_file: Path) -> None:
    """Leaving development mode drops the cached development secret, so production refuses to sign."""
    settings.DEVELOPMENT_MODE = True
    assert describe_source() == jwt_secret.DEVELOPMENT_SOURCE
    settings.DEVELOPMENT_MODE = False
    with pytest.raises(SecretUnavailable):
        verification_secrets()[0]


def test_short_setting_refused_outside_development(production_settings: Any, secret_file: Path) -> None:
    """A secret shorter than ``MINIMUM_LENGTH`` is refused, and the error does not reveal it."""
    short = "x" * (jwt_secret.MINIMUM_LENGTH - 1)
    production_settings.JWT_SECRET_KEY = short
    with pytest.raises(SecretUnavailable, match="shorter") as caught:
        verification_secrets()[0]
    assert short not in str(caught.value)
    assert "JWT_SECRET_KEY" in str(caught.value)


def test_secret_of_minimum_length_is_accepted_outside_development(
    production_settings: Any, secret_file: Path
) -> None:
    """Exactly ``MINIMUM_LENGTH`` random characters are enough."""
    minimum = "QbifH6lYrZ3pPiT5aRhI_E9V9pQwAzDd"  # secrets.token_urlsafe(24)
    assert len(minimum) == jwt_secret.MINIMUM_LENGTH
    production_settings.JWT_SECRET_KEY = minimum
    assert verification_secrets()[0] == minimum


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
        verification_secrets()[0]


def test_empty_file_refused_even_in_development(settings: Any, secret_file: Path) -> None:
    """Development mode relaxes the length, never an empty key."""
    settings.DEVELOPMENT_MODE = True
    secret_file.write_text("\n")
    with pytest.raises(SecretUnavailable, match="empty"):
        verification_secrets()[0]


def test_short_secret_allowed_in_development(settings: Any, secret_file: Path) -> None:
    """In development mode a short secret is used as given."""
    settings.DEVELOPMENT_MODE = True
    settings.JWT_SECRET_KEY = "dev"
    assert verification_secrets()[0] == "dev"


def test_unreadable_file_is_refused(production_settings: Any, secret_file: Path) -> None:
    """A secret file that is not UTF-8 text is refused with its path, not a traceback."""
    secret_file.write_bytes(b"\xff\xfe" + b"\x00" * 40)
    with pytest.raises(SecretUnavailable, match="cannot be read"):
        verification_secrets()[0]


def test_missing_everything_refused_outside_development(production_settings: Any, secret_file: Path) -> None:
    """No setting, no file, no development mode: refused, naming the file that was looked for."""
    with pytest.raises(SecretUnavailable) as caught:
        verification_secrets()[0]
    assert str(secret_file) in str(caught.value)


def test_directory_instead_of_file_counts_as_missing(production_settings: Any, secret_file: Path) -> None:
    """A directory at the secret path is not a secret."""
    secret_file.mkdir()
    with pytest.raises(SecretUnavailable):
        verification_secrets()[0]


def test_development_default_in_development_mode(settings: Any, secret_file: Path) -> None:
    """With nothing configured, development mode signs with the public development secret, and says so."""
    settings.DEVELOPMENT_MODE = True
    assert verification_secrets()[0] == jwt_secret.DEVELOPMENT_SECRET
    assert describe_source() == jwt_secret.DEVELOPMENT_SOURCE


def test_secret_key_and_secret_name_together_are_refused(production_settings: Any, secret_file: Path) -> None:
    """Two explicit sources for one secret are ambiguous: refused naming both, before Secret Manager is asked.

    (This replaces the refusal of JWT_SECRET_NAME as unsupported: Secret Manager is now read,
    see tests/test_secret_manager.py.)
    """
    production_settings.JWT_SECRET_KEY = STRONG
    production_settings.JWT_SECRET_NAME = "jwt-secret"
    with pytest.raises(SecretUnavailable) as caught:
        describe_source()
    assert "JWT_SECRET_KEY" in str(caught.value)
    assert "JWT_SECRET_NAME" in str(caught.value)


@pytest.mark.parametrize(
    "name",
    ["projects/p/secrets", "projects/p/secrets/a/b", "projects//secrets/jwt", "jwt secret", "a/b", "x" * 256],
)
def test_malformed_secret_name_is_refused_naming_it(production_settings: Any, secret_file: Path, name: str) -> None:
    """A JWT_SECRET_NAME that designates no secret is refused with the setting named, before any request."""
    production_settings.JWT_SECRET_NAME = name
    with pytest.raises(SecretUnavailable, match="JWT_SECRET_NAME"):
        describe_source()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("jwt-secret", "projects/test-project/secrets/jwt-secret/versions/latest"),
        ("projects/other/secrets/jwt_2", "projects/other/secrets/jwt_2/versions/latest"),
        ("projects/123/secrets/jwt/versions/7", "projects/123/secrets/jwt/versions/7"),
    ],
)
def test_secret_version_name(settings: Any, name: str, expected: str) -> None:
    """A bare id lives in GCP_PROJECT_ID at ``latest``; a full name is kept, given ``latest`` if it has no version."""
    settings.GCP_PROJECT_ID = "test-project"
    assert jwt_secret.secret_version_name(name) == expected


def test_bare_secret_id_needs_a_project(production_settings: Any, secret_file: Path) -> None:
    """Without GCP_PROJECT_ID a bare id designates nothing: refused naming both settings."""
    production_settings.GCP_PROJECT_ID = ""
    production_settings.JWT_SECRET_NAME = "jwt-secret"
    with pytest.raises(SecretUnavailable) as caught:
        describe_source()
    assert "JWT_SECRET_NAME" in str(caught.value) and "GCP_PROJECT_ID" in str(caught.value)


# --- the previous secret (rotation) --------------------------------------------------


def test_no_previous_secret_by_default(settings: Any, secret_file: Path) -> None:
    """Nothing configured: tokens verify with the current secret only."""
    settings.JWT_SECRET_KEY = STRONG
    assert jwt_secret.verification_secrets() == (STRONG,)
    assert jwt_secret.describe_previous_source() is None


def test_previous_secret_from_the_setting(production_settings: Any, secret_file: Path) -> None:
    """JWT_PREVIOUS_SECRET_KEY verifies after the current secret; signing still uses the current one."""
    production_settings.JWT_SECRET_KEY = STRONG
    production_settings.JWT_PREVIOUS_SECRET_KEY = OTHER_STRONG
    assert jwt_secret.verification_secrets() == (STRONG, OTHER_STRONG)
    assert verification_secrets()[0] == STRONG
    assert jwt_secret.describe_previous_source() == "JWT_PREVIOUS_SECRET_KEY"


def test_previous_secret_from_its_file(production_settings: Any, secret_file: Path, previous_file: Path) -> None:
    """A mounted previous secret is used when the file exists (whitespace removed)."""
    secret_file.write_text(STRONG)
    previous_file.write_text(f"{OTHER_STRONG}\n")
    assert jwt_secret.verification_secrets() == (STRONG, OTHER_STRONG)
    assert str(previous_file) in (jwt_secret.describe_previous_source() or "")


def test_previous_secret_equal_to_the_current_one_is_dropped(settings: Any, secret_file: Path) -> None:
    """The same value twice (a rotation not started or already finished) verifies once."""
    settings.JWT_SECRET_KEY = STRONG
    settings.JWT_PREVIOUS_SECRET_KEY = STRONG
    assert jwt_secret.verification_secrets() == (STRONG,)


def test_short_previous_secret_is_refused(production_settings: Any, secret_file: Path) -> None:
    """A previous secret verifies tokens, so it must be as strong as a current one: refused, naming its setting."""
    production_settings.JWT_SECRET_KEY = STRONG
    production_settings.JWT_PREVIOUS_SECRET_KEY = "short-previous"
    with pytest.raises(SecretUnavailable, match="JWT_PREVIOUS_SECRET_KEY") as caught:
        describe_source()
    assert "short-previous" not in str(caught.value)


def test_empty_previous_file_is_refused(production_settings: Any, secret_file: Path, previous_file: Path) -> None:
    """An existing but blank previous-secret file is refused rather than ignored: it would verify empty-key tokens."""
    production_settings.JWT_SECRET_KEY = STRONG
    previous_file.write_text("\n")
    with pytest.raises(SecretUnavailable, match="empty"):
        describe_source()


def test_previous_key_and_previous_name_together_are_refused(production_settings: Any, secret_file: Path) -> None:
    """As for the current secret, two explicit sources are ambiguous."""
    production_settings.JWT_SECRET_KEY = STRONG
    production_settings.JWT_PREVIOUS_SECRET_KEY = OTHER_STRONG
    production_settings.JWT_PREVIOUS_SECRET_NAME = "jwt-previous"
    with pytest.raises(SecretUnavailable, match="JWT_PREVIOUS_SECRET_NAME"):
        describe_source()


def test_describe_source_never_contains_the_secret(settings: Any, secret_file: Path) -> None:
    """The source descriptions are safe to log."""
    settings.JWT_SECRET_KEY = STRONG
    settings.JWT_PREVIOUS_SECRET_KEY = OTHER_STRONG
    assert STRONG not in describe_source()
    assert OTHER_STRONG not in (jwt_secret.describe_previous_source() or "")


# --- weak secrets outside development mode -------------------------------------------------


def assert_refused_with_advice(caught: pytest.ExceptionInfo, setting: str, value: str) -> None:
    """The refusal names the setting and never shows the value; the hint start-up prints with it
    (``HINT``, see tests/test_checks.py) says how to generate a good secret."""
    message = str(caught.value)
    assert setting in message
    assert value not in message
    assert "secrets.token_urlsafe(48)" in jwt_secret.HINT and "openssl rand -base64 48" in jwt_secret.HINT


def test_development_secret_refused_outside_development(production_settings: Any, secret_file: Path) -> None:
    """The public development secret as JWT_SECRET_KEY: anyone could forge tokens, so start-up stops."""
    production_settings.JWT_SECRET_KEY = jwt_secret.DEVELOPMENT_SECRET
    with pytest.raises(SecretUnavailable, match="development secret") as caught:
        describe_source()
    assert_refused_with_advice(caught, "JWT_SECRET_KEY", jwt_secret.DEVELOPMENT_SECRET)


def test_development_secret_in_the_file_refused(production_settings: Any, secret_file: Path) -> None:
    """The same from the mounted file, naming the file setting."""
    secret_file.write_text(jwt_secret.DEVELOPMENT_SECRET + "\n")
    with pytest.raises(SecretUnavailable, match="development secret") as caught:
        describe_source()
    assert_refused_with_advice(caught, "JWT_SECRET_KEY_PATH", jwt_secret.DEVELOPMENT_SECRET)


def test_development_secret_as_previous_secret_refused(production_settings: Any, secret_file: Path) -> None:
    """A previous secret verifies tokens: the development secret there would let forged tokens in."""
    production_settings.JWT_SECRET_KEY = STRONG
    production_settings.JWT_PREVIOUS_SECRET_KEY = jwt_secret.DEVELOPMENT_SECRET
    with pytest.raises(SecretUnavailable, match="development secret") as caught:
        describe_source()
    assert_refused_with_advice(caught, "JWT_PREVIOUS_SECRET_KEY", jwt_secret.DEVELOPMENT_SECRET)


@pytest.mark.parametrize("weak", list(PREDICTABLE))
def test_predictable_secret_refused_outside_development(production_settings: Any, secret_file: Path, weak: str) -> None:
    """Long enough but predictable: refused, naming the setting."""
    value = PREDICTABLE[weak]
    assert len(value) >= jwt_secret.MINIMUM_LENGTH
    production_settings.JWT_SECRET_KEY = value
    with pytest.raises(SecretUnavailable, match="too predictable") as caught:
        describe_source()
    assert_refused_with_advice(caught, "JWT_SECRET_KEY", value)


def test_predictable_file_refused(production_settings: Any, secret_file: Path) -> None:
    """A predictable mounted secret is refused, naming the file setting."""
    secret_file.write_text("a" * 64)
    with pytest.raises(SecretUnavailable, match="too predictable") as caught:
        describe_source()
    assert_refused_with_advice(caught, "JWT_SECRET_KEY_PATH", "a" * 64)


@pytest.mark.parametrize("source", ["JWT_PREVIOUS_SECRET_KEY", "JWT_PREVIOUS_SECRET_KEY_FILE"])
def test_predictable_previous_secret_refused(
    production_settings: Any, secret_file: Path, previous_file: Path, source: str
) -> None:
    """The secret being rotated out must pass the same rule, from its setting or its file."""
    production_settings.JWT_SECRET_KEY = STRONG
    if source == "JWT_PREVIOUS_SECRET_KEY":
        production_settings.JWT_PREVIOUS_SECRET_KEY = "a" * 32
    else:
        previous_file.write_text("a" * 32)
    with pytest.raises(SecretUnavailable, match="too predictable") as caught:
        describe_source()
    assert_refused_with_advice(caught, source, "a" * 32)


@pytest.mark.parametrize(
    "generate",
    [
        pytest.param(lambda: secrets.token_urlsafe(48), id="token_urlsafe_48"),
        pytest.param(lambda: base64.b64encode(secrets.token_bytes(48)).decode(), id="openssl_rand_base64_48"),
        pytest.param(lambda: secrets.token_hex(32), id="hex_of_256_bits"),
    ],
)
def test_generated_secrets_are_accepted(production_settings: Any, secret_file: Path, generate: Any) -> None:
    """What the advice says to run passes the rule, with a wide margin (a fresh secret every run)."""
    for _ in range(50):
        value = generate()
        assert jwt_secret.estimated_entropy_bits(value) >= 1.5 * jwt_secret.MINIMUM_ENTROPY_BITS
    production_settings.JWT_SECRET_KEY = value
    assert verification_secrets()[0] == value


def test_the_suites_own_secrets_pass_the_rule() -> None:
    """The secret the test servers run with in production mode (testing/processes.py), and this module's, pass."""
    from testing import processes

    for value in (processes.TEST_JWT_SECRET, STRONG, OTHER_STRONG):
        assert jwt_secret.estimated_entropy_bits(value) >= jwt_secret.MINIMUM_ENTROPY_BITS, value


@pytest.mark.parametrize("value", [jwt_secret.DEVELOPMENT_SECRET, "a" * 32])
def test_weak_secrets_allowed_in_development(settings: Any, secret_file: Path, value: str) -> None:
    """Development mode relaxes the strength rules (not emptiness): local runs may use any secret."""
    settings.DEVELOPMENT_MODE = True
    settings.JWT_SECRET_KEY = value
    assert verification_secrets()[0] == value
