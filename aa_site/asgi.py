"""ASGI entry point: ``aa_site.asgi:application``.

Django is set up and the system checks run before anything is served, so a
bad setting stops start-up with its name instead of failing a request. The
interceptor role serves HTTP only; the connector adds the WebSocket routes.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aa_site.settings")
django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from aa_site import startup  # noqa: E402

startup.prepare_process()


def build_application() -> ProtocolTypeRouter:
    """The router for ``SERVICE_ROLE``."""
    routes = {"http": django_application}
    if settings.SERVICE_ROLE in ("connector", "all"):
        from connector.routing import websocket_urlpatterns

        routes["websocket"] = URLRouter(websocket_urlpatterns)
    return ProtocolTypeRouter(routes)


application = build_application()
