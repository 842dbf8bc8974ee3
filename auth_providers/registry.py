"""Loads the provider that ``AUTH_OPTION`` / ``APP_AUTH_OPTION`` name, on first use.

A value is either a built-in name (``BUILT_IN``; ``BUILT_IN_APP`` for
``APP_AUTH_OPTION``) or the dotted path of a
``BaseIdentityProvider`` subclass, loaded like Django's authentication
backends. The loaded instance is cached and dropped when the setting changes.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from auth_providers.base import BaseIdentityProvider

BUILT_IN = {
    "Salesforce": "auth_providers.salesforce.SalesforceProvider",
    "SalesforceLWC": "auth_providers.salesforce_lwc.SalesforceLWCProvider",
    "GenesysCloud": "auth_providers.genesys_cloud.GenesysCloudProvider",
    "Twilio": "auth_providers.twilio.TwilioProvider",
    "Five9": "auth_providers.five9.Five9Provider",
    "Skip": "auth_providers.skip.SkipProvider",
}
# APP_AUTH_OPTION judges application credentials, not a desktop's token: the
# same name can mean another check there (Twilio: account credentials, not a Flex token).
BUILT_IN_APP = {
    **BUILT_IN,
    "Twilio": "auth_providers.twilio.TwilioAppProvider",
}
SETTINGS = ("AUTH_OPTION", "APP_AUTH_OPTION")

_loaded: dict[str, BaseIdentityProvider | None] = {}


def get_provider(setting: str = "AUTH_OPTION") -> BaseIdentityProvider | None:
    """Return the configured provider, or ``None`` when the setting is empty (nobody may register)."""
    if setting not in _loaded:
        _loaded[setting] = load_provider(setting, getattr(settings, setting))
    return _loaded[setting]


def load_provider(setting: str, value: str) -> BaseIdentityProvider | None:
    """Instantiate the provider ``value`` names; ``ImproperlyConfigured`` names ``setting`` on failure."""
    if not value:
        return None
    built_in = BUILT_IN_APP if setting == "APP_AUTH_OPTION" else BUILT_IN
    path = built_in.get(value) or _builtin_ignoring_case(built_in, value) or value
    if "." not in path:
        raise ImproperlyConfigured(
            f"{setting}={value!r} is neither a built-in provider ({', '.join(built_in)}) "
            "nor a dotted path to a provider class."
        )
    try:
        provider_class = import_string(path)
    except ImportError as error:
        raise ImproperlyConfigured(f"{setting}={value!r} cannot be imported: {error}") from None
    if not (isinstance(provider_class, type) and issubclass(provider_class, BaseIdentityProvider)):
        raise ImproperlyConfigured(f"{setting}={value!r} is not a subclass of BaseIdentityProvider.")
    return provider_class()


def _builtin_ignoring_case(built_in: dict[str, str], value: str) -> str | None:
    for name, path in built_in.items():
        if name.lower() == value.lower():
            return path
    return None


def _reset(*, setting: str, **kwargs) -> None:
    if setting in SETTINGS or setting == "DEVELOPMENT_MODE":
        _loaded.clear()


setting_changed.connect(_reset)
