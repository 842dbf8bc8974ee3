"""A real headless Chromium (Debian's ``chromium``) driven by Playwright for Python, for page tests.

Playwright's own browser downloads are never used: the browser is the system
package (``.ci/run`` installs it), launched with networking extras switched
off so the only traffic is to the servers a test starts on 127.0.0.1. A
missing browser fails the test with the command to install it; it does not skip.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from playwright.async_api import BrowserContext, ConsoleMessage, Page, Request, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGUMENTS = [
    "--headless=new",
    "--no-sandbox",  # tests run as root in containers, where the sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Generous: machines are shared. Only for waiting, never asserted on.
WAIT_MS = 20_000


@dataclass
class BrowserPage:
    """A page plus everything it did that a test may want to assert on afterwards."""

    page: Page
    requests: list[str] = field(default_factory=list)  # every URL the page requested, WebSockets included
    console_errors: list[str] = field(default_factory=list)  # console errors, CSP refusals among them
    page_errors: list[str] = field(default_factory=list)  # uncaught exceptions in the page's scripts

    def problems(self) -> list[str]:
        """Console errors and uncaught exceptions, in one list (empty for a healthy page)."""
        return [*self.console_errors, *self.page_errors]


def chromium_path() -> Path:
    """The system Chromium; raise naming the install command when it is missing."""
    if not CHROMIUM.exists():
        raise RuntimeError(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium); "
            ".ci/run installs it in CI. These tests fail rather than skip without it."
        )
    return CHROMIUM


@contextlib.asynccontextmanager
async def chromium_page() -> AsyncIterator[BrowserPage]:
    """A fresh headless Chromium (own temporary profile) with one page that records its traffic and errors."""
    executable = chromium_path()
    with tempfile.TemporaryDirectory(prefix="aa-chromium-") as profile:
        async with async_playwright() as playwright:
            context: BrowserContext = await playwright.chromium.launch_persistent_context(
                profile,
                executable_path=str(executable),
                args=CHROMIUM_ARGUMENTS,
                headless=True,
                viewport={"width": 1280, "height": 900},
            )
            try:
                page = context.pages[0] if context.pages else await context.new_page()
                page.set_default_timeout(WAIT_MS)
                recorded = BrowserPage(page=page)
                page.on("request", lambda request: _record_request(recorded, request))
                page.on("websocket", lambda socket: recorded.requests.append(socket.url))
                page.on("console", lambda message: _record_console(recorded, message))
                page.on("pageerror", lambda error: recorded.page_errors.append(str(error)))
                yield recorded
            finally:
                await context.close()


def _record_request(recorded: BrowserPage, request: Request) -> None:
    recorded.requests.append(request.url)


def _record_console(recorded: BrowserPage, message: ConsoleMessage) -> None:
    if message.type == "error":
        recorded.console_errors.append(message.text)
