"""Start-up system checks (``aa_site.checks``, ``auth_providers.checks``) and the environment readers (``aa_site.env``).

Checks run through Django's real ``run_checks()``; settings change through the
``settings`` fixture, which also drops the cached secret and providers.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from django.core.checks import CheckMessage, run_checks

from aa_site import env
from auth_providers.base import BaseIdentityProvider, Identity
from connector import jwt_secret

SETTINGS_FILE = Path(env.__file__).with_name("settings.py")
OUR_PREFIXES = ("aa_site.", "auth_providers.")


class ProductionProvider(BaseIdentityProvider):
    """A provider allowed outside development mode (a stand-in for Salesforce and the like)."""

    name = "Production"

    async def authenticate(self, *, token: str, body: dict[str, Any]) -> Identity:
        return Identity(user="")


def our_messages() -> list[CheckMessage]:
    """Messages from this project's checks only (Django's own are not under test here)."""
    return [message for message in run_checks() if (message.id or "").startswith(OUR_PREFIXES)]


def ids() -> set[str]:
    """The ids of this project's check messages."""
    return {message.id for message in our_messages()}


def only(check_id: str) -> CheckMessage:
    """The single message with ``check_id``."""
    (message,) = [message for message in our_messages() if message.id == check_id]
    return message


@pytest.fixture
def healthy_production(production_settings: Any, tmp_path: Path) -> Any:
    """A production configuration that passes every check; each test breaks one thing."""
    production_settings.SERVICE_ROLE = "all"
    production_settings.GCP_PROJECT_ID = "test-project"
    production_settings.CORS_ALLOW_ALL_ORIGINS = False
    production_settings.ENVIRONMENT_PROBLEMS = production_settings.ENVIRONMENT_NOTICES = []
    production_settings.JWT_SECRET_NAME = ""
    production_settings.JWT_SECRET_KEY = "healthy-X0kOkHlr8VSb9Nl3TlbRZSSKmIgsBhTrvsPx5lnmaosC"
    production_settings.JWT_SECRET_KEY_PATH = str(tmp_path / "absent")
    production_settings.AUTH_OPTION = f"{__name__}.ProductionProvider"
    production_settings.APP_AUTH_OPTION = ""
    # REDISHOST is already set by the autouse redis_events fixture.
    return production_settings


def test_healthy_production_configuration_passes(healthy_production: Any) -> None:
    """The control: a complete production configuration yields no message at all."""
    assert our_messages() == []


def test_test_settings_raise_no_errors() -> None:
    """The development settings used by the test run start (warnings only)."""
    assert not [message for message in our_messages() if message.is_serious()]


def test_missing_project_is_e002(healthy_production: Any) -> None:
    """Without GCP_PROJECT_ID nothing can work: aa_site.E002."""
    healthy_production.GCP_PROJECT_ID = ""
    assert ids() == {"aa_site.E002"}
    assert "GCP_PROJECT_ID" in only("aa_site.E002").msg


def test_missing_project_is_an_error_in_development_too(settings: Any) -> None:
    """Development mode supplies a default at import, but an explicitly empty project is still refused."""
    settings.DEVELOPMENT_MODE = True
    settings.GCP_PROJECT_ID = ""
    assert "aa_site.E002" in ids()


def test_no_redis_outside_development_is_e003(healthy_production: Any) -> None:
    """Production needs Redis to share events between processes: aa_site.E003."""
    healthy_production.REDISHOST = ""
    assert ids() == {"aa_site.E003"}
    assert "REDISHOST" in only("aa_site.E003").msg


def test_no_redis_in_development_is_fine(settings: Any) -> None:
    """A single local development process may use the in-memory layer."""
    settings.DEVELOPMENT_MODE = True
    settings.REDISHOST = ""
    assert "aa_site.E003" not in ids()


def test_cors_wildcard_outside_development_is_e004(healthy_production: Any) -> None:
    """The sample's CORS ``*`` is refused in production: aa_site.E004."""
    healthy_production.CORS_ALLOW_ALL_ORIGINS = True
    assert ids() == {"aa_site.E004"}


