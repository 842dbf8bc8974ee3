"""App config for the identity providers."""

from django.apps import AppConfig


class AuthProvidersConfig(AppConfig):
    """The identity providers as a Django app, so their system checks run."""

    name = "auth_providers"
    verbose_name = "Identity providers"

    def ready(self) -> None:
        """Register the checks once the app registry is ready."""
        from auth_providers import checks  # noqa: F401  (registers the checks)
