"""Sync entry points over async code: one event loop on a background thread.

The agent and the model providers are written once, as async code. A sync call (``agent.run``,
``model.complete``) hands its coroutine to this loop and waits for the result; a sync stream
pulls the async generator one item at a time. The loop lives as long as the process, so
HTTP clients created on it keep their connections between calls.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import concurrent.futures.thread  # its exit hook must be registered before ours
import contextlib
import contextvars
import enum
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterator
from typing import Any, Final, Generic, TypeVar

from noted._async import aclose, athrow
from noted.errors import UserError

__all__ = ["background", "drain", "iterate", "run"]

T = TypeVar("T")


class _End(enum.Enum):
    END = 0


_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None
_pid: int | None = None


def _portal_loop() -> asyncio.AbstractEventLoop:
    global _loop, _thread, _pid
    with _lock:
        if _loop is None or _pid != os.getpid() or _thread is None or not _thread.is_alive():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="noted-portal", daemon=True)
            thread.start()
            _loop, _thread, _pid = loop, thread, os.getpid()
        return _loop


def _loop_for(coro: Coroutine[Any, Any, Any]) -> asyncio.AbstractEventLoop:
    """The background loop, refusing (and closing ``coro``) when called from its own
    thread, where waiting for it would wait forever."""
    loop = _portal_loop()
    if threading.current_thread() is _thread:
        coro.close()
        raise UserError(
            "a sync noted method was called from async code running on noted's own loop; "
            "await its async twin instead (for example 'await agent.arun(...)')"
        )
    return loop


_CLEAN_UP_S: Final = 5.0  # how long an interrupted call waits for its work to clean up

# A wait of the main thread is a lock's wait, which a SIGINT interrupts: but one that lands
# just before the wait begins (after Python last looked for signals) is only noted, and
# the wait goes on until the work ends, minutes for a model. So waits are cut into slices,
# after each of which Python looks again: Ctrl-C is heard within one.
_SLICE_S: Final = 0.25


def _result(future: concurrent.futures.Future[T]) -> T:
    """``future.result()``, waited for in slices (see _SLICE_S)."""
    while True:
        try:
            return future.result(timeout=_SLICE_S)
        except TimeoutError:
            if future.done():  # the work's own TimeoutError
                raise


def _take(items: queue.SimpleQueue[Any]) -> Any:
    """``items.get()``, waited for in slices (see _SLICE_S)."""
    while True:
        with contextlib.suppress(queue.Empty):
            return items.get(timeout=_SLICE_S)


async def _tracked(coro: Coroutine[Any, Any, T], ended: threading.Event) -> T:
    try:
        return await coro
    finally:
        ended.set()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the background loop and wait for its result (or its exception)."""
    loop = _loop_for(coro)
    ended = threading.Event()
    future = asyncio.run_coroutine_threadsafe(_tracked(coro, ended), loop)
    try:
        return _result(future)
    except BaseException:
        # Ctrl-C (or any other interruption of the wait) cancels the work as well, and
        # waits a moment for what it does when cancelled (an agent saves the failed run),
        # so that a program stopping now does not stop it half-way.
        future.cancel()
        ended.wait(_CLEAN_UP_S)
        raise


class _Pull(enum.Enum):
    NEXT = 0
    CLOSE = 1


# the caller's request after an item: the next one, the end, or an exception to throw in
_Ask = _Pull | BaseException