def test_cors_wildcard_in_development_is_allowed(settings: Any) -> None:
    """Development mode may allow every origin."""
    settings.DEVELOPMENT_MODE = True
    settings.CORS_ALLOW_ALL_ORIGINS = True
    assert "aa_site.E004" not in ids()


def test_no_secret_outside_development_is_e005(healthy_production: Any) -> None:
    """No JWT secret (setting or file) outside development: aa_site.E005 with the hint on how to provide one."""
    healthy_production.JWT_SECRET_KEY = ""
    assert ids() == {"aa_site.E005"}
    assert only("aa_site.E005").hint == jwt_secret.HINT


def test_short_secret_outside_development_is_e005(healthy_production: Any) -> None:
    """A too-short secret is as bad as none."""
    healthy_production.JWT_SECRET_KEY = "short"
    assert ids() == {"aa_site.E005"}


@pytest.mark.parametrize("value", [jwt_secret.DEVELOPMENT_SECRET, "a" * 32], ids=["development_secret", "a_x32"])
def test_weak_secret_outside_development_is_e005(healthy_production: Any, value: str) -> None:
    """The public development secret, or 32 times "a": E005 naming the setting, with how to generate one."""
    healthy_production.JWT_SECRET_KEY = value
    assert ids() == {"aa_site.E005"}
    message = only("aa_site.E005")
    assert "JWT_SECRET_KEY" in message.msg and value not in message.msg
    assert message.hint == jwt_secret.HINT and "secrets.token_urlsafe(48)" in message.hint


def test_secret_name_is_e005(healthy_production: Any) -> None:
    """JWT_SECRET_NAME is refused at start-up rather than at the first /register."""
    healthy_production.JWT_SECRET_NAME = "projects/p/secrets/jwt"
    assert "JWT_SECRET_NAME" in only("aa_site.E005").msg


def test_development_secret_is_warning_w001(settings: Any, tmp_path: Path) -> None:
    """Signing with the built-in development secret is allowed in development mode, with a warning."""
    settings.DEVELOPMENT_MODE = True
    settings.JWT_SECRET_KEY = ""
    settings.JWT_SECRET_NAME = ""
    settings.JWT_SECRET_KEY_PATH = str(tmp_path / "absent")
    message = only("aa_site.W001")
    assert not message.is_serious()
    assert "aa_site.E005" not in ids()
    # It says why the development secret is in use and what production needs, never to set what is already set.
    assert "DEVELOPMENT_MODE=true" in message.msg
    assert "run with DEVELOPMENT_MODE=true" not in message.hint
    assert "JWT_SECRET_NAME" in message.hint and "JWT_SECRET_KEY_PATH" in message.hint


def test_e005_outside_development_offers_development_mode(healthy_production: Any) -> None:
    """Outside development mode, E005's hint still offers DEVELOPMENT_MODE=true for a local run."""
    healthy_production.JWT_SECRET_KEY = ""
    assert "DEVELOPMENT_MODE=true" in only("aa_site.E005").hint


def test_environment_problems_are_e001_each(healthy_production: Any) -> None:
    """Every unparsable environment value is its own aa_site.E001, naming the variable."""
    healthy_production.ENVIRONMENT_PROBLEMS = [
        ("PORT", "must be an integer, got 'eighty'"),
        ("DEVELOPMENT_MODE", "must be true or false, got 'maybe'"),
    ]
    messages = [message for message in our_messages() if message.id == "aa_site.E001"]
    assert len(messages) == 2
    assert {message.msg.split()[0] for message in messages} == {"PORT", "DEVELOPMENT_MODE"}
    assert all(message.is_serious() for message in messages)
    assert any("eighty" in message.msg and "PORT" in message.hint for message in messages)


def test_skip_outside_development_is_auth_providers_e002(healthy_production: Any) -> None:
    """AUTH_OPTION=Skip accepts anyone: refused outside development mode."""
    healthy_production.AUTH_OPTION = "Skip"
    assert ids() == {"auth_providers.E002"}
    assert "AUTH_OPTION" in only("auth_providers.E002").msg


