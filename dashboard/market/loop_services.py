"""One instance of each per-process service for the running event loop, and their tasks.

Daphne runs one event loop per process, so "one per loop" is "one per process" in
production, while each test's event loop gets a fresh set (futures, tasks and asyncio
clients belong to one loop and must not leak into the next). Services are built by
their factory on first use (``services.get(factory, *args)``), so a factory reads its settings
once. Like channels' ``ChannelLayerManager``, the registry forgets every service when a
setting changes (Django's ``setting_changed``, sent by ``override_settings`` and
pytest-django's ``settings`` fixture): the next ``get`` builds them from the new values,
and nothing needs to compare settings on every call or be reset by hand.

``BackgroundTask`` is the other half of most services: a task that runs while the
service has work, started again by the next registration once it has ended.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from django.core.signals import setting_changed

T = TypeVar("T")


class LoopServices:
    """Services of each running event loop, keyed by the factory that builds them."""

    def __init__(self) -> None:
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, Any]] = (
            weakref.WeakKeyDictionary()
        )
        # Sync code (a sync consumer's thread) may ask through async_to_sync while the loop asks too.
        self._lock = threading.Lock()
        setting_changed.connect(self.reset, weak=False)

    def get(self, factory: Callable[..., T], *args: Any) -> T:
        """The running loop's ``factory(*args)``, built on first use (``args`` are part of the key)."""
        loop = asyncio.get_running_loop()
        key = (factory, *args)
        with self._lock:
            services = self._by_loop.get(loop)
            if services is None:
                services = self._by_loop[loop] = {}
            found = services.get(key)
            if found is None:
                found = services[key] = factory(*args)
            return found

    def reset(self, **_: Any) -> None:
        """Forget every service: the next ``get`` builds from the settings then in force."""
        with self._lock:
            self._by_loop = weakref.WeakKeyDictionary()


services = LoopServices()


class BackgroundTask:
    """A service's task: started on demand, again once the previous run has ended.

    ``isolated`` runs it in a context of its own, for a task that serves many callers
    and must not carry the context variables of whichever started it.
    """

    def __init__(self, run: Callable[[], Coroutine[Any, Any, None]], *, isolated: bool = False) -> None:
        self._run = run
        self._isolated = isolated
        self.task: asyncio.Task[None] | None = None

    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def ensure(self) -> asyncio.Task[None]:
        """Start the task unless it is running; returns it."""
        if self.task is None or self.task.done():
            context = contextvars.Context() if self._isolated else None
            self.task = asyncio.get_running_loop().create_task(self._run(), context=context)
        return self.task
