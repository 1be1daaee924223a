"""A TCP proxy in front of the MongoDB-protocol test server that answers as a server older
than 4.4.2: ``hello`` is an unknown command (code 59, as those servers answer), and the
``isMaster`` replies do not say ``helloOk``, so a driver keeps asking ``isMaster``. Every
other message goes through unchanged, both ways."""

from __future__ import annotations

import socket
import struct
import threading
from typing import Any

import bson

OP_REPLY = 1
OP_MSG = 2013
_HEADER = struct.Struct("<iiii")  # messageLength, requestID, responseTo, opCode


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _message(sock: socket.socket) -> bytes:
    head = _read(sock, 4)
    (length,) = struct.unpack("<i", head)
    return head + _read(sock, length - 4)


def _first_document(message: bytes) -> tuple[int, dict[str, Any]] | None:
    """Where the message's (first) document starts, and the document, for OP_MSG (a
    kind-0 section first) and OP_REPLY; None for anything else."""
    op_code = _HEADER.unpack_from(message)[3]
    if op_code == OP_MSG and message[20] == 0:
        start = 21
    elif op_code == OP_REPLY:
        start = 36
    else:
        return None
    (size,) = struct.unpack_from("<i", message, start)
    return start, bson.decode(message[start : start + size])


class OldServer:
    """Listens on 127.0.0.1 (``port``), relaying to ``host:port`` upstream;
    ``refused_hello`` counts the ``hello`` commands answered as unknown."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.refused_hello = 0
        self.is_master = 0
        self._sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self._sockets += [client, server]
            lock = threading.Lock()  # both directions answer the client
            threading.Thread(
                target=self._requests, args=(client, server, lock), daemon=True
            ).start()
            threading.Thread(target=self._replies, args=(server, client, lock), daemon=True).start()

    def _requests(self, client: socket.socket, server: socket.socket, lock: threading.Lock) -> None:
        try:
            while True:
                message = _message(client)
                found = _first_document(message)
                command = next(iter(found[1]), "") if found is not None else ""
                if command.lower() == "ismaster":
                    self.is_master += 1
                if command == "hello" and _HEADER.unpack_from(message)[3] == OP_MSG:
                    self.refused_hello += 1
                    with lock:
                        client.sendall(self._unknown(message))
                    continue
                server.sendall(message)
        except (ConnectionError, OSError):
            client.close()
            server.close()

    def _replies(self, server: socket.socket, client: socket.socket, lock: threading.Lock) -> None:
        try:
            while True:
                message = _message(server)
                found = _first_document(message)
                if found is not None and "helloOk" in found[1]:
                    message = self._without_hello_ok(message, *found)
                with lock:
                    client.sendall(message)
        except (ConnectionError, OSError):
            client.close()
            server.close()

    @staticmethod
    def _unknown(request: bytes) -> bytes:
        request_id = _HEADER.unpack_from(request)[1]
        body = bson.encode(
            {
                "ok": 0.0,
                "errmsg": "no such command: 'hello'",
                "code": 59,
                "codeName": "CommandNotFound",
            }
        )
        payload = struct.pack("<i", 0) + b"\x00" + body
        return _HEADER.pack(16 + len(payload), 0, request_id, OP_MSG) + payload

    @staticmethod
    def _without_hello_ok(message: bytes, start: int, document: dict[str, Any]) -> bytes:
        document.pop("helloOk")
        (size,) = struct.unpack_from("<i", message, start)
        rest = message[start + size :]
        op_code = _HEADER.unpack_from(message)[3]
        if op_code == OP_MSG:  # a reply's one section; no checksum kept
            flags = struct.unpack_from("<I", message, 16)[0] & ~1
            prefix = message[:16] + struct.pack("<I", flags) + b"\x00"
            rest = b""
        else:
            prefix = message[:start]
        body = prefix[16:] + bson.encode(document) + rest
        request_id, response_to = _HEADER.unpack_from(message)[1:3]
        return _HEADER.pack(16 + len(body), request_id, response_to, op_code) + body
