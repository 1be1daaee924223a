"""A local HTTP server on 127.0.0.1 that speaks a provider's wire format from a script.

Each request gets the next scripted reply: a JSON body with a status (``Reply``), a
server-sent-event stream (``SSE``), a body sent as it is (``Raw``) or one that never comes
while the connection is kept alive (``Drip``). Every request is
recorded (method, path, query, headers, JSON body) so tests can check what the adapter
sent. A server given a ``check`` (see tests/wire_rules.py) first validates each request
as the vendor's API does, and answers one it refuses with the check's error reply,
leaving the script as it was.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Reply:
    body: Any
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (timeouts)


@dataclass
class SSE:
    """A stream of events: each item is ``data`` (a JSON-able value, or a raw string such
    as ``"[DONE]"``) or a pair ``(event_name, data)``."""

    events: Sequence[Any]
    status: int = 200
    hold: bool = False  # keep the stream open after the events until the client hangs up
    every: float = 0.0  # seconds before each event (a model writing its answer)


@dataclass
class Raw:
    """A body sent as it is: a web page, or JSON that does not parse."""

    body: bytes
    status: int = 200
    content_type: str = "text/html"


@dataclass
class Drip:
    """An answer that does not come while the connection stays busy: the headers, ``events``
    (as in ``SSE``), then ``beat`` every ``every`` seconds (an SSE keep-alive comment, or
    the blank lines a JSON body may begin with) for ``seconds``, or until the client hangs
    up. A client's per-read timeout longer than ``every`` never fires."""

    events: Sequence[Any] = ()
    beat: bytes = b": keep-alive\n\n"
    every: float = 0.05
    seconds: float = 4.0
    content_type: str = "text/event-stream"


@dataclass
class Cut:
    """An event stream sent in chunks (``Transfer-Encoding: chunked``) whose server dies
    after ``events``: the connection closes without the body's last chunk, as when a model
    server is killed in the middle of an answer."""

    events: Sequence[Any]


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


class WireServer:
    def __init__(self) -> None:
        self.script: list[Reply | SSE | Raw | Drip | Cut] = []
        self.requests: list[Recorded] = []
        self.hung_up = threading.Event()  # a client closed a held stream (SSE hold=True)
        # the vendor's validation of a request: its error reply, or None to answer it
        self.check: Callable[[Recorded], Reply | None] | None = None
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                parts = urlsplit(self.path)
                recorded = Recorded(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                refusal = server.check(recorded) if server.check is not None else None
                with server._lock:
                    server.requests.append(recorded)
                    reply = refusal or (server.script.pop(0) if server.script else None)
                if reply is None:
                    self._send_json(500, {"error": {"message": "wire server: script is empty"}}, {})
                elif isinstance(reply, SSE):
                    self._send_sse(reply)
                elif isinstance(reply, Raw):
                    self._send_raw(reply)
                elif isinstance(reply, Drip):
                    self._send_drip(reply)
                elif isinstance(reply, Cut):
                    self._send_cut(reply)
                else:
                    if reply.delay:
                        time.sleep(reply.delay)
                    self._send_json(reply.status, reply.body, reply.headers)

            def _send_json(self, status: int, body: Any, headers: Mapping[str, str]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _send_raw(self, reply: Raw) -> None:
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def _send_events(self, events: Sequence[Any], every: float = 0.0) -> None:
                for item in events:
                    if every:
                        time.sleep(every)
                    name, data = item if isinstance(item, tuple) else (None, item)
                    text = data if isinstance(data, str) else json.dumps(data)
                    chunk = (f"event: {name}\n" if name else "") + f"data: {text}\n\n"
                    self.wfile.write(chunk.encode())
                    self.wfile.flush()

            def _send_drip(self, reply: Drip) -> None:
                self.send_response(200)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                end = time.monotonic() + reply.seconds
                try:
                    self._send_events(reply.events)
                    while time.monotonic() < end:
                        self.wfile.write(reply.beat)
                        self.wfile.flush()
                        time.sleep(reply.every)
                except ConnectionError:  # the client gave up
                    server.hung_up.set()

            def _send_cut(self, reply: Cut) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream; charset=utf-8")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.close_connection = True
                for item in reply.events:
                    text = item if isinstance(item, str) else json.dumps(item)
                    data = f"data: {text}\n\n".encode()
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()
                # no terminating zero-length chunk: the connection just closes

            def _send_sse(self, reply: SSE) -> None:
                self.send_response(reply.status)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                try:
                    self._send_events(reply.events, reply.every)
                except ConnectionError:  # the client closed before the last event
                    if not reply.hold:
                        raise
                    server.hung_up.set()
                    return
                if reply.hold:
                    self._wait_for_hang_up()

            def _wait_for_hang_up(self) -> None:
                self.connection.settimeout(10.0)
                try:
                    hung_up = self.connection.recv(1) == b""  # the client's end of stream
                except ConnectionResetError:
                    hung_up = True
                except TimeoutError:
                    hung_up = False
                if hung_up:
                    server.hung_up.set()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, *replies: Reply | SSE | Raw | Drip | Cut) -> None:
        with self._lock:
            self.script.extend(replies)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve() -> Iterator[WireServer]:
    server = WireServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
