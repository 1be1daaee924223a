"""The background loop's sync stream: items one at a time as the caller asks, the async
stream in one task, its errors raised to the caller, closed when the caller stops."""

from __future__ import annotations

import asyncio
import contextvars
import signal
import threading
from collections.abc import AsyncIterator

import pytest

from noted import _portal
from noted.errors import UserError

step = contextvars.ContextVar("step", default=0)


def test_the_stream_runs_only_as_far_as_the_caller_has_asked() -> None:
    done: list[str] = []

    async def work() -> AsyncIterator[int]:
        for i in range(3):
            await asyncio.sleep(0)  # a suspension, as real work has
            done.append(f"made {i}")
            yield i
        done.append("finished")

    stream = _portal.iterate(work())
    assert done == []  # nothing starts before the first item is asked for
    assert next(stream) == 0
    assert done == ["made 0"]
    assert next(stream) == 1
    assert done == ["made 0", "made 1"]
    assert list(stream) == [2]
    assert done == ["made 0", "made 1", "made 2", "finished"]


def test_the_stream_runs_in_one_task_on_the_loop_thread() -> None:
    caller = threading.current_thread()

    async def work() -> AsyncIterator[tuple[object, int, bool]]:
        for _ in range(3):
            step.set(step.get() + 1)  # kept between items, as within one async for
            yield asyncio.current_task(), step.get(), threading.current_thread() is caller

    seen = list(_portal.iterate(work()))
    assert [count for _, count, _ in seen] == [1, 2, 3]
    assert len({id(task) for task, _, _ in seen}) == 1 and seen[0][0] is not None
    assert not any(on_caller for _, _, on_caller in seen)
    assert step.get() == 0  # the caller's context is not changed


def test_the_streams_error_reaches_the_caller_after_its_items() -> None:
    class Broken(Exception):
        pass

    async def work() -> AsyncIterator[int]:
        yield 1
        raise Broken("no more")

    stream = _portal.iterate(work())
    assert next(stream) == 1
    with pytest.raises(Broken, match="no more"):
        next(stream)
    with pytest.raises(StopIteration):
        next(stream)


def test_stopping_early_closes_the_stream_before_close_returns() -> None:
    events: list[str] = []

    async def work() -> AsyncIterator[int]:
        try:
            for i in range(100):
                yield i
        finally:
            await asyncio.sleep(0.01)  # cleanup that waits still ends before close()
            events.append("closed")

    for i in _portal.iterate(work()):
        if i == 2:
            break
    assert events == ["closed"]

    def stop() -> None:
        for i in _portal.iterate(work()):
            if i == 1:
                raise KeyError("the caller's own failure")

    with pytest.raises(KeyError, match="the caller's own failure"):
        stop()
    assert events == ["closed", "closed"]


def test_a_failing_cleanup_is_raised_by_close() -> None:
    async def work() -> AsyncIterator[int]:
        try:
            yield 1
            yield 2
        finally:
            raise ValueError("cleanup failed")

    stream = _portal.iterate(work())
    assert next(stream) == 1
    with pytest.raises(ValueError, match="cleanup failed"):
        stream.close()  # type: ignore[attr-defined]


def test_an_exception_thrown_into_the_sync_stream_is_thrown_into_the_async_one() -> None:
    seen: list[str] = []

    async def work() -> AsyncIterator[int]:
        try:
            for i in range(100):
                yield i
        except KeyError as exc:
            seen.append(f"thrown in: {exc.args[0]}")
            raise
        finally:
            await asyncio.sleep(0.01)  # cleanup that waits still ends before throw()
            seen.append("closed")

    stream = _portal.iterate(work())
    assert next(stream) == 0
    with pytest.raises(KeyError, match="the caller's own failure"):
        stream.throw(KeyError("the caller's own failure"))  # type: ignore[attr-defined]
    assert seen == ["thrown in: the caller's own failure", "closed"]
    with pytest.raises(StopIteration):
        next(stream)


