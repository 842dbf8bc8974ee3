"""App config for the identity providers."""

from django.apps import AppConfig


class AuthProvidersConfig(AppConfig):
    name = "auth_providers"
    verbose_name = "Identity providers"

    def ready(self) -> None:
        from auth_providers import checks  # noqa: F401  (registers the checks)
