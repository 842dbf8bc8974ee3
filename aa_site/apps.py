"""App config for the project package: registers the start-up checks, trims per-request work."""

from django.apps import AppConfig


class AaSiteConfig(AppConfig):
    name = "aa_site"
    verbose_name = "Agent Assist backend"

    def ready(self) -> None:
        """Register the system checks; drop Django's per-request database and cache hooks."""
        from django.core import signals
        from django.core.cache import close_caches
        from django.core.handlers.base import reset_urlconf
        from django.db import close_old_connections, reset_queries

        from aa_site import checks  # noqa: F401  (registers the checks)

        # No request touches a database or a cache (state lives in Redis), yet these
        # sync receivers made every async request hop to a fresh thread and back twice
        # (asgiref's ThreadSensitiveContext): about a tenth of the interceptor's time
        # per push. Reconnect them if a view ever uses the ORM.
        signals.request_started.disconnect(reset_queries)
        signals.request_started.disconnect(close_old_connections)
        signals.request_finished.disconnect(close_old_connections)
        signals.request_finished.disconnect(close_caches)
        # Undoes a per-request urlconf (request.urlconf), which no middleware here sets.
        signals.request_finished.disconnect(reset_urlconf)