def test_a_stream_that_handles_a_thrown_exception_goes_on() -> None:
    async def work() -> AsyncIterator[str]:
        for i in range(3):
            try:
                yield f"item {i}"
            except ValueError as exc:
                yield f"handled {exc.args[0]}"

    stream = _portal.iterate(work())
    assert next(stream) == "item 0"
    assert stream.throw(ValueError("skip")) == "handled skip"  # type: ignore[attr-defined]
    assert list(stream) == ["item 1", "item 2"]


def test_an_iterator_that_cannot_take_a_thrown_exception_is_closed() -> None:
    closed: list[bool] = []

    class Numbers:
        """An async iterator with ``aclose`` and no ``athrow``."""

        def __init__(self) -> None:
            self.next = 0

        def __aiter__(self) -> Numbers:
            return self

        async def __anext__(self) -> int:
            self.next += 1
            return self.next

        async def aclose(self) -> None:
            closed.append(True)

    stream = _portal.iterate(Numbers())
    assert next(stream) == 1
    with pytest.raises(KeyError, match="stop"):
        stream.throw(KeyError("stop"))  # type: ignore[attr-defined]
    assert closed == [True]


def test_a_sync_stream_from_the_loop_thread_is_refused() -> None:
    async def numbers() -> AsyncIterator[int]:
        yield 1

    async def inside() -> list[int]:
        return list(_portal.iterate(numbers()))

    with pytest.raises(UserError, match="await its async twin"):
        _portal.run(inside())


def test_a_request_wakes_the_waiting_task_in_the_loop_iteration_that_delivers_it() -> None:
    async def main() -> list[object]:
        loop = asyncio.get_running_loop()
        request = _portal._Request(loop)
        order: list[object] = []

        async def waiter() -> None:
            order.append(await request)

        task = loop.create_task(waiter())
        await asyncio.sleep(0)  # the task now waits on the request
        loop.call_soon(request.answer, _portal._Pull.NEXT)
        loop.call_soon(order.append, "the callback after it")
        await task
        return order

    # an asyncio future would wake the task one iteration later, after the other callback
    assert asyncio.run(main()) == [_portal._Pull.NEXT, "the callback after it"]


def test_a_task_waiting_on_a_request_can_be_cancelled() -> None:
    async def main() -> tuple[bool, bool]:
        loop = asyncio.get_running_loop()
        request = _portal._Request(loop)
        waiting = loop.create_task(_wait(request))
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        request.answer(_portal._Pull.NEXT)  # too late: nothing happens
        return request.cancelled(), waiting.cancelled()

    assert asyncio.run(main()) == (True, True)


async def _wait(request: _portal._Request) -> object:
    return await request


def test_an_interrupted_call_waits_for_its_work_to_clean_up() -> None:
    # Ctrl-C while a sync call waits: the work is cancelled, and what it does when
    # cancelled (an agent saves the failed run) ends before the interrupt goes on.
    cleaned = threading.Event()

    async def work() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.sleep(0.3)  # a write on cancellation
            cleaned.set()

    main = threading.main_thread().ident
    assert main is not None and threading.get_ident() == main
    # Ctrl-C as at a terminal: a suite started in the background of a shell without job
    # control inherits SIGINT ignored, and the signal would then be lost
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        timer = threading.Timer(0.2, signal.pthread_kill, (main, signal.SIGINT))
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            _portal.run(work())
    finally:
        signal.signal(signal.SIGINT, previous)
    assert cleaned.is_set()


def test_a_wait_in_slices_returns_the_result_or_the_works_own_timeout() -> None:
    async def slow(value: int) -> int:
        await asyncio.sleep(_portal._SLICE_S * 2.5)  # past a few slices of the wait
        return value

    async def times_out() -> None:
        await asyncio.sleep(_portal._SLICE_S * 1.5)
        raise TimeoutError("the work's own")

    assert _portal.run(slow(7)) == 7
    with pytest.raises(TimeoutError, match="the work's own"):
        _portal.run(times_out())

    async def stream() -> AsyncIterator[int]:
        for n in range(3):
            await asyncio.sleep(_portal._SLICE_S * 1.5)
            yield n

    assert list(_portal.iterate(stream())) == [0, 1, 2]
