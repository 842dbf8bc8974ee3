"""A test password hasher that records how many hashes run at once, how many ran, and whether any ran on an
event loop's thread; chosen through ``PASSWORD_HASHERS`` (the ``settings`` fixture, or
``tests.settings_recording_hasher`` for server processes), never by patching the service.

Each hash sleeps ``RECORDING_HASHER_SECONDS`` (default 0.05) as well, standing in for PBKDF2's third of a CPU
second: a sleep releases the GIL as hashlib's PBKDF2 does, so concurrent logins overlap as they would. With
``RECORDING_HASHER_LOG`` set (server processes), every hash also appends a JSON line to that file:
``{"in_flight": hashes running when it began, itself included, "event_loop": whether its thread runs a loop}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time

from django.contrib.auth.hashers import PBKDF2PasswordHasher

_lock = threading.Lock()
in_flight = 0
peak = 0
calls = 0
on_event_loop = 0


def reset() -> None:
    """Forget what was recorded in this process."""
    global peak, calls, on_event_loop
    with _lock:
        peak = calls = on_event_loop = 0


def _running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class RecordingHasher(PBKDF2PasswordHasher):
    """PBKDF2 (few iterations) plus a sleep, counting itself."""

    algorithm = "recording_pbkdf2"
    iterations = 1000

    def encode(self, password: str, salt: str, iterations: int | None = None) -> str:
        global in_flight, peak, calls, on_event_loop
        loop = _running_loop()
        with _lock:
            in_flight += 1
            calls += 1
            peak = max(peak, in_flight)
            on_event_loop += loop
            now_in_flight = in_flight
        log = os.environ.get("RECORDING_HASHER_LOG")
        if log:
            with open(log, "a", encoding="utf-8") as file:
                file.write(json.dumps({"in_flight": now_in_flight, "event_loop": loop}) + "\n")
        try:
            time.sleep(float(os.environ.get("RECORDING_HASHER_SECONDS", "0.05")))
            return super().encode(password, salt, iterations)
        finally:
            with _lock:
                in_flight -= 1
