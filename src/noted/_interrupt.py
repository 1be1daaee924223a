"""Ctrl-C that always reaches a prompt waiting in ``input()``.

CPython's C-level signal handler only notes a SIGINT; the main thread raises
KeyboardInterrupt when it next runs Python code or when a blocking read is interrupted. A
SIGINT that lands just before ``input()`` starts its read, or that the kernel delivers to
another thread, is noted and then left waiting: the read is never interrupted and the prompt
ignores Ctrl-C until the next key press.

While :func:`ctrl_c_reaches_input` is active, a watcher thread hears of every SIGINT through
the signal wakeup fd. Until the main thread has raised KeyboardInterrupt, it interrupts the
main thread's read with a signal whose handler does nothing, which makes CPython run the
waiting SIGINT handler. A nudge that comes after the SIGINT was handled does nothing at all.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import FrameType

__all__ = ["NUDGE", "ctrl_c_reaches_input"]

# A real-time signal where there are some (no program is expected to use the last one
# for itself), the second user signal elsewhere.
NUDGE: int = getattr(signal, "SIGRTMAX", getattr(signal, "SIGUSR2", 0))

# Nudge this often until the SIGINT is handled, giving up after NUDGES tries.
INTERVAL = 0.05
NUDGES = 40


def _usable() -> bool:
    return (
        NUDGE != 0
        and hasattr(signal, "pthread_kill")
        and threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    )


@contextmanager
def ctrl_c_reaches_input() -> Iterator[None]:
    """Make Ctrl-C reliable for ``input()`` calls in the block (main thread, default
    SIGINT handling, POSIX; elsewhere the block runs unchanged)."""
    if not _usable():
        yield
        return
    handled = threading.Event()
    stop = threading.Event()

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        handled.set()
        signal.default_int_handler(signum, frame)

    def on_nudge(signum: int, frame: FrameType | None) -> None:
        return None

    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    main = threading.main_thread().ident
    assert main is not None

    def watch() -> None:
        while True:
            received = os.read(read_fd, 256)
            if stop.is_set() or not received:
                return
            if signal.SIGINT not in received:
                continue
            handled.clear()
            for _ in range(NUDGES):
                if handled.wait(INTERVAL) or stop.is_set():
                    break
                signal.pthread_kill(main, NUDGE)

    previous_nudge = signal.signal(NUDGE, on_nudge)
    signal.signal(signal.SIGINT, on_sigint)
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    watcher = threading.Thread(target=watch, name="noted-ctrl-c", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        stop.set()
        with suppress(BlockingIOError):  # a full pipe wakes the watcher anyway
            os.write(write_fd, b"\0")
        watcher.join()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(NUDGE, previous_nudge)
        os.close(read_fd)
        os.close(write_fd)
