"""App config for the interceptor role."""

from django.apps import AppConfig


class InterceptorConfig(AppConfig):
    name = "interceptor"
    verbose_name = "Interceptor"

    def ready(self) -> None:
        """Register the interceptor's system checks once the app registry is ready."""
        from interceptor import checks  # noqa: F401  (registers the checks)
