"""The MCP SDK's own client, held open in an event loop on a thread of its own, so that
plain (sync) tests can share one connection to one server process per module."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx2
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult

import noted
from noted import SqliteDb

T = TypeVar("T")
Streams = AbstractAsyncContextManager[Any]


def module_db(folder: Path) -> Iterator[SqliteDb]:
    """The SQLite file a module's server serves, opened by the test to check it."""
    store = SqliteDb(db_file=str(folder / "noted.db"))
    yield store
    store.close()


class Loop:
    """An asyncio loop running on a daemon thread; ``run`` waits for a coroutine there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Connected:
    """One client session, opened by a task that holds it until ``close``."""

    def __init__(self, loop: Loop, connect: Callable[[], Streams]) -> None:
        self.loop = loop
        self._connect = connect
        self._ready: asyncio.Future[ClientSession] = loop.loop.create_future()
        self._done = asyncio.Event()
        self._task = asyncio.run_coroutine_threadsafe(self._hold(), loop.loop)
        self.session = loop.run(self._wait_ready())

    async def _wait_ready(self) -> ClientSession:
        return await self._ready

    async def _hold(self) -> None:
        try:
            async with self._connect() as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                self._ready.set_result(session)
                await self._done.wait()
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            raise

    def call(self, name: str, arguments: dict[str, Any] | None = None) -> CallToolResult:
        return self.loop.run(self.session.call_tool(name, arguments or {}))

    def ok(self, name: str, arguments: dict[str, Any] | None = None) -> Any:
        """A call that must succeed: its result as JSON (the text equals the structured part)."""
        result = self.call(name, arguments)
        assert not result.is_error, result.content
        text = result.content[0].text  # type: ignore[union-attr]
        assert json.loads(text) == result.structured_content
        return result.structured_content

    def error(self, name: str, arguments: dict[str, Any] | None = None) -> str:
        """A call that must fail as a tool error: its message."""
        result = self.call(name, arguments)
        assert result.is_error, result.structured_content
        return str(result.content[0].text)  # type: ignore[union-attr]

    def close(self) -> None:
        self.loop.loop.call_soon_threadsafe(self._done.set)
        self._task.result(30)


def stdio(command: str, *args: str, env: dict[str, str] | None = None) -> Callable[[], Streams]:
    """A server process started as the SDK starts one (its environment is a few variables
    of this one and ``env``), running the noted these tests import, wherever it is."""
    source = str(Path(noted.__file__).resolve().parents[1])
    params = StdioServerParameters(
        command=command, args=list(args), env={"PYTHONPATH": source, **(env or {})}
    )
    return lambda: stdio_client(params)


def http(url: str, token: str | None = None) -> Callable[[], Streams]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}

    @asynccontextmanager
    async def connect() -> AsyncIterator[Any]:
        async with (
            httpx2.AsyncClient(headers=headers, timeout=60) as client,
            streamable_http_client(url, http_client=client) as streams,
        ):
            yield streams

    return connect
