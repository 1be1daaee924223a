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
import enum
import os
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

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


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the background loop and wait for its result (or its exception)."""
    loop = _portal_loop()
    if threading.current_thread() is _thread:
        coro.close()
        raise UserError(
            "a sync noted method was called from async code running on noted's own loop; "
            "await its async twin instead (for example 'await agent.arun(...)')"
        )
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return future.result()
    except BaseException:
        # Ctrl-C (or any other interruption of the wait) cancels the work as well.
        future.cancel()
        raise


def iterate(stream: AsyncIterator[T]) -> Iterator[T]:
    """A sync iterator over an async one, pulled through the background loop.

    Closing the sync iterator early (``break``, an exception) closes the async one too.
    """

    async def next_item() -> T | _End:
        try:
            return await anext(stream)
        except StopAsyncIteration:
            return _End.END

    async def close() -> None:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()

    done = False
    try:
        while True:
            item = run(next_item())
            if item is _End.END:
                done = True
                return
            yield item
    finally:
        if not done:
            run(close())


_background: set[concurrent.futures.Future[Any]] = set()
_background_lock = threading.Lock()


def background(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Start ``coro`` on the background loop without waiting for it. Work started this way
    is waited for when the program exits normally (see :func:`drain`)."""
    future = asyncio.run_coroutine_threadsafe(coro, _portal_loop())
    with _background_lock:
        _background.add(future)
    future.add_done_callback(_forget)
    return future


def _forget(future: concurrent.futures.Future[Any]) -> None:
    with _background_lock:
        _background.discard(future)


def drain(timeout: float | None = None) -> bool:
    """Wait for background work started so far; False if some is still running."""
    with _background_lock:
        pending = list(_background)
    _, not_done = concurrent.futures.wait(pending, timeout=timeout)
    return not not_done


# Run before the interpreter stops the worker-thread pools that background work still
# needs: threading's exit hooks run before atexit's, newest first, and the thread pool's
# hook was registered when its module was imported above.
_at_exit = getattr(threading, "_register_atexit", atexit.register)
_at_exit(drain, 60.0)
