"""How a server stops within a bound: on SIGTERM or Ctrl-C it lets the agent runs under
way finish for up to its shutdown timeout, then stops those still answering. A stopped
run is kept as a failed run with the text it had streamed (its ``error`` is
:data:`~noted.agent.agent.STOPPED_RUN_ERROR`), and its caller is told: an ``error`` event
ends its stream, or a 503 answers a run that was not streamed."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from types import FrameType
from typing import Any, Final

from noted.agent.agent import STOPPED_RUN_ERROR

__all__ = [
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "SAVE_WAIT_S",
    "Lifespan",
    "OpenRuns",
    "Shutdown",
    "bounded",
    "on_stop_signals",
]

Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]

DEFAULT_SHUTDOWN_TIMEOUT: Final = 25
"""Seconds a stopping server waits for its runs: under the grace period a platform gives
a process between SIGTERM and SIGKILL (30 s on Kubernetes, 10 s for ``docker stop``)."""

SAVE_WAIT_S: Final = 2
"""Seconds stopped runs get to be saved and to tell their callers, before the HTTP server
closes every connection still open."""

STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)

log = logging.getLogger("noted.server")


class OpenRuns:
    """The agent runs a server answers, by the tasks waiting for them (for a run's result,
    or its stream's next event); :meth:`stop` cancels those, with
    :data:`~noted.agent.agent.STOPPED_RUN_ERROR` as the reason, and each task as soon as it
    waits again (a stream that was sending an event)."""

    def __init__(self) -> None:
        self._waiting: set[asyncio.Task[Any]] = set()
        self._stopped: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()
        self.stopping = False

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """The current task waits for a run inside this block."""
        task = asyncio.current_task()
        assert task is not None  # a route, or a response's stream: always in a task
        self._waiting.add(task)
        try:
            if self.stopping:
                self._stop(task)
            yield
        finally:
            self._waiting.discard(task)

    @property
    def answering(self) -> int:
        """How many runs are being waited for."""
        return len(self._waiting)

    def stopped(self) -> bool:
        """Whether the ``CancelledError`` being handled in the current task is this
        server's stop; if so, the cancel is taken back: the task goes on to say so."""
        task = asyncio.current_task()
        if task is None or task not in self._stopped:
            return False
        self._stopped.discard(task)
        task.uncancel()
        return True

    def stop(self) -> None:
        """Stop every run under way, and each one that is waited for from now on."""
        self.stopping = True
        for task in list(self._waiting):
            self._stop(task)

    def _stop(self, task: asyncio.Task[Any]) -> None:
        if task not in self._stopped:
            self._stopped.add(task)
            task.cancel(STOPPED_RUN_ERROR)

    async def ended(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until no run is waited for (those stopped have
        been saved); False if some still is."""
        deadline = time.monotonic() + timeout
        while self._waiting and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return not self._waiting


class Shutdown:
    """A server's stop, bounded by ``timeout`` seconds from its signal: :meth:`begin`
    (at the signal) calls the hooks given to :meth:`on_begin` and stops ``runs`` once the
    time is up; :meth:`left` is what remains of it."""

    def __init__(self, runs: OpenRuns, timeout: float) -> None:
        self.runs = runs
        self.timeout = timeout
        self.began: float | None = None
        self._hooks: list[Callable[[], None]] = []
        self._timer: asyncio.TimerHandle | None = None

    def on_begin(self, hook: Callable[[], None]) -> None:
        if hook not in self._hooks:
            self._hooks.append(hook)

    def begin(self) -> None:
        """The server starts to stop (called on its event loop); called again, as a second
        Ctrl-C does, nothing more happens (the HTTP server quits at once then)."""
        if self.began is not None:
            return
        self.began = time.monotonic()
        for hook in self._hooks:
            hook()
        self._timer = asyncio.get_running_loop().call_later(self.timeout, self._time_up)

    def _time_up(self) -> None:
        if self.runs.answering:
            log.warning(
                "stopping %d agent run(s) still answering after the shutdown timeout (%s s): "
                "each is kept as a failed run with the text it had streamed",
                self.runs.answering,
                self.timeout,
            )
        self.runs.stop()

    def end(self) -> None:
        """The server has stopped: no run is to be stopped later."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None

    def reset(self) -> None:
        """Served (again): nothing is stopping."""
        self.end()
        self.began = None
        self.runs.stopping = False

    def left(self) -> float:
        """Seconds left of the bound (all of it when no signal was seen)."""
        if self.began is None:
            return self.timeout
        return max(self.began + self.timeout - time.monotonic(), 0.0)


def on_stop_signals(hook: Callable[[], None]) -> Callable[[], None]:
    """Call ``hook`` on the running event loop when SIGINT or SIGTERM arrives, then the
    handler the HTTP server installed for it (which starts its own graceful shutdown).
    Returns what puts those handlers back. Only in the main thread, and only over a
    handler written in Python: a signal left to its default action is left alone."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}

    def handler(sig: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(hook)
        before = previous[signal.Signals(sig)]
        if callable(before):
            before(sig, frame)

    hooked = [sig for sig, before in previous.items() if callable(before)]
    for sig in hooked:
        signal.signal(sig, handler)

    def restore() -> None:
        for sig in hooked:
            if signal.getsignal(sig) is handler:
                signal.signal(sig, previous[sig])

    return restore


def bounded(shutdown: Shutdown, inner: Lifespan) -> Lifespan:
    """An app's lifespan with its stop bounded: from SIGTERM or Ctrl-C on, the agent runs
    under way have ``shutdown.timeout`` seconds to finish; then they are stopped, and get
    :data:`SAVE_WAIT_S` to be kept as failed runs and to tell their callers."""

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        shutdown.reset()
        restore = on_stop_signals(shutdown.begin)
        try:
            async with inner(app) as state:
                yield state
        finally:
            restore()
            shutdown.runs.stop()  # those the HTTP server has not closed already
            if not await shutdown.runs.ended(SAVE_WAIT_S):
                log.warning("stopping with agent runs not saved yet")
            shutdown.end()

    return lifespan
