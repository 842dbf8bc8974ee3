"""Loads the provider that ``AUTH_OPTION`` / ``APP_AUTH_OPTION`` name, on first use.

A value is either a built-in name (``BUILT_IN``) or the dotted path of a
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
    "Skip": "auth_providers.skip.SkipProvider",
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
    path = BUILT_IN.get(value) or _builtin_ignoring_case(value) or value
    if "." not in path:
        raise ImproperlyConfigured(
            f"{setting}={value!r} is neither a built-in provider ({', '.join(BUILT_IN)}) "
            "nor a dotted path to a provider class."
        )
    try:
        provider_class = import_string(path)
    except ImportError as error:
        raise ImproperlyConfigured(f"{setting}={value!r} cannot be imported: {error}") from None
    if not (isinstance(provider_class, type) and issubclass(provider_class, BaseIdentityProvider)):
        raise ImproperlyConfigured(f"{setting}={value!r} is not a subclass of BaseIdentityProvider.")
    return provider_class()


def _builtin_ignoring_case(value: str) -> str | None:
    for name, path in BUILT_IN.items():
        if name.lower() == value.lower():
            return path
    return None


def _reset(*, setting: str, **kwargs) -> None:
    if setting in SETTINGS or setting == "DEVELOPMENT_MODE":
        _loaded.clear()


setting_changed.connect(_reset)
