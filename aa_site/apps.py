"""App configs: the project package's (registers the start-up checks, trims per-request work), the admin's and
daphne's.

Nothing here imports the project's modules at load time: ``INSTALLED_APPS`` loads this module before the
app registry is ready, and the admin site (``aa_site.admin_site``) reads the models of the apps.
"""

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


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


class DaphneRunserverConfig(AppConfig):
    """daphne as an app for its ASGI ``manage.py runserver`` only, without daphne's own config.

    Its config imports daphne's server, and with it Twisted, at set-up: a quarter of a second of every
    start of the image, whose server is uvicorn. The command imports that server itself when it runs, and
    ``python -m aa_site.serve`` imports it before Django is set up, so the reactor is still installed first.
    """

    name = "daphne"
    default = False


class OperatorAdminConfig(admin_apps.AdminConfig):
    """Django's admin with the operators' site (``aa_site.admin_site``), loaded once the apps are ready."""

    default = False  # named in INSTALLED_APPS; ``aa_site``'s own config is AaSiteConfig

    @property
    def default_site(self) -> str:
        """The operators' site, except on the interceptor: it serves no admin (``aa_site.urls``), and the
        operators' site loads the connector's modules for its live view, which an interceptor's cold start
        need not pay for. Django's own site holds the same registrations, so the same checks run."""
        from django.conf import settings

        if settings.SERVICE_ROLE == "interceptor":
            return "django.contrib.admin.sites.AdminSite"
        return "aa_site.admin_site.OperatorAdminSite"