class _Request:
    """What the driving task waits for after an item: the caller's next request.

    A future-like object, as asyncio's tasks accept (``asyncio.isfuture``). The caller's
    request arrives on the loop through ``call_soon_threadsafe`` and wakes the task at
    once, in the same loop iteration; an ``asyncio.Future`` would schedule the wake-up
    for the next iteration (two iterations per item instead of one). Cancelling it wakes
    the task with ``CancelledError``, as a future does.
    """

    _asyncio_future_blocking = False

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiter: tuple[Callable[[Any], object], contextvars.Context] | None = None
        self._answer: _Ask | None = None
        self._cancelled = False

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def done(self) -> bool:
        return self._answer is not None or self._cancelled

    def cancelled(self) -> bool:
        return self._cancelled

    def add_done_callback(
        self, fn: Callable[[Any], object], *, context: contextvars.Context | None = None
    ) -> None:
        self._waiter = (fn, contextvars.copy_context() if context is None else context)

    def remove_done_callback(self, fn: Callable[[Any], object]) -> int:
        if self._waiter is None or self._waiter[0] != fn:
            return 0
        self._waiter = None
        return 1

    def result(self) -> _Ask:
        if self._cancelled:
            raise asyncio.CancelledError
        assert self._answer is not None, "the request has no answer yet"
        return self._answer

    def cancel(self, msg: object = None) -> bool:
        if self.done():
            return False
        self._cancelled = True
        self._loop.call_soon(self._wake)
        return True

    def answer(self, what: _Ask) -> None:
        """The caller's request (run on the loop): wakes the waiting task now."""
        if not self.done():
            self._answer = what
            self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            fn, context = waiter
            context.run(fn, self)

    def __await__(self) -> Generator[Any, None, _Ask]:
        if not self.done():
            self._asyncio_future_blocking = True
            yield self
        return self.result()


class _Stream(Generic[T]):
    """An async iterator driven by one task on the background loop, an item at a time.

    The task takes the next item only when the sync caller asks for it, as ``async for``
    would: nothing is read ahead, so what the stream does before its next item (a tool
    call, a write) happens only if the caller wants that item. Items, and at last
    ``_End.END`` or the stream's exception, go back through a queue the caller blocks on;
    the caller's next request answers a :class:`_Request` the task waits on. One wake-up
    each way per item, one loop iteration, and no task, future or lock made per item.
    """

    def __init__(self, stream: AsyncIterator[T]) -> None:
        self.stream = stream
        self.out: queue.SimpleQueue[tuple[T] | _End | BaseException] = queue.SimpleQueue()
        self.request: _Request | None = None

    async def drive(self) -> None:
        end: _End | BaseException = _End.END
        try:
            step = anext(self.stream)
            while True:
                try:
                    item = await step
                except StopAsyncIteration:
                    return
                # made before the item goes out, so the caller's request finds it
                self.request = _Request(asyncio.get_running_loop())
                self.out.put((item,))
                what = await self.request
                if what is _Pull.CLOSE:
                    await aclose(self.stream)
                    return
                # the next item, or the caller's exception thrown in where the item was given
                step = anext(self.stream) if what is _Pull.NEXT else athrow(self.stream, what)
        except BaseException as exc:
            end = exc
            raise
        finally:
            self.out.put(end)

    def pull(self, what: _Ask) -> None:
        """Ask the task (waiting after an item) for the next item, to close the stream, or
        to throw an exception into it."""
        request = self.request
        assert request is not None, "asked before the first item"
        request.get_loop().call_soon_threadsafe(request.answer, what)

    def end(self) -> None:
        """Wait for the task's end (after a close request); raise what the stream raised."""
        end = self.out.get()
        if isinstance(end, BaseException):
            raise end


def iterate(stream: AsyncIterator[T]) -> Iterator[T]:
    """A sync iterator over an async one, pulled through the background loop.

    The async iterator runs in one task from its first item to its last, as in
    ``async for``. Closing the sync iterator early (``close()``, a ``break``, or the
    iterator let go when an exception leaves the loop) closes the async one too, before
    ``close()`` returns. An exception thrown into the sync iterator (``throw()``) is thrown
    into the async one (``athrow``) where it gave its last item: raised back when the
    stream does not handle it, or the stream's next item returned when it does.
    """
    driver = _Stream(stream)
    drive = driver.drive()
    task = asyncio.run_coroutine_threadsafe(drive, _loop_for(drive))
    state = "taking"  # the task is taking an item; "given": it waits after one; "ended"
    try:
        while True:
            got = _take(driver.out)
            if type(got) is tuple:
                state = "given"
                try:
                    yield got[0]
                except GeneratorExit:
                    raise
                except BaseException as exc:  # noqa: BLE001 - the caller's throw(): to the stream
                    state = "taking"
                    driver.pull(exc)
                    continue
                state = "taking"
                driver.pull(_Pull.NEXT)
                continue
            state = "ended"
            if isinstance(got, BaseException):
                raise got
            return
    except BaseException:
        if state == "taking":  # interrupted (Ctrl-C) while the task takes an item
            task.cancel()
            with contextlib.suppress(queue.Empty):  # its clean-up, as in run()
                driver.out.get(timeout=_CLEAN_UP_S)
        raise
    finally:
        # Stopped early: close the stream before returning; not when the interpreter is
        # exiting (an abandoned stream collected then), as the loop thread is stopped.
        if state == "given" and not sys.is_finalizing():
            driver.pull(_Pull.CLOSE)
            driver.end()


