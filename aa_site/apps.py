"""App config for the project package: registers the start-up checks."""

from django.apps import AppConfig


class AaSiteConfig(AppConfig):
    name = "aa_site"
    verbose_name = "Agent Assist backend"

    def ready(self) -> None:
        from aa_site import checks  # noqa: F401  (registers the checks)
