"""Settings of the built-in identity providers: names, derived URLs, timeouts and start-up checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from aa_site import env
from auth_providers import checks, registry
from auth_providers.five9 import Five9Provider
from auth_providers.genesys_cloud import GenesysCloudProvider
from auth_providers.salesforce import SalesforceProvider
from auth_providers.salesforce_lwc import SalesforceLWCProvider
from auth_providers.skip import SkipProvider
from auth_providers.twilio import TwilioAppProvider, TwilioProvider
from testing import processes
from testing.fake_providers import ACCOUNT_SID, ORGANIZATION_ID

# --- Names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "provider_class"),
    [("Salesforce", SalesforceProvider), ("SalesforceLWC", SalesforceLWCProvider),
     ("GenesysCloud", GenesysCloudProvider), ("Twilio", TwilioProvider), ("Five9", Five9Provider),
     ("salesforcelwc", SalesforceLWCProvider), ("FIVE9", Five9Provider)],
)
def test_auth_option_names_the_built_in_providers(value, provider_class):
    """Every name Google's sample accepts for AUTH_OPTION loads its provider (names compared ignoring case)."""
    assert type(registry.load_provider("AUTH_OPTION", value)) is provider_class


@pytest.mark.parametrize("value", ["Twilio", "twilio"])
def test_app_auth_option_twilio_checks_account_credentials_not_flex_tokens(value):
    """APP_AUTH_OPTION=Twilio is the Accounts API check, while AUTH_OPTION=Twilio stays the Flex check."""
    assert type(registry.load_provider("APP_AUTH_OPTION", value)) is TwilioAppProvider
    assert type(registry.load_provider("AUTH_OPTION", value)) is TwilioProvider


def test_app_auth_option_still_accepts_the_other_built_in_names():
    """Skip (development) and the token providers remain valid APP_AUTH_OPTION values."""
    assert type(registry.load_provider("APP_AUTH_OPTION", "Skip")) is SkipProvider
    assert type(registry.load_provider("APP_AUTH_OPTION", "Five9")) is Five9Provider


def test_get_provider_follows_a_changed_app_auth_option(settings):
    """The cached /register-app provider is dropped when APP_AUTH_OPTION changes."""
    settings.APP_AUTH_OPTION = "Skip"
    assert type(registry.get_provider("APP_AUTH_OPTION")) is SkipProvider
    settings.APP_AUTH_OPTION = "Twilio"
    assert type(registry.get_provider("APP_AUTH_OPTION")) is TwilioAppProvider


# --- Start-up checks -----------------------------------------------------------------------


@pytest.fixture
def configured(settings):
    """Every provider setting present and valid, AUTH_OPTION and APP_AUTH_OPTION empty."""
    settings.AUTH_OPTION = settings.APP_AUTH_OPTION = ""
    settings.SALESFORCE_ORGANIZATION_ID = ORGANIZATION_ID
    settings.TWILIO_FLEX_URL = "https://flex-verify-1234.twil.io"
    settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
    settings.FIVE9_TRUST_TOKEN = "five9-trust-token"
    settings.GENESYS_CLOUD_API_URL = "https://api.mypurecloud.com"
    return settings


def provider_errors() -> list:
    """The identity-provider checks' messages about missing provider settings."""
    return [message for message in checks.check_providers() if message.id == "auth_providers.E003"]


@pytest.mark.parametrize(
    ("setting", "value"),
    [("AUTH_OPTION", "Salesforce"), ("AUTH_OPTION", "SalesforceLWC"), ("AUTH_OPTION", "GenesysCloud"),
     ("AUTH_OPTION", "Twilio"), ("AUTH_OPTION", "Five9"), ("APP_AUTH_OPTION", "Twilio")],
)
def test_a_fully_configured_provider_passes_the_checks(configured, setting, value):
    """No provider-setting error when everything the provider needs is set."""
    setattr(configured, setting, value)
    assert provider_errors() == []


