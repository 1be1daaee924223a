"""``noted serve`` (the REST API and the Memories page) and ``noted token`` (user tokens)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from noted._console import emit_json, err, out
from noted.db.base import Store
from noted.db.urls import open_store
from noted.errors import MissingDependencyError, UserError
from noted.memory import Memory

__all__ = ["add_server_commands"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7777

Command = Callable[[Memory, argparse.Namespace], int]


def default_db() -> str:
    """What ``--db`` is when it is not given."""
    return os.environ.get("NOTED_DB", "noted.db")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
        except OSError:
            return False


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def cmd_serve(memory: Memory, args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from noted.server.config import ServeConfig, load_config
        from noted.server.factory import (
            ENV_CONFIG,
            ENV_DB,
            ENV_EMBEDDER,
            ENV_NO_BACKGROUND,
            build_app,
        )
    except ImportError as exc:
        raise MissingDependencyError(
            f"noted serve needs {exc.name}: pip install 'noted[server]'"
        ) from None
    config = load_config(args.config) if args.config else ServeConfig()
    host = args.host or config.host or DEFAULT_HOST
    port = args.port if args.port is not None else config.port or DEFAULT_PORT
    if not os.environ.get("NOTED_API_KEY"):
        if not is_loopback(host):
            raise UserError(
                f"refusing to listen on {host} without an API key: anyone who can reach it "
                "could read and change every memory. Set NOTED_API_KEY, or use 127.0.0.1."
            )
        err.print(
            "[yellow]warning:[/] NOTED_API_KEY is not set: every request is the admin. "
            f"Listening on {host} only."
        )
    target = args.db
    if config.db and args.db == default_db():  # neither --db nor NOTED_DB was given
        memory.db.close()
        target = config.db
        memory.db = open_store(target)
    store = memory.db
    assert isinstance(store, Store)  # every --db target keeps sessions
    embedder = args.embedder or config.embedder
    out.print(f"noted serving {target} at http://{host}:{port}/ (API docs at /docs)")
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": args.log_level,
        "access_log": args.access_log,
    }
    if args.workers == 1:
        uvicorn.run(build_app(store, embedder, config, args.background), **options)
        return 0
    memory.db.close()  # each worker opens its own
    os.environ[ENV_DB] = target
    if embedder:
        os.environ[ENV_EMBEDDER] = embedder
    if args.config:
        os.environ[ENV_CONFIG] = str(Path(args.config).resolve())
    if not args.background:
        os.environ[ENV_NO_BACKGROUND] = "1"
    uvicorn.run("noted.server.factory:app_from_env", factory=True, workers=args.workers, **options)
    return 0


def cmd_token(memory: Memory, args: argparse.Namespace) -> int:
    from noted.server.auth import Auth

    auth = Auth(
        os.environ.get("NOTED_API_KEY") or None, os.environ.get("NOTED_TOKEN_SECRET") or None
    )
    token = auth.issue(args.user_id, args.expires_in)
    if args.json:
        emit_json({"token": token, "user_id": args.user_id, "expires_in": args.expires_in})
    else:
        out.print(token, soft_wrap=True)
    return 0


def add_server_commands(
    groups: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    serve = groups.add_parser(
        "serve",
        parents=[common],
        help="run the REST API and the Memories page",
        description="Serve the REST API (docs at /docs) and the Memories page (at /). "
        "Without NOTED_API_KEY it listens on 127.0.0.1 only.",
    )
    serve.add_argument("--host", help=f"address to listen on (default {DEFAULT_HOST})")
    serve.add_argument("--port", type=int, help=f"port (default {DEFAULT_PORT})")
    serve.add_argument("--config", help="a TOML file with [server] and [agent] settings")
    serve.add_argument(
        "--embedder",
        help="'local' (the embedded model) for semantic and hybrid search, 'none' for "
        "keyword only (default: none)",
    )
    serve.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    serve.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="worker processes (default 1; each opens the store itself)",
    )
    serve.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True)
    serve.add_argument(
        "--background",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the agent's background memory and summary jobs in this server (default); "
        "--no-background records them with the runs for `noted worker` processes",
    )
    serve.set_defaults(func=cmd_serve)

    token = groups.add_parser(
        "token",
        parents=[common],
        help="print a user token for the server",
        description="Print a signed token that reaches one user's memories and sessions only "
        "(signed with NOTED_TOKEN_SECRET, or a key derived from NOTED_API_KEY).",
    )
    token.add_argument("user_id", help="the user the token is for")
    token.add_argument("--expires-in", type=int, default=86400, help="seconds (default one day)")
    token.set_defaults(func=cmd_token)
