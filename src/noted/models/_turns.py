"""One call at a time on a model object, from any event loop, safe to cancel anywhere."""

from __future__ import annotations

import asyncio
import threading
from collections import deque

__all__ = ["Turns"]


class Turns:
    """A lock taken by async code on any event loop, handed to its waiters in arrival order.

    A model object may be called from several event loops at once (the sync API runs on
    noted's own loop, async callers on theirs), so this is not an ``asyncio.Lock``. A waiter
    holds no worker thread, so the holder always finds one for its own work. A waiter
    cancelled at any point never keeps the lock: one cancelled as it was handed the lock
    hands it on. :meth:`release` may be called from any thread, once per :meth:`acquire`.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._waiting: deque[asyncio.Future[None]] = deque()

    def locked(self) -> bool:
        return self._held

    async def acquire(self) -> None:
        with self._mutex:
            if not self._held:
                self._held = True
                return
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            with self._mutex:
                handed = turn not in self._waiting
                if not handed:
                    self._waiting.remove(turn)
            if handed:  # the lock is this waiter's already, though it will never run
                self.release()
            raise

    def release(self) -> None:
        """Hand the lock to the first waiter, or free it when none waits."""
        with self._mutex:
            if not self._held:
                raise RuntimeError("Turns.release() without a matching acquire()")
            while self._waiting:
                turn = self._waiting.popleft()
                try:
                    turn.get_loop().call_soon_threadsafe(_hand, turn)
                except RuntimeError:  # its loop is closed: nobody waits there any more
                    continue
                return
            self._held = False


def _hand(turn: asyncio.Future[None]) -> None:
    if not turn.done():  # else the waiter was cancelled, and hands the lock on itself
        turn.set_result(None)
