"""Django's session, user, message and framing middleware, and django-axes' lockout answer, run for the
admin's paths (``/admin/``) only.

The admin needs a session, ``request.user`` and messages; nothing else the
service serves does, and under ASGI each of those middlewares costs a thread
hop per request (see ``aa_site.middleware``). So they are chained here and
entered only for paths under ``ADMIN_PREFIX``. Around an admin request the
database connection is checked and closed the way Django's request signals
would (``aa_site.apps`` disconnects those signals for every other request).
"""

from __future__ import annotations

from asgiref.sync import markcoroutinefunction, sync_to_async
from axes.middleware import AxesMiddleware
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponseBase
from django.middleware.clickjacking import XFrameOptionsMiddleware

ADMIN_PREFIX = "/admin/"
# AxesMiddleware last, as django-axes asks: it turns a locked-out login into its 429 page (aa_site.admin_login).
ADMIN_MIDDLEWARE = (SessionMiddleware, AuthenticationMiddleware, MessageMiddleware, XFrameOptionsMiddleware,
                    AxesMiddleware)


class AdminMiddleware:
    """Run ``ADMIN_MIDDLEWARE`` around requests under ``ADMIN_PREFIX``; pass every other request straight on."""

    sync_capable = False
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        chain = get_response
        for middleware in reversed(ADMIN_MIDDLEWARE):
            chain = middleware(chain)
        self.admin_chain = chain
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if not request.path_info.startswith(ADMIN_PREFIX):
            return await self.get_response(request)
        # Thread-sensitive: the same thread the admin's ORM calls run in, so it is that connection.
        await sync_to_async(close_old_connections)()
        try:
            return await self.admin_chain(request)
        finally:
            await sync_to_async(close_old_connections)()