@pytest.mark.parametrize(
    ("setting", "value", "cleared", "named"),
    [
        ("AUTH_OPTION", "Salesforce", "SALESFORCE_ORGANIZATION_ID", "SALESFORCE_ORGANIZATION_ID"),
        ("AUTH_OPTION", "SalesforceLWC", "SALESFORCE_ORGANIZATION_ID", "SALESFORCE_ORGANIZATION_ID"),
        ("AUTH_OPTION", "GenesysCloud", "GENESYS_CLOUD_API_URL", "GENESYS_CLOUD_REGION"),
        ("AUTH_OPTION", "Twilio", "TWILIO_FLEX_URL", "TWILIO_FLEX_ENVIRONMENT"),
        ("AUTH_OPTION", "Five9", "FIVE9_TRUST_TOKEN", "FIVE9_TRUST_TOKEN"),
        ("APP_AUTH_OPTION", "Twilio", "TWILIO_ACCOUNT_SID", "TWILIO_ACCOUNT_SID"),
    ],
)
def test_a_missing_provider_setting_is_an_error_naming_it(configured, setting, value, cleared, named):
    """Start-up stops with the missing setting named, instead of every registration failing later."""
    setattr(configured, setting, value)
    setattr(configured, cleared, "")
    (error,) = provider_errors()
    assert error.is_serious()
    assert named in error.msg
    assert f"{setting}={value}" in error.hint


@pytest.mark.parametrize("organization", ["00D5g000004ABC", "00D5g000004ABCDEA", "00D5g000004ABCD-A2", "org"])
def test_a_malformed_salesforce_organisation_is_an_error(configured, organization):
    """Org ids are 15 or 18 alphanumerics; anything else is a typo that would reject every agent."""
    configured.AUTH_OPTION = "Salesforce"
    configured.SALESFORCE_ORGANIZATION_ID = organization
    (error,) = provider_errors()
    assert "SALESFORCE_ORGANIZATION_ID" in error.msg


def test_provider_settings_are_not_checked_for_the_interceptor(configured):
    """The interceptor registers nobody, so it does not need the provider settings."""
    configured.SERVICE_ROLE = "interceptor"
    configured.AUTH_OPTION = "Five9"
    configured.FIVE9_TRUST_TOKEN = ""
    assert checks.check_providers() == []


def test_production_start_up_refuses_a_provider_without_its_setting(redis_server):
    """A real connector with AUTH_OPTION=Five9 and no FIVE9_TRUST_TOKEN exits 2 naming the setting."""
    result = processes.service_exit(role="connector", redis=redis_server, AUTH_OPTION="Five9")
    assert result.returncode == 2, result.stderr
    assert "FIVE9_TRUST_TOKEN" in result.stderr


def test_production_start_up_refuses_a_malformed_timeout(redis_server):
    """IDENTITY_PROVIDER_READ_TIMEOUT must be a number: start-up names it."""
    result = processes.service_exit(
        role="connector", redis=redis_server, AUTH_OPTION="Five9", FIVE9_TRUST_TOKEN="x",
        IDENTITY_PROVIDER_READ_TIMEOUT="5s",
    )
    assert result.returncode == 2, result.stderr
    assert "IDENTITY_PROVIDER_READ_TIMEOUT" in result.stderr


# --- Values read from the environment ------------------------------------------------------


def settings_in_subprocess(**environment: str) -> dict:
    """Import aa_site.settings in a fresh interpreter with only ``environment`` set, and return its provider values."""
    names = ["SALESFORCE_URL", "GENESYS_CLOUD_API_URL", "TWILIO_FLEX_URL", "TWILIO_API_URL",
             "IDENTITY_PROVIDER_CONNECT_TIMEOUT", "IDENTITY_PROVIDER_READ_TIMEOUT", "ENVIRONMENT_PROBLEMS"]
    script = (
        "import json, aa_site.settings as s; "
        f"print(json.dumps({{name: getattr(s, name) for name in {names!r}}}))"
    )
    base = {key: value for key, value in os.environ.items() if key in ("PATH", "HOME", "LANG", "SYSTEMROOT")}
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=processes.REPOSITORY, env={**base, **environment},
        capture_output=True, text=True, check=True, timeout=60,
    )
    return json.loads(completed.stdout)


