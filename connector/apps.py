"""App config for the connector role."""

from django.apps import AppConfig


class ConnectorConfig(AppConfig):
    name = "connector"
    verbose_name = "Connector"

    def ready(self) -> None:
        """Register the connector's system checks once the app registry is ready."""
        from connector import checks  # noqa: F401  (registers the checks)
