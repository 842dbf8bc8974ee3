"""One object per running event loop, made on first use and closed just before its loop closes.

An asyncio client (httpx, redis-py), lock or task belongs to the event loop
that made it, so such objects are kept per loop (as channels-redis keeps its
connection pools), never made at import. Daphne runs one loop per process, so
in production a ``LoopLocal`` holds one object per process; tests run many
loops one after another.
"""

from __future__ import annotations

import asyncio
import inspect
import types
import weakref
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")

# Per loop: the closers to run before it closes. Patched into loop.close once per loop.
_closers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[Callable[[], Awaitable[None] | None]]] = (
    weakref.WeakKeyDictionary()
)


class LoopLocal(Generic[T]):
    """A value per event loop: ``get()`` makes it with ``factory`` the first time in each loop.

    ``close``, when given, is called with the value just before its loop
    closes (a coroutine function is run to completion on that loop).
    """

    def __init__(self, factory: Callable[[], T], *, close: Callable[[T], Awaitable[None] | None] | None = None) -> None:
        self._factory = factory
        self._close = close
        self._values: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = weakref.WeakKeyDictionary()

    def get(self) -> T:
        """The running loop's value, made now if this loop has none."""
        loop = asyncio.get_running_loop()
        try:
            return self._values[loop]
        except KeyError:
            pass
        value = self._values[loop] = self._factory()
        if self._close is not None:
            _close_before_loop(loop, lambda: self._close_value(loop, value))
        return value

    def replace(self) -> T:
        """Make the running loop's value anew (the old one was closed by its user)."""
        self._values.pop(asyncio.get_running_loop(), None)
        return self.get()

    def clear(self) -> None:
        """Forget every loop's value (a setting they were made from changed)."""
        self._values.clear()

    def _close_value(self, loop: asyncio.AbstractEventLoop, value: T) -> Awaitable[None] | None:
        if self._values.get(loop) is value:
            del self._values[loop]
        assert self._close is not None
        return self._close(value)


def _close_before_loop(loop: asyncio.AbstractEventLoop, closer: Callable[[], Awaitable[None] | None]) -> None:
    closers = _closers.get(loop)
    if closers is not None:
        closers.append(closer)
        return
    closers = _closers[loop] = [closer]
    original_close = loop.close

    def close(self: asyncio.AbstractEventLoop) -> None:
        pending = _closers.pop(self, [])
        try:
            if not self.is_running() and not self.is_closed():
                for run in pending:
                    result = run()
                    if inspect.isawaitable(result):
                        self.run_until_complete(result)
        finally:
            original_close()

    try:
        loop.close = types.MethodType(close, loop)  # type: ignore[method-assign]
    except AttributeError:
        # Loops implemented in C (uvloop) refuse new attributes; the weak references then
        # forget the values when the loop is collected, unclosed.
        pass