def test_provider_urls_default_from_the_samples_settings():
    """The URLs are derived from SALESFORCE_DOMAIN, GENESYS_CLOUD_ENVIRONMENT and TWILIO_FLEX_ENVIRONMENT."""
    values = settings_in_subprocess(
        SALESFORCE_DOMAIN="acme.my.salesforce.com", GENESYS_CLOUD_ENVIRONMENT="mypurecloud.de",
        TWILIO_FLEX_ENVIRONMENT="verify-1234-dev.twil.io",
    )
    assert values["SALESFORCE_URL"] == "https://acme.my.salesforce.com"
    assert values["GENESYS_CLOUD_API_URL"] == "https://api.mypurecloud.de"
    assert values["TWILIO_FLEX_URL"] == "https://verify-1234-dev.twil.io"
    assert values["TWILIO_API_URL"] == "https://api.twilio.com"


def test_provider_settings_defaults_without_environment():
    """Sample defaults: login.salesforce.com, mypurecloud.com, no Flex URL; timeouts 3 s and 5 s."""
    values = settings_in_subprocess()
    assert values["SALESFORCE_URL"] == "https://login.salesforce.com"
    assert values["GENESYS_CLOUD_API_URL"] == "https://api.mypurecloud.com"
    assert values["TWILIO_FLEX_URL"] == ""
    assert (values["IDENTITY_PROVIDER_CONNECT_TIMEOUT"], values["IDENTITY_PROVIDER_READ_TIMEOUT"]) == (3.0, 5.0)
    assert values["ENVIRONMENT_PROBLEMS"] == []


def test_explicit_provider_urls_and_timeouts_win():
    """An explicit URL overrides the derived one; timeouts accept decimals."""
    values = settings_in_subprocess(
        SALESFORCE_URL="http://127.0.0.1:9", TWILIO_FLEX_ENVIRONMENT="x.twil.io", TWILIO_FLEX_URL="http://127.0.0.1:8",
        IDENTITY_PROVIDER_CONNECT_TIMEOUT="0.5", IDENTITY_PROVIDER_READ_TIMEOUT="12.25",
    )
    assert (values["SALESFORCE_URL"], values["TWILIO_FLEX_URL"]) == ("http://127.0.0.1:9", "http://127.0.0.1:8")
    assert (values["IDENTITY_PROVIDER_CONNECT_TIMEOUT"], values["IDENTITY_PROVIDER_READ_TIMEOUT"]) == (0.5, 12.25)


@pytest.fixture
def env_problems(monkeypatch) -> list:
    """A fresh problem list for ``aa_site.env`` readers called by the test."""
    problems: list = []
    monkeypatch.setattr(env, "PROBLEMS", problems)
    return problems


@pytest.mark.parametrize(("raw", "expected"), [("2", 2.0), (" 0.25 ", 0.25), ("", 7.0), ("1e1", 10.0)])
def test_env_number_reads_decimals(monkeypatch, env_problems, raw, expected):
    """Integers, decimals and exponents are numbers; an empty value means the default."""
    monkeypatch.setenv("AA_TEST_NUMBER", raw)
    assert env.number("AA_TEST_NUMBER", 7.0, minimum=0.01, maximum=60) == expected
    assert env_problems == []


@pytest.mark.parametrize("raw", ["5s", "nan", "inf", "-1", "0", "61"])
def test_env_number_records_unusable_values(monkeypatch, env_problems, raw):
    """Text, NaN, infinity and out-of-range values fall back to the default and are recorded by name."""
    monkeypatch.setenv("AA_TEST_NUMBER", raw)
    assert env.number("AA_TEST_NUMBER", 7.0, minimum=0.01, maximum=60) == 7.0
    assert [name for name, _ in env_problems] == ["AA_TEST_NUMBER"]
