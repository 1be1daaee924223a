"""``noted mcp`` over stdio: the SDK's stdio transport, fed by the event loop itself.

The SDK reads each request line and writes and flushes each answer in a worker thread
(three thread hand-offs per tool call). When stdin and stdout are pipes, sockets or
terminals, as they are under an MCP client, the event loop reads and writes them without
a thread instead; the SDK still parses and frames every message. Otherwise (a regular
file, say, or on Windows) the SDK's own transport serves them.

As with the SDK's, the wire is the server's alone while it serves: file descriptor 0
reads nothing and 1 writes to stderr, so stray output cannot corrupt the protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, cast

from mcp.server.stdio import stdio_server

if TYPE_CHECKING:
    import anyio
    from mcp.server.lowlevel import Server

__all__ = ["serve_stdio"]

_LINE_LIMIT = 1 << 26  # longest request line read (64 MiB): far beyond any tool call


class _Lines:
    """The request lines, as the SDK's transport iterates them."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    def __aiter__(self) -> _Lines:
        return self

    async def __anext__(self) -> str:
        line = await self._reader.readline()
        if not line:
            raise StopAsyncIteration
        return line.decode("utf-8", errors="replace")


class _Out:
    """The answers, as the SDK's transport writes them: buffered, flushed without
    blocking the loop."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    async def write(self, text: str) -> None:
        self._writer.write(text.encode("utf-8"))

    async def flush(self) -> None:
        await self._writer.drain()


@contextlib.contextmanager
def _wire() -> Iterator[tuple[int, int]]:
    """Private copies of fds 0 and 1 for the protocol; meanwhile 0 reads /dev/null and 1
    writes to stderr. Restored, blocking again, on the way out."""
    sys.stdout.flush()
    wire_in, wire_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(null, 0)
        os.dup2(2, 1)
    finally:
        os.close(null)
    try:
        yield wire_in, wire_out
    finally:
        os.dup2(wire_in, 0)
        os.dup2(wire_out, 1)
        for fd in (0, 1):  # the loop made the shared descriptions non-blocking
            with contextlib.suppress(OSError):
                os.set_blocking(fd, True)
        for fd in (wire_in, wire_out):
            with contextlib.suppress(OSError):
                os.close(fd)


@contextlib.asynccontextmanager
async def _loop_streams() -> AsyncIterator[tuple[Any, Any] | None]:
    """The wire as the event loop's own pipe streams, or None where it cannot be (stdin
    or stdout a regular file, or on Windows)."""
    if sys.platform == "win32":  # pragma: no cover - its pipes are not the loop's to watch
        yield None
        return
    loop = asyncio.get_running_loop()
    with _wire() as (wire_in, wire_out):
        reader = asyncio.StreamReader(limit=_LINE_LIMIT)
        source = os.fdopen(wire_in, "rb", buffering=0, closefd=False)
        sink = os.fdopen(wire_out, "wb", buffering=0, closefd=False)
        try:
            read, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), source
            )
        except (ValueError, OSError):
            source.close()
            sink.close()
            yield None
            return
        try:
            write, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, sink)
        except (ValueError, OSError):
            read.close()
            sink.close()
            yield None
            return
        writer = asyncio.StreamWriter(write, protocol, None, loop)
        try:
            yield _Lines(reader), _Out(writer)
        finally:
            read.close()
            write.close()


async def serve_stdio(server: Server[Any]) -> None:
    """Serve ``server`` to the one client on this process's stdin and stdout."""
    async with _loop_streams() as streams:
        if streams is not None:
            stdin = cast("anyio.AsyncFile[str]", streams[0])
            stdout = cast("anyio.AsyncFile[str]", streams[1])
            async with stdio_server(stdin, stdout) as (read, write):
                await server.run(read, write, server.create_initialization_options())
            return
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())