def test_skip_as_app_auth_outside_development_is_auth_providers_e002(healthy_production: Any) -> None:
    """The same holds for APP_AUTH_OPTION, named as such."""
    healthy_production.APP_AUTH_OPTION = "skip"
    assert "APP_AUTH_OPTION" in only("auth_providers.E002").msg


def test_skip_in_development_is_fine(settings: Any) -> None:
    """Development mode may skip authentication."""
    settings.DEVELOPMENT_MODE = True
    settings.AUTH_OPTION = "Skip"
    assert not {i for i in ids() if i.startswith("auth_providers.E")}


@pytest.mark.parametrize("value", ["Nonsense", "tests.no_such_module.Provider", "collections.OrderedDict"])
def test_unloadable_auth_option_is_auth_providers_e001(healthy_production: Any, value: str) -> None:
    """An AUTH_OPTION that names no provider is refused at start-up, naming the setting."""
    healthy_production.AUTH_OPTION = value
    assert ids() == {"auth_providers.E001"}
    assert "AUTH_OPTION" in only("auth_providers.E001").msg


def test_empty_auth_option_is_warning_w001(healthy_production: Any) -> None:
    """Empty AUTH_OPTION starts (nobody can register), with a warning."""
    healthy_production.AUTH_OPTION = ""
    assert ids() == {"auth_providers.W001"}
    assert not only("auth_providers.W001").is_serious()


def test_interceptor_role_skips_secret_and_provider_checks(healthy_production: Any) -> None:
    """The interceptor signs no tokens and registers nobody: no secret or provider needed."""
    healthy_production.SERVICE_ROLE = "interceptor"
    healthy_production.JWT_SECRET_KEY = ""
    healthy_production.AUTH_OPTION = "Nonsense"
    healthy_production.APP_AUTH_OPTION = "Skip"
    assert our_messages() == []


def test_interceptor_role_still_checks_shared_settings(healthy_production: Any) -> None:
    """Project and Redis are still required for the interceptor."""
    healthy_production.SERVICE_ROLE = "interceptor"
    healthy_production.GCP_PROJECT_ID = ""
    healthy_production.REDISHOST = ""
    assert ids() == {"aa_site.E002", "aa_site.E003"}


@pytest.mark.parametrize("role", ["connector", "all"])
def test_connector_roles_check_the_secret(healthy_production: Any, role: str) -> None:
    """Roles that sign tokens refuse to start without a secret."""
    healthy_production.SERVICE_ROLE = role
    healthy_production.JWT_SECRET_KEY = ""
    assert "aa_site.E005" in ids()


def test_every_problem_is_reported_at_once(healthy_production: Any) -> None:
    """An operator sees every bad setting in one start-up, not one per attempt."""
    healthy_production.GCP_PROJECT_ID = ""
    healthy_production.REDISHOST = ""
    healthy_production.CORS_ALLOW_ALL_ORIGINS = True
    healthy_production.JWT_SECRET_KEY = ""
    healthy_production.AUTH_OPTION = "Skip"
    assert ids() == {"aa_site.E002", "aa_site.E003", "aa_site.E004", "aa_site.E005", "auth_providers.E002"}


# --- aa_site.env -----------------------------------------------------------------------------------


