"""``noted mcp`` over stdio: the wire read and written by the event loop itself.

The SDK's stdio transport reads each request line and writes and flushes each answer in a
worker thread (three thread hand-offs per tool call), and passes every message through a
reader task and a writer task with a stream on each side. When stdin and stdout are
pipes or sockets, as they are under an MCP client, the server instead reads the
next line when it asks for its next message and writes each answer from the task that
made it, without threads or the tasks between; each message is still parsed and
serialised by the SDK's own models, one JSON-RPC message a line. Otherwise (a regular
file, /dev/null or a terminal, or on Windows) the SDK's own transport serves them.

As with the SDK's, the wire is the server's alone while it serves: file descriptor 0
reads nothing and 1 writes to stderr, so stray output cannot corrupt the protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Self

import anyio
import mcp_types as types
import pydantic_core
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

if TYPE_CHECKING:
    from mcp.server.lowlevel import Server

__all__ = ["run_stdio", "serve_stdio"]

_LINE_LIMIT = 1 << 26  # longest request line read (64 MiB): far beyond any tool call


class _End:
    """One end of the wire as the server holds it: closing it ends its use, not the pipe
    (which the transport closes when the server is done)."""

    _closed = False

    async def aclose(self) -> None:
        self._closed = True

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _Incoming(_End):
    """The client's messages, read and parsed as the SDK's transport does (one JSON-RPC
    message a line, by the SDK's own models) when the server asks for the next one: no
    reader task, no stream between."""

    def __init__(self, reader: asyncio.StreamReader, answers: _Outgoing) -> None:
        self._reader = reader
        self._answers = answers

    async def receive(self) -> SessionMessage:
        """The next message; a line that is not one is answered with a JSON-RPC error of
        no id (as over HTTP: -32700 for what does not parse, -32602 for JSON that is not
        a message), so a client waiting on it hears why, and the next line is read."""
        while True:
            if self._closed:
                raise anyio.ClosedResourceError
            line = await self._line()
            if line is None:
                skipped = f"a message longer than {_LINE_LIMIT} bytes was skipped"
                await self._answers.refuse(types.PARSE_ERROR, f"Parse error: {skipped}")
                continue
            if not line:
                raise anyio.EndOfStream
            text = line.decode("utf-8", errors="replace")
            try:
                parsed = pydantic_core.from_json(text)
            except ValueError as exc:
                await self._answers.refuse(types.PARSE_ERROR, f"Parse error: {exc}")
                continue
            try:
                message = types.jsonrpc_message_adapter.validate_python(parsed, by_name=False)
            except ValidationError as exc:
                await self._answers.refuse(types.INVALID_PARAMS, f"Validation error: {exc}")
                continue
            return SessionMessage(message)

    async def _line(self) -> bytes | None:
        """The next line (empty at the end of the wire), or None for a line longer than
        the limit, which is read to its end and dropped."""
        reader = self._reader
        skipping = False
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as end:  # the last line, without its newline
                return None if skipping and end.partial else end.partial
            except asyncio.LimitOverrunError as over:  # what is buffered of it is dropped
                skipping = True
                await reader.readexactly(over.consumed)
                continue
            return None if skipping else line

    def __aiter__(self) -> _Incoming:
        return self

    async def __anext__(self) -> SessionMessage:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None


class _Outgoing(_End):
    """The server's messages, each written as one JSON line (the SDK's own serialisation)
    by the task that sends it, and flushed without blocking the loop: no writer task, no
    stream between. A line goes to the pipe in one piece, so concurrent answers never
    interleave."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    async def send(self, item: SessionMessage, /) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        await self._write(item.message.model_dump_json(by_alias=True, exclude_unset=True))

    async def refuse(self, code: int, message: str) -> None:
        """Answer a line that is no message: an error of no id (JSON-RPC's rule when the
        request's id cannot be read)."""
        error = types.JSONRPCError(
            jsonrpc="2.0", id=None, error=types.ErrorData(code=code, message=message)
        )
        await self._write(error.model_dump_json(by_alias=True, exclude_unset=True))

    async def _write(self, json_line: str) -> None:
        line = json_line + "\n"
        try:
            self._writer.write(line.encode("utf-8"))
            await self._writer.drain()
        except ConnectionError as exc:  # the client has gone
            raise anyio.BrokenResourceError from exc


def _pipes() -> bool:
    """Whether stdin and stdout are both pipes or sockets (as under an MCP client), which
    the event loop can watch (on Windows its pipes are not the loop's to watch)."""
    if sys.platform == "win32":  # pragma: no cover
        return False
    for fd in (0, 1):
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            return False
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            return False
    return True


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
        for fd, wire in ((0, wire_in), (1, wire_out)):
            # a client that closed its end first may have taken the descriptor with it
            with contextlib.suppress(OSError):
                os.dup2(wire, fd)
        for fd in (0, 1):  # the loop made the shared descriptions non-blocking
            with contextlib.suppress(OSError):
                os.set_blocking(fd, True)
        for fd in (wire_in, wire_out):
            with contextlib.suppress(OSError):
                os.close(fd)


@contextlib.asynccontextmanager
async def _loop_streams() -> AsyncIterator[tuple[_Incoming, _Outgoing] | None]:
    """The wire as the event loop's own pipe streams, or None where it cannot be (stdin
    or stdout not a pipe or socket, say a regular file, /dev/null or a terminal; or on
    Windows)."""
    if not _pipes():
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
        outgoing = _Outgoing(writer)
        try:
            yield _Incoming(reader, outgoing), outgoing
        finally:
            read.close()
            write.close()


async def serve_stdio(server: Server[Any]) -> None:
    """Serve ``server`` to the one client on this process's stdin and stdout."""
    async with _loop_streams() as streams:
        if streams is not None:
            await server.run(*streams, server.create_initialization_options())
            return
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


def _loop_options() -> dict[str, Any]:
    """The event loop to serve on: uvloop where it is installed (it comes with the server
    extra; a tool call's many small steps cost less on it) when stdin and stdout are
    pipes or sockets; else asyncio's own, for the SDK's transport."""
    if not _pipes():
        return {}
    try:
        import uvloop  # noqa: F401
    except ImportError:  # pragma: no cover - installed with noted[mcp]
        return {}
    return {"use_uvloop": True}


def run_stdio(server: Server[Any]) -> None:
    """Serve ``server`` over stdin and stdout until the client closes stdin."""
    anyio.run(serve_stdio, server, backend_options=_loop_options())
