"""Calls made on threads that start at the same moment, for tests of stores read and
written by several threads or stores at once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def together(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Each call on a thread of its own, all released at once: their answers, in order
    (the first error, if any, raised)."""
    start = threading.Barrier(len(calls))

    def run(call: Callable[[], T]) -> T:
        start.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        running = [pool.submit(run, call) for call in calls]
        return [future.result() for future in running]


def side_by_side(count: int, call: Callable[[], T]) -> list[T]:
    """``call()`` on ``count`` threads at once, each one's answer."""
    return together([call] * count)
