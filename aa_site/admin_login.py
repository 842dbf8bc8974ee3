"""The admin's login: no password check for a locked-out user name or address, and few password checks at once.

A password check costs about a third of a CPU second (PBKDF2, by design). Django's login view is synchronous,
so it runs in a worker thread, never on the event loop; but every login POST gets a thread of its own, and
eight at once took both cores and delayed pushes to desktops. ``AdminLoginBackend`` therefore:

1. asks django-axes whether this user name or address is locked out (``aa_site.admin_lockout``, counted in
   Redis across instances); if so, it refuses before any hashing (axes answers 429, ``lockout_response``).
   A POST already locked out is answered before the form is even built (``refuse_if_locked_out``): a storm
   of them costs a counter read and a small page each;
2. checks the password (Django's ``ModelBackend``, which also hashes for an unknown user name, so that
   timing tells nothing) holding one of ``ADMIN_LOGIN_CONCURRENCY`` slots per process (1: at most one
   core hashes). A login finding none free waits up to ``ADMIN_LOGIN_WAIT_SECONDS``, behind at most
   ``ADMIN_LOGIN_QUEUE`` others; beyond either it is answered 503 "busy, try again" (``LoginBusy``),
   uncounted, its password unchecked.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

from axes.backends import AxesStandaloneBackend
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_credentials
from django.conf import settings
from django.contrib import admin
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.forms import UsernameField
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from aa_site.admin_lockout import Lockout, LoginThrottleUnavailable

logger = logging.getLogger(__name__)

REFUSAL_TEMPLATE = "aa_admin/login_refused.html"
BUSY_WARNING_INTERVAL = 60.0
# Seconds a client is told to wait when Redis, which counts failed logins, is unreachable.
THROTTLE_UNAVAILABLE_RETRY_SECONDS = 30


class LoginBusy(Exception):
    """Every password-check slot of this process is taken and the login could not wait for one."""


class AdminLoginBackend(AxesStandaloneBackend, ModelBackend):
    """``AUTHENTICATION_BACKENDS``: axes' lockout check, then ``ModelBackend`` in a bounded number of threads."""

    def authenticate(self, request: HttpRequest | None, username: str | None = None, password: str | None = None,
                     **kwargs):
        """The user, or ``None``; raises ``PermissionDenied`` when locked out, ``LoginBusy`` when no slot is free.

        Without a request (``authenticate()`` called from code or a shell, never the login form) there is no
        client address to count against, and axes' check is skipped; the password check stays bounded.
        """
        if request is not None:
            super().authenticate(request, username, password, **kwargs)  # raises when locked out
        with _slots().held():
            return ModelBackend.authenticate(self, request, username, password, **kwargs)


class _HashingSlots:
    """``size`` password checks at once; a few more may wait a little, the rest are refused at once."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._free = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._waiting = 0

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if not self._free.acquire(blocking=False):
            with self._lock:
                if self._waiting >= settings.ADMIN_LOGIN_QUEUE:
                    raise LoginBusy()
                self._waiting += 1
            try:
                acquired = self._free.acquire(timeout=settings.ADMIN_LOGIN_WAIT_SECONDS)
            finally:
                with self._lock:
                    self._waiting -= 1
            if not acquired:
                raise LoginBusy()
        try:
            yield
        finally:
            self._free.release()


_current_slots: _HashingSlots | None = None
_slots_lock = threading.Lock()


def _slots() -> _HashingSlots:
    """This process's slots, remade if ``ADMIN_LOGIN_CONCURRENCY`` changed (tests change it)."""
    global _current_slots
    with _slots_lock:
        if _current_slots is None or _current_slots.size != settings.ADMIN_LOGIN_CONCURRENCY:
            _current_slots = _HashingSlots(settings.ADMIN_LOGIN_CONCURRENCY)
        return _current_slots


def refuse_if_locked_out(request: HttpRequest) -> HttpResponse | None:
    """For a login POST whose user name or address is locked out: the lockout page, before the login form is
    built or rendered (a client hammering a lockout costs a counter read and a small page, nothing more)."""
    if request.method != "POST":
        return None
    username = UsernameField().to_python(request.POST.get(settings.AXES_USERNAME_FORM_FIELD))  # as the form has it
    if AxesProxyHandler.is_allowed(request, get_credentials(username)):
        return None
    return lockout_response(request)


def lockout_response(request: HttpRequest, *args, **kwargs) -> HttpResponse:
    """``AXES_LOCKOUT_CALLABLE``: 429 with ``Retry-After`` and a page saying what is locked and for how long."""
    lockout = getattr(request, "aa_admin_lockout", None) or Lockout(
        "user name or address", settings.ADMIN_LOGIN_LOCKOUT_SECONDS)
    minutes = math.ceil(lockout.seconds_left / 60)
    until = datetime.now(timezone.utc) + timedelta(seconds=lockout.seconds_left)
    where = "for this user name" if lockout.by == "user name" else (
        "from this address" if lockout.by == "address" else "for this user name or from this address")
    message = (f"Too many failed logins {where}. Logins {where} are refused for "
               f"{minutes} more minute{'s' if minutes != 1 else ''} (until {until:%H:%M} UTC); try again then.")
    return _refusal(request, "Too many failed logins", message, status=429, retry_after=lockout.seconds_left)


def refusal_response(request: HttpRequest, refused: Exception) -> HttpResponse:
    """503 for a login that was neither checked nor counted: no free slot, or no Redis to count in."""
    if isinstance(refused, LoginThrottleUnavailable):
        return _refusal(request, "Logins paused",
                        "Logins are paused: the failed-login counters (Redis) cannot be reached right now. "
                        "Try again in a minute.", status=503, retry_after=THROTTLE_UNAVAILABLE_RETRY_SECONDS)
    _warn_busy()
    retry = max(1, math.ceil(settings.ADMIN_LOGIN_WAIT_SECONDS))
    return _refusal(request, "Busy", "The admin is busy checking other logins. Your password was not checked; "
                                     "try again in a few seconds.", status=503, retry_after=retry)


#: What ``OperatorAdminSite.login`` turns into ``refusal_response``.
REFUSALS = (LoginBusy, LoginThrottleUnavailable)


def _refusal(request: HttpRequest, title: str, message: str, *, status: int, retry_after: int) -> HttpResponse:
    context = {"site_header": admin.site.site_header, "site_title": admin.site.site_title, "title": title,
               "message": message, "login_url": reverse("admin:login")}
    response = render(request, REFUSAL_TEMPLATE, context, status=status)
    response["Retry-After"] = str(retry_after)
    # Django would log an ERROR with the request for each 503: a storm's worth. Its access line remains
    # (ACCESS_LOG), and the causes are logged at most once a minute (_warn_busy, aa_site.admin_lockout).
    response._has_been_logged = True
    return response


_last_busy_warning = -math.inf


def _warn_busy() -> None:
    global _last_busy_warning
    now = time.monotonic()
    if now - _last_busy_warning >= BUSY_WARNING_INTERVAL:
        _last_busy_warning = now
        logger.warning("Admin logins answered busy: all %s password-check slots taken and %s waiting",
                       settings.ADMIN_LOGIN_CONCURRENCY, settings.ADMIN_LOGIN_QUEUE)
