"""App config for the project package: registers the start-up checks."""

from django.apps import AppConfig


class AaSiteConfig(AppConfig):
    """The project package as a Django app, so its system checks run."""

    name = "aa_site"
    verbose_name = "Agent Assist backend"

    def ready(self) -> None:
        """Register the checks once the app registry is ready (they read settings and other apps)."""
        from aa_site import checks  # noqa: F401  (registers the checks)
