"""Async twins of blocking methods, derived from the sync method (one source of truth)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def async_twin(fn: Callable[P, R]) -> Callable[P, Coroutine[Any, Any, R]]:
    """``aname = async_twin(name)`` in a class: the same call, run in a worker thread and
    awaited. It calls the instance's own ``name``, so a subclass that overrides ``name``
    (other arguments, another order of results) has a twin that does as it does.

    The blocking database drivers hold no event loop, so the loop stays free while a call
    waits on disk or a lock. Context variables travel with the call.
    """
    name = fn.__name__

    @functools.wraps(fn)
    async def twin(*args: P.args, **kwargs: P.kwargs) -> R:
        instance, rest = args[0], args[1:]
        method: Callable[..., R] = getattr(instance, name)
        return await asyncio.to_thread(method, *rest, **kwargs)

    twin.__name__ = "a" + name
    twin.__qualname__ = twin.__qualname__.rpartition(".")[0] + ".a" + name
    twin.__doc__ = f"Async twin of :meth:`{name}`; same arguments, same result."
    return twin


async def aclose(iterator: AsyncIterator[Any]) -> None:
    """Close an async iterator that can be closed (an async generator: its ``finally``
    blocks run now, not when it is collected); other iterators need nothing."""
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


async def athrow(iterator: AsyncIterator[T], exc: BaseException) -> T:
    """Throw ``exc`` into an async iterator where it gave its last item, as ``athrow``: an
    async generator sees it there (and may handle it and give its next item, returned
    here); an iterator that cannot take it is closed and ``exc`` raised."""
    throw = getattr(iterator, "athrow", None)
    if throw is None:
        await aclose(iterator)
        raise exc
    item: T = await throw(exc)
    return item