@pytest.fixture
def problems(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """A fresh ``env.PROBLEMS`` for this test, so the process-wide list is left as settings found it."""
    fresh: list[tuple[str, str]] = []
    monkeypatch.setattr(env, "PROBLEMS", fresh)
    return fresh


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", " yes ", "On"])
def test_flag_true_values(monkeypatch: pytest.MonkeyPatch, problems: list, raw: str) -> None:
    """1/true/yes/on in any case, with spaces, are true."""
    monkeypatch.setenv("AA_TEST_FLAG", raw)
    assert env.flag("AA_TEST_FLAG", False) is True
    assert problems == []


@pytest.mark.parametrize("raw", ["0", "false", "No", " OFF", ""])
def test_flag_false_values(monkeypatch: pytest.MonkeyPatch, problems: list, raw: str) -> None:
    """0/false/no/off and empty are false."""
    monkeypatch.setenv("AA_TEST_FLAG", raw)
    assert env.flag("AA_TEST_FLAG", True) is False
    assert problems == []


def test_flag_unset_is_default(monkeypatch: pytest.MonkeyPatch, problems: list) -> None:
    """An unset flag takes the default."""
    monkeypatch.delenv("AA_TEST_FLAG", raising=False)
    assert env.flag("AA_TEST_FLAG", True) is True
    assert problems == []


def test_flag_garbage_is_recorded(monkeypatch: pytest.MonkeyPatch, problems: list) -> None:
    """An unknown value falls back to the default and is recorded for the checks, not raised."""
    monkeypatch.setenv("AA_TEST_FLAG", "maybe")
    assert env.flag("AA_TEST_FLAG", False) is False
    assert problems == [("AA_TEST_FLAG", "must be true or false, got 'maybe'")]


@pytest.mark.parametrize(("raw", "expected"), [("42", 42), (" 7 ", 7), ("1", 1), ("100", 100)])
def test_integer_within_bounds(monkeypatch: pytest.MonkeyPatch, problems: list, raw: str, expected: int) -> None:
    """Integers within [minimum, maximum] (inclusive) are returned."""
    monkeypatch.setenv("AA_TEST_INT", raw)
    assert env.integer("AA_TEST_INT", 5, minimum=1, maximum=100) == expected
    assert problems == []


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_integer_unset_or_blank_is_default(
    monkeypatch: pytest.MonkeyPatch, problems: list, raw: str | None
) -> None:
    """Unset or blank gives the default without a problem."""
    if raw is None:
        monkeypatch.delenv("AA_TEST_INT", raising=False)
    else:
        monkeypatch.setenv("AA_TEST_INT", raw)
    assert env.integer("AA_TEST_INT", 5, minimum=1, maximum=100) == 5
    assert problems == []


@pytest.mark.parametrize("raw", ["eighty", "1.5", "0x10"])
def test_integer_not_a_number_is_recorded(monkeypatch: pytest.MonkeyPatch, problems: list, raw: str) -> None:
    """A non-integer falls back to the default and is recorded."""
    monkeypatch.setenv("AA_TEST_INT", raw)
    assert env.integer("AA_TEST_INT", 5) == 5
    assert problems == [("AA_TEST_INT", f"must be an integer, got {raw!r}")]


@pytest.mark.parametrize("raw", ["0", "101", "-3"])
def test_integer_out_of_bounds_is_recorded(monkeypatch: pytest.MonkeyPatch, problems: list, raw: str) -> None:
    """Values outside the bounds fall back to the default and are recorded with the bounds."""
    monkeypatch.setenv("AA_TEST_INT", raw)
    assert env.integer("AA_TEST_INT", 5, minimum=1, maximum=100) == 5
    assert problems == [("AA_TEST_INT", f"must be between 1 and 100, got {int(raw)}")]


def test_integer_with_only_a_minimum(monkeypatch: pytest.MonkeyPatch, problems: list) -> None:
    """A one-sided bound still applies, and large values pass."""
    monkeypatch.setenv("AA_TEST_INT", "5000000")
    assert env.integer("AA_TEST_INT", 1024, minimum=1024) == 5000000
    monkeypatch.setenv("AA_TEST_INT", "10")
    assert env.integer("AA_TEST_INT", 1024, minimum=1024) == 1024
    assert [name for name, _ in problems] == ["AA_TEST_INT"]


@pytest.mark.parametrize(
    ("raw", "expected"), [("connector", "connector"), ("INTERCEPTOR", "interceptor"), (" All ", "all")]
)
def test_choice_is_case_insensitive_and_canonical(
    monkeypatch: pytest.MonkeyPatch, problems: list, raw: str, expected: str
) -> None:
    """A choice matches case-insensitively and returns the canonical spelling."""
    monkeypatch.setenv("AA_TEST_CHOICE", raw)
    assert env.choice("AA_TEST_CHOICE", "all", ("connector", "interceptor", "all")) == expected
    assert problems == []


def test_choice_unset_or_blank_is_default(monkeypatch: pytest.MonkeyPatch, problems: list) -> None:
    """Unset or blank gives the default."""
    monkeypatch.delenv("AA_TEST_CHOICE", raising=False)
    assert env.choice("AA_TEST_CHOICE", "INFO", ("DEBUG", "INFO")) == "INFO"
    monkeypatch.setenv("AA_TEST_CHOICE", "  ")
    assert env.choice("AA_TEST_CHOICE", "INFO", ("DEBUG", "INFO")) == "INFO"
    assert problems == []


def test_choice_unknown_is_recorded_with_the_choices(monkeypatch: pytest.MonkeyPatch, problems: list) -> None:
    """An unknown value falls back to the default and the problem lists what is allowed."""
    monkeypatch.setenv("AA_TEST_CHOICE", "both")
    assert env.choice("AA_TEST_CHOICE", "all", ("connector", "interceptor", "all")) == "all"
    assert problems == [("AA_TEST_CHOICE", "must be one of all, connector, interceptor, got 'both'")]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://a.example,https://b.example", ["https://a.example", "https://b.example"]),
        (" https://a.example  https://b.example ", ["https://a.example", "https://b.example"]),
        ("a,,b, ,c", ["a", "b", "c"]),
        ("", []),
        ("*", ["*"]),
    ],
)
def test_items_split_on_commas_and_whitespace(monkeypatch: pytest.MonkeyPatch, raw: str, expected: list[str]) -> None:
    """Lists are comma- or whitespace-separated, empty items dropped."""
    monkeypatch.setenv("AA_TEST_ITEMS", raw)
    assert env.items("AA_TEST_ITEMS", ["default"]) == expected


