"""The harness's servers start on 127.0.0.1 with a free port and stop by pid."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from conftest import REQUIRE_SERVERS, SERVERS
from servers import Unavailable


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_a_server_starts_on_loopback_and_stops_by_pid(kind: str, tmp_path: Path) -> None:
    try:
        server = SERVERS[kind](tmp_path / kind)
    except Unavailable as exc:
        if REQUIRE_SERVERS:
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    try:
        port = int(server.url.split("://", 1)[1].split("/")[0].rsplit(":", 1)[1])
        assert "127.0.0.1" in server.url
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
        os.kill(server.pid, 0)  # running
    finally:
        server.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(server.pid, 0)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