# the background work under way, each with the event set when its task has ended (a
# cancelled future is done at once, its task not yet)
_background: dict[concurrent.futures.Future[Any], threading.Event] = {}
_background_lock = threading.Lock()


def background(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Start ``coro`` on the background loop without waiting for it. Work started this way
    is waited for when the program exits normally (see :func:`drain`)."""
    ended = threading.Event()
    future = asyncio.run_coroutine_threadsafe(_tracked(coro, ended), _portal_loop())
    with _background_lock:
        _background[future] = ended
    future.add_done_callback(_forget)
    return future


def _forget(future: concurrent.futures.Future[Any]) -> None:
    with _background_lock:
        _background.pop(future, None)


def drain(timeout: float | None = None) -> bool:
    """Wait for background work started so far; False if some is still running."""
    with _background_lock:
        pending = list(_background)
    _, not_done = concurrent.futures.wait(pending, timeout=timeout)
    return not not_done


_EXIT_WAIT_S: Final = 60.0
_EXIT_QUIET_S: Final = 1.0  # waited at exit before saying so


def _left() -> int:
    with _background_lock:
        return len(_background)


def _drain_at_exit() -> None:
    """Wait for background work (memory updates) at exit: quietly for a second, then
    saying so (a program that seems to hang at its end, for a minute, is taken for a
    broken one), until it is done, a minute has passed, or Ctrl-C stops the wait."""
    log = logging.getLogger("noted")
    try:
        if drain(_EXIT_QUIET_S):
            return
        log.warning(
            "waiting up to %.0f s for %d background task(s) of noted (memory or summary "
            "updates) to finish; Ctrl-C stops them",
            _EXIT_WAIT_S,
            _left(),
        )
        if drain(_EXIT_WAIT_S - _EXIT_QUIET_S):
            return
        log.warning(
            "the program ends with %d background task(s) of noted still running after "
            "%.0f s (memory or summary updates): they are stopped unfinished",
            _left(),
            _EXIT_WAIT_S,
        )
    except KeyboardInterrupt:
        log.warning("%d background task(s) of noted are stopped unfinished", _left())
    _stop_background()


def _stop_background() -> None:
    """Cancel the background work left at exit and wait a moment for its clean-up (a job
    gives itself back, due again). A model call running on a worker thread, as a local
    model's does, stops at its next step when cancelled: left to run, it kept the program
    from ending (the interpreter waits for its worker threads) until the model's whole
    answer was done, minutes on a CPU, after which the work went on without the worker
    threads it needs. Ctrl-C stops this wait too."""
    with _background_lock:
        left = list(_background.items())
    for future, _ in left:
        future.cancel()
    deadline = time.monotonic() + _CLEAN_UP_S
    with contextlib.suppress(KeyboardInterrupt):
        for _, ended in left:
            ended.wait(max(deadline - time.monotonic(), 0.0))


# Run before the interpreter stops the worker-thread pools that background work still
# needs: threading's exit hooks run before atexit's, newest first, and the thread pool's
# hook was registered when its module was imported above.
_at_exit = getattr(threading, "_register_atexit", atexit.register)
_at_exit(_drain_at_exit)