def test_items_unset_is_a_copy_of_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset gives the default as a new list (callers may change it safely)."""
    monkeypatch.delenv("AA_TEST_ITEMS", raising=False)
    default = ("*",)
    value = env.items("AA_TEST_ITEMS", default)
    assert value == ["*"]
    value.append("x")
    assert env.items("AA_TEST_ITEMS", default) == ["*"]


def test_text_strips_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Text values lose surrounding whitespace; unset gives the default, set-but-empty gives empty."""
    monkeypatch.setenv("AA_TEST_TEXT", "  value \n")
    assert env.text("AA_TEST_TEXT", "d") == "value"
    monkeypatch.setenv("AA_TEST_TEXT", "")
    assert env.text("AA_TEST_TEXT", "d") == ""
    monkeypatch.delenv("AA_TEST_TEXT")
    assert env.text("AA_TEST_TEXT", "d") == "d"


def test_settings_module_collects_every_environment_problem(
    monkeypatch: pytest.MonkeyPatch, problems: list
) -> None:
    """Importing settings with bad values never raises; each bad variable lands in ENVIRONMENT_PROBLEMS."""
    monkeypatch.setenv("PORT", "eighty")
    monkeypatch.setenv("DEVELOPMENT_MODE", "maybe")
    monkeypatch.setenv("SERVICE_ROLE", "everything")
    monkeypatch.setenv("JWT_LIFETIME_MINUTES", "0")
    spec = importlib.util.spec_from_file_location("aa_site_settings_under_test", SETTINGS_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert {name for name, _ in module.ENVIRONMENT_PROBLEMS} == {
        "PORT",
        "DEVELOPMENT_MODE",
        "SERVICE_ROLE",
        "JWT_LIFETIME_MINUTES",
    }
    assert (module.PORT, module.DEVELOPMENT_MODE, module.SERVICE_ROLE) == (8080, False, "all")


def test_requests_run_no_sync_signal_receivers() -> None:
    """No receiver on request_started/finished: a sync one would send every async request through a thread."""
    from django.core import signals

    assert not signals.request_started.receivers
    assert not signals.request_finished.receivers
