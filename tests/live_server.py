"""Run an ASGI app with uvicorn on 127.0.0.1 in a thread, for tests that need real HTTP
(the browser, schemathesis, streaming)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi.testclient import TestClient

from servers import free_port


@contextmanager
def live_server(app: Any) -> Iterator[str]:
    """Serve ``app`` until the block ends; yield its base URL (``http://127.0.0.1:PORT``)."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the test server on port {port} did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class LocalClient(TestClient):
    """A test client whose requests name 127.0.0.1, as a browser on the machine does: a
    server without an API key answers no other name (DNS rebinding)."""

    def __init__(self, app: Any, **options: Any) -> None:
        super().__init__(app, base_url="http://127.0.0.1", **options)


def events_of(text: str) -> list[tuple[str, dict[str, Any]]]:
    """The (event, data) pairs of a server-sent event stream's text."""
    found = []
    for block in text.replace("\r\n", "\n").strip().split("\n\n"):
        lines = block.split("\n")
        kind = next(line for line in lines if line.startswith("event:"))
        data = next(line for line in lines if line.startswith("data:"))
        found.append((kind.removeprefix("event:").strip(), json.loads(data[5:])))
    return found
