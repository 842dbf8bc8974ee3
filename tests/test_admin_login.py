"""The admin's login throttle in process (Django's test client, the test's real Redis): lockout per user name and
per address, its page and status, its expiry, no password check while locked out, and Redis being unreachable.

Passwords are hashed by ``testing.recording_hasher`` (``PASSWORD_HASHERS``), which counts the hashes, so a test
can tell whether a refused login cost a password check. ``tests/test_admin_login_processes.py`` covers what
needs real processes: counts shared by two instances, and how many passwords are checked at once.
"""

from __future__ import annotations

import itertools
import time

import pytest
from django.core import signals
from django.core.management import call_command
from django.db import close_old_connections
from django.test import Client

from testing import processes, recording_hasher

pytestmark = pytest.mark.django_db
PASSWORD = "operator-password-0123456789"
LOGIN = "/admin/login/?next=/admin/live/"
_addresses = itertools.count(1)


@pytest.fixture(autouse=True)
def throttle(settings):
    """Small limits, the recording hasher, one trusted proxy (so a test picks each request's address)."""
    settings.PASSWORD_HASHERS = ["testing.recording_hasher.RecordingHasher"]
    settings.ADMIN_LOGIN_FAILURES_PER_USER = 3
    settings.ADMIN_LOGIN_FAILURES_PER_ADDRESS = 5
    settings.ADMIN_LOGIN_LOCKOUT_SECONDS = 900
    settings.TRUSTED_PROXY_HOPS = 1
    recording_hasher.reset()
    yield settings
    # Django's test client reconnects these after each request; aa_site.apps keeps them off (tests/test_admin.py).
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("operator", password=PASSWORD, is_staff=True)


def new_address() -> str:
    """A client address no other request of the run came from (documentation range 198.18.0.0/15)."""
    number = next(_addresses)
    return f"198.18.{number // 250}.{number % 250 + 1}"


def log_in(username: str, password: str, address: str):
    """POST the admin's login form as a client at ``address``, as Cloud Run's front end would forward it."""
    return Client().post(LOGIN, {"username": username, "password": password},
                         HTTP_X_FORWARDED_FOR=address, REMOTE_ADDR="169.254.8.1")


def assert_locked(response, by: str) -> None:
    assert response.status_code == 429, response.content[:300]
    page = response.content.decode()
    assert f"Too many failed logins {by}" in page and "more minute" in page, page
    assert 0 < int(response["Retry-After"]) <= 900


def test_a_user_name_is_locked_out_after_its_failures_from_any_addresses(staff) -> None:
    """Each guess from a new address: the name's own counter still locks it, the right password included."""
    for _ in range(2):
        response = log_in("operator", "wrong", new_address())
        assert response.status_code == 200 and "errornote" in response.content.decode()
    assert_locked(log_in("operator", "wrong", new_address()), "for this user name")
    hashed = recording_hasher.calls
    assert_locked(log_in("operator", PASSWORD, new_address()), "for this user name")
    assert_locked(log_in("operator", "wrong", new_address()), "for this user name")
    assert recording_hasher.calls == hashed  # refused before any password check
    # Other names from the same addresses are not locked.
    other = new_address()
    assert log_in("someone-else", "wrong", other).status_code == 200


def test_an_address_is_locked_out_after_failures_for_any_names(staff) -> None:
    address = new_address()
    for number in range(4):
        assert log_in(f"guess-{number}", "wrong", address).status_code == 200
    assert_locked(log_in("guess-4", "wrong", address), "from this address")
    hashed = recording_hasher.calls
    assert_locked(log_in("operator", PASSWORD, address), "from this address")
    assert recording_hasher.calls == hashed
    # The operator, from elsewhere, is not locked out: neither their name nor that address failed.
    response = log_in("operator", PASSWORD, new_address())
    assert response.status_code == 302 and response["Location"] == "/admin/live/"


def test_ipv6_addresses_of_one_slash_64_count_as_one(staff) -> None:
    for number in range(4):
        assert log_in(f"v6-guess-{number}", "wrong", f"2001:db8:aa:1::{number + 1}").status_code == 200
    assert_locked(log_in("v6-guess-4", "wrong", "2001:db8:aa:1:ffff::9"), "from this address")
    assert log_in("v6-guess-5", "wrong", "2001:db8:aa:2::1").status_code == 200


def test_the_lockout_ends_after_its_cool_off(staff, settings) -> None:
    settings.ADMIN_LOGIN_LOCKOUT_SECONDS = 1
    for _ in range(3):
        response = log_in("operator", "wrong", new_address())
    assert_locked(response, "for this user name")
    assert response["Retry-After"] == "1" and "1 more minute" in response.content.decode()
    deadline = time.monotonic() + 15
    response = log_in("operator", PASSWORD, new_address())
    while response.status_code == 429 and time.monotonic() < deadline:
        time.sleep(0.2)
        response = log_in("operator", PASSWORD, new_address())
    assert response.status_code == 302 and response["Location"] == "/admin/live/"


def test_attempts_while_locked_out_do_not_prolong_it(staff, settings) -> None:
    settings.ADMIN_LOGIN_LOCKOUT_SECONDS = 2
    for _ in range(3):
        response = log_in("operator", "wrong", new_address())
    assert_locked(response, "for this user name")
    deadline = time.monotonic() + 15
    while log_in("operator", "wrong", new_address()).status_code == 429 and time.monotonic() < deadline:
        time.sleep(0.1)  # hammering the whole time
    assert log_in("operator", PASSWORD, new_address()).status_code == 302


def test_a_successful_login_clears_its_user_names_failures(staff) -> None:
    for _ in range(2):
        log_in("operator", "wrong", new_address())
    assert log_in("operator", PASSWORD, new_address()).status_code == 302
    for _ in range(2):
        assert log_in("operator", "wrong", new_address()).status_code == 200
    assert_locked(log_in("operator", "wrong", new_address()), "for this user name")


def test_an_operator_can_clear_a_lockout_with_axes_commands(staff) -> None:
    address = new_address()
    for _ in range(3):
        response = log_in("operator", "wrong", address)
    assert_locked(response, "for this user name")
    call_command("axes_reset_username", "operator")
    assert log_in("operator", PASSWORD, new_address()).status_code == 302


def test_without_redis_logins_are_refused_unchecked(staff, settings) -> None:
    """Failed logins could not be counted: 503 with its reason, no password check, no traceback."""
    settings.REDISPORT = processes.free_port()  # nothing listens there
    hashed = recording_hasher.calls
    response = log_in("operator", PASSWORD, new_address())
    assert response.status_code == 503
    assert "the failed-login counters (Redis) cannot be reached" in response.content.decode()
    assert response["Retry-After"] == "30"
    assert recording_hasher.calls == hashed


def test_the_login_form_itself_is_not_throttled(staff) -> None:
    address = new_address()
    for number in range(5):
        response = log_in(f"guess-{number}", "wrong", address)
    assert_locked(response, "from this address")
    assert Client().get("/admin/login/", HTTP_X_FORWARDED_FOR=address).status_code == 200
