"""ASGI entry point: ``aa_site.asgi:application``.

Django is set up and the system checks run before anything is served, so a
bad setting stops start-up with its name instead of failing a request. The
interceptor role serves HTTP only, its push endpoints ahead of Django
(``interceptor.fast_push``); the connector adds the WebSocket routes.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aa_site.settings")
django_application = get_asgi_application()

from asgiref.typing import ASGIReceiveCallable, ASGISendCallable, Scope  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import re_path  # noqa: E402

from aa_site import startup  # noqa: E402

startup.prepare_process()


async def refuse_websocket(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """Close a WebSocket handshake unaccepted (daphne answers 403).

    Serves the interceptor (no WebSocket routes) and unknown paths on a
    connector: without it, Channels' routers raise for each such attempt, a
    500 and a traceback in the log per probe.
    """
    await receive()  # websocket.connect
    await send({"type": "websocket.close"})


def build_application() -> ProtocolTypeRouter:
    """The router for ``SERVICE_ROLE``."""
    routes = {"http": django_application, "websocket": refuse_websocket}
    if settings.SERVICE_ROLE in ("connector", "all"):
        from connector.desktops.origin import BrowserOriginCheck
        from connector.desktops.polling.http import PollingTransport
        from connector.desktops.routing import websocket_urlpatterns

        # Socket.IO's long-polling transport, ahead of Django like the push endpoints.
        routes["http"] = PollingTransport(routes["http"])

        # Browsers skip CORS for WebSockets: check a handshake's Origin before any consumer runs.
        routes["websocket"] = BrowserOriginCheck(URLRouter([*websocket_urlpatterns, re_path(r"", refuse_websocket)]))
    if settings.SERVICE_ROLE in ("interceptor", "all"):
        # The push endpoints, the interceptor's hot path, are answered ahead of Django (see that module).
        from interceptor.fast_push import FastPush

        routes["http"] = FastPush(routes["http"])
    if routes["http"] is not django_application:
        from aa_site.middleware import TraceASGIMiddleware

        # The trace is set around the handlers ahead of Django too, which answer before its middleware runs.
        routes["http"] = TraceASGIMiddleware(routes["http"])
    return ProtocolTypeRouter(routes)


application = build_application()

from aa_site import gc_tuning  # noqa: E402

# Last: everything start-up made is in place, so it is what the collector freezes.
gc_tuning.tune_after_start_up()
