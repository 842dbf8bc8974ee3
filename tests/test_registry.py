"""``auth_providers.registry``: built-in names, dotted paths, clear errors naming the setting, and the cache."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from auth_providers import registry
from auth_providers.base import BaseIdentityProvider, Identity
from auth_providers.skip import SkipProvider


class CustomProvider(BaseIdentityProvider):
    """An operator's own provider, named by dotted path."""

    name = "Custom"

    async def authenticate(self, *, token: str, body: dict[str, Any]) -> Identity:
        return Identity(user="custom")


class OtherProvider(CustomProvider):
    """A second provider, to tell a reloaded provider from a cached one."""

    name = "Other"


class NotAProvider:
    """Has ``authenticate`` but does not subclass ``BaseIdentityProvider``."""

    async def authenticate(self, *, token: str, body: dict[str, Any]) -> Identity:
        return Identity(user="")


def not_a_class() -> None:
    """A function where a class is expected."""


@pytest.mark.parametrize("value", ["Skip", "skip", "SKIP", "sKiP"])
def test_built_in_name_is_case_insensitive(value: str) -> None:
    """Built-in names match in any case (operators type them by hand)."""
    assert isinstance(registry.load_provider("AUTH_OPTION", value), SkipProvider)


def test_built_in_by_dotted_path() -> None:
    """A built-in can also be named by its dotted path."""
    assert isinstance(registry.load_provider("AUTH_OPTION", "auth_providers.skip.SkipProvider"), SkipProvider)


def test_dotted_path_loads_a_custom_provider() -> None:
    """A dotted path to a ``BaseIdentityProvider`` subclass gives an instance of it."""
    provider = registry.load_provider("AUTH_OPTION", f"{__name__}.CustomProvider")
    assert type(provider) is CustomProvider


def test_empty_value_means_no_provider() -> None:
    """An empty setting loads nothing (registration disabled)."""
    assert registry.load_provider("AUTH_OPTION", "") is None


@pytest.mark.parametrize("path", [f"{__name__}.NotAProvider", f"{__name__}.not_a_class", "collections.OrderedDict"])
def test_not_a_provider_is_refused_naming_the_setting(path: str) -> None:
    """Anything but a ``BaseIdentityProvider`` subclass is ``ImproperlyConfigured`` naming setting and value."""
    with pytest.raises(ImproperlyConfigured) as caught:
        registry.load_provider("APP_AUTH_OPTION", path)
    assert "APP_AUTH_OPTION" in str(caught.value)
    assert path in str(caught.value)
    assert "BaseIdentityProvider" in str(caught.value)


@pytest.mark.parametrize("path", ["tests.no_such_module.Provider", f"{__name__}.NoSuchClass", "nosuchpackage.x"])
def test_import_error_is_refused_naming_the_setting(path: str) -> None:
    """A path that cannot be imported is ``ImproperlyConfigured``, not an ImportError at the first request."""
    with pytest.raises(ImproperlyConfigured, match="cannot be imported") as caught:
        registry.load_provider("AUTH_OPTION", path)
    assert "AUTH_OPTION" in str(caught.value)


@pytest.mark.parametrize("value", ["Salesforce-ish", "Nonsense", "okta"])
def test_unknown_plain_name_lists_the_built_ins(value: str) -> None:
    """A name that is neither built in nor dotted is refused, listing what is built in."""
    with pytest.raises(ImproperlyConfigured, match="neither a built-in") as caught:
        registry.load_provider("AUTH_OPTION", value)
    assert "Skip" in str(caught.value)
    assert "AUTH_OPTION" in str(caught.value)


def test_get_provider_caches_the_instance(settings: Any) -> None:
    """The provider is built once per setting and reused."""
    settings.AUTH_OPTION = f"{__name__}.CustomProvider"
    first = registry.get_provider("AUTH_OPTION")
    assert registry.get_provider("AUTH_OPTION") is first
    assert registry.get_provider() is first


def test_get_provider_is_per_setting(settings: Any) -> None:
    """AUTH_OPTION and APP_AUTH_OPTION load independently."""
    settings.AUTH_OPTION = f"{__name__}.CustomProvider"
    settings.APP_AUTH_OPTION = ""
    assert type(registry.get_provider("AUTH_OPTION")) is CustomProvider
    assert registry.get_provider("APP_AUTH_OPTION") is None


@pytest.mark.parametrize("setting", ["AUTH_OPTION", "APP_AUTH_OPTION"])
def test_cache_resets_when_the_setting_changes(settings: Any, setting: str) -> None:
    """Changing the setting (setting_changed) makes the next lookup load the new provider."""
    setattr(settings, setting, f"{__name__}.CustomProvider")
    assert type(registry.get_provider(setting)) is CustomProvider
    setattr(settings, setting, f"{__name__}.OtherProvider")
    assert type(registry.get_provider(setting)) is OtherProvider
    setattr(settings, setting, "")
    assert registry.get_provider(setting) is None


def test_cache_resets_when_development_mode_changes(settings: Any) -> None:
    """Development mode is part of what a provider may depend on, so changing it drops the cache too."""
    settings.AUTH_OPTION = f"{__name__}.CustomProvider"
    first = registry.get_provider()
    settings.DEVELOPMENT_MODE = not settings.DEVELOPMENT_MODE
    assert registry.get_provider() is not first


def test_unrelated_setting_keeps_the_cache(settings: Any) -> None:
    """Other settings do not reload providers."""
    settings.AUTH_OPTION = f"{__name__}.CustomProvider"
    first = registry.get_provider()
    settings.SALESFORCE_DOMAIN = "test.salesforce.com"
    assert registry.get_provider() is first


def test_get_provider_raises_for_a_bad_setting(settings: Any) -> None:
    """A bad value surfaces as ``ImproperlyConfigured`` on lookup too (the checks normally stop it earlier)."""
    settings.AUTH_OPTION = "Nonsense"
    with pytest.raises(ImproperlyConfigured):
        registry.get_provider()
