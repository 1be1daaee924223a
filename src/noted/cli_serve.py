"""``noted serve`` (the REST API and the Memories page) and ``noted token`` (user tokens)."""

from __future__ import annotations

import argparse
import importlib
import ipaddress
import os
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from noted._console import emit_json, err, out
from noted.cli_db import positive_int, with_config_db
from noted.db.base import Store
from noted.db.shown import safe_url
from noted.errors import MissingDependencyError, UserError
from noted.memory import Memory

__all__ = ["add_server_commands"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7777
MIN_KEY_LENGTH = 32  # an API key that guards a server reachable from other hosts

Command = Callable[[Memory, argparse.Namespace], int]


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


def check_exposure(host: str) -> None:
    """Refuse to listen beyond loopback without ``NOTED_API_KEY``, or with one too short to
    resist guessing; warn that without it every request is the admin."""
    key = os.environ.get("NOTED_API_KEY") or ""
    if key and len(key) < MIN_KEY_LENGTH and not is_loopback(host):
        raise UserError(
            f"refusing to listen on {host} with a {len(key)}-character NOTED_API_KEY: "
            f"anyone who can reach it could guess a key that short. Use at least "
            f"{MIN_KEY_LENGTH} random characters, for example the output of "
            '`python -c "import secrets; print(secrets.token_urlsafe(32))"`'
        )
    if key:
        return
    if not is_loopback(host):
        raise UserError(
            f"refusing to listen on {host} without an API key: anyone who can reach it "
            "could read and change every memory. Set NOTED_API_KEY, or use 127.0.0.1."
        )
    err.print(
        "[yellow]warning:[/] NOTED_API_KEY is not set: every request is the admin. "
        f"Listening on {host} only."
    )


def port_number(text: str) -> int:
    """A TCP port to listen on, for ``--port``."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"must be a port from 1 to 65535, got {text!r}")
    return value


def cmd_serve(memory: Memory, args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from noted.server.config import ServeConfig, load_config
        from noted.server.factory import (
            ENV_CONFIG,
            ENV_DB,
            ENV_EMBEDDER,
            ENV_MCP,
            ENV_NO_BACKGROUND,
            ENV_SHUTDOWN_TIMEOUT,
            build_app,
        )
        from noted.server.stopping import DEFAULT_SHUTDOWN_TIMEOUT, SAVE_WAIT_S

        if args.mcp:  # before anything is printed: its error names its extra
            importlib.import_module("noted.mcp")
    except MissingDependencyError:
        raise
    except ImportError as exc:
        raise MissingDependencyError(
            f"noted serve needs {exc.name}: pip install 'noted[server]'"
        ) from None
    config = load_config(args.config) if args.config else ServeConfig()
    host = args.host or config.host or DEFAULT_HOST
    port = args.port if args.port is not None else config.port or DEFAULT_PORT
    shutdown_timeout = _first(
        args.shutdown_timeout, config.shutdown_timeout, DEFAULT_SHUTDOWN_TIMEOUT
    )
    check_exposure(host)
    target = with_config_db(memory, args, config.db)
    store = memory.db
    assert isinstance(store, Store)  # every --db target keeps sessions
    embedder = args.embedder or config.embedder
    out.print(f"noted serving {safe_url(target)} at http://{host}:{port}/ (API docs at /docs)")
    if args.mcp:
        out.print(f"MCP server (streamable HTTP) at http://{host}:{port}/mcp")
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": args.log_level,
        "access_log": args.access_log,
        # past the runs' bound, what is still open is closed (the runs themselves are
        # stopped by the app, and get SAVE_WAIT_S to be saved and to say so)
        "timeout_graceful_shutdown": shutdown_timeout + SAVE_WAIT_S,
    }
    if args.workers == 1:
        app = build_app(
            store,
            embedder,
            config,
            mcp=args.mcp,
            background=args.background,
            shutdown_timeout=shutdown_timeout,
        )
        uvicorn.run(app, **options)
        return 0
    memory.db.close()  # each worker opens its own
    os.environ[ENV_DB] = target
    if embedder:
        os.environ[ENV_EMBEDDER] = embedder
    if args.mcp:
        os.environ[ENV_MCP] = "1"
    if args.config:
        os.environ[ENV_CONFIG] = str(Path(args.config).resolve())
    if not args.background:
        os.environ[ENV_NO_BACKGROUND] = "1"
    os.environ[ENV_SHUTDOWN_TIMEOUT] = str(shutdown_timeout)
    uvicorn.run("noted.server.factory:app_from_env", factory=True, workers=args.workers, **options)
    return 0


def _first(*values: int | None) -> int:
    """The first value given: an option's, else the config file's, else the default."""
    return next(value for value in values if value is not None)


def cmd_token(memory: Memory, args: argparse.Namespace) -> int:
    from noted.db.revocations import TokenRevocations
    from noted.server.auth import Auth

    revoking = args.revoke is not None or args.revoke_all
    if revoking == (args.user_id is not None) or (args.revoke is not None and args.revoke_all):
        raise UserError("give a USER_ID to issue a token for, or --revoke USER_ID, or --revoke-all")
    if args.before is not None and not revoking:
        raise UserError("--before goes with --revoke or --revoke-all")
    store = memory.db if revoking and isinstance(memory.db, TokenRevocations) else None
    auth = Auth(
        os.environ.get("NOTED_API_KEY") or None,
        os.environ.get("NOTED_TOKEN_SECRET") or None,
        store,
    )
    if revoking:
        cutoff = auth.revoke(args.revoke, _time_arg(args.before))
        whose = f"{args.revoke}'s tokens" if args.revoke is not None else "every user's tokens"
        if args.json:
            emit_json({"user_id": args.revoke, "revoked_before": cutoff.isoformat()})
        else:
            out.print(f"revoked {whose} issued at or before {cutoff.isoformat()}", soft_wrap=True)
        return 0
    token = auth.issue(args.user_id, args.expires_in)
    if args.json:
        emit_json({"token": token, "user_id": args.user_id, "expires_in": args.expires_in})
    else:
        out.print(token, soft_wrap=True)
    return 0


def _time_arg(text: str | None) -> datetime | None:
    """``--before``: an ISO 8601 time (UTC when it names no offset)."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(
            f"--before must be an ISO 8601 time such as 2026-01-31T12:00:00Z, got {text!r}"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def add_server_commands(
    groups: argparse._SubParsersAction[argparse.ArgumentParser],
    db_option: argparse.ArgumentParser,
) -> None:
    """``serve`` and ``token`` take ``db_option`` (a server's users come with each request,
    a token names its user itself); ``token`` adds ``--json``."""
    serve = groups.add_parser(
        "serve",
        parents=[db_option],
        help="run the REST API and the Memories page",
        description="Serve the REST API (docs at /docs) and the Memories page (at /). "
        "Without NOTED_API_KEY it listens on 127.0.0.1 only.",
    )
    serve.add_argument("--host", help=f"address to listen on (default {DEFAULT_HOST})")
    serve.add_argument("--port", type=port_number, help=f"port (default {DEFAULT_PORT})")
    serve.add_argument("--config", help="a TOML file with [server] and [agent] settings")
    serve.add_argument(
        "--embedder",
        help="'local' (the embedded model) for semantic and hybrid search, 'none' for "
        "keyword only (default: $NOTED_EMBEDDER, else local)",
    )
    serve.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    serve.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="worker processes (default 1; each opens the store itself)",
    )
    serve.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True)
    serve.add_argument(
        "--shutdown-timeout",
        type=positive_int,
        metavar="SECONDS",
        help="on SIGTERM or Ctrl-C, how long the agent runs under way may go on before they "
        "are stopped and kept as failed runs (default: the config file's, else 25)",
    )
    serve.add_argument(
        "--mcp", action="store_true", help="serve the MCP server at /mcp too (noted[mcp])"
    )
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
        parents=[db_option],
        help="print a user token for the server, or revoke tokens",
        description="Print a signed token that reaches one user's memories and sessions only "
        "(signed with NOTED_TOKEN_SECRET, or a key derived from NOTED_API_KEY); or revoke a "
        "user's tokens, or everyone's, in the store that the server uses.",
    )
    token.add_argument("user_id", nargs="?", help="the user the token is for")
    token.add_argument("--json", action="store_true", help="print JSON for scripts")
    token.add_argument("--expires-in", type=int, default=86400, help="seconds (default one day)")
    token.add_argument(
        "--revoke",
        metavar="USER_ID",
        help="revoke this user's tokens issued so far (kept in --db: every server on it sees it)",
    )
    token.add_argument(
        "--revoke-all", action="store_true", help="revoke every user's tokens issued so far"
    )
    token.add_argument(
        "--before",
        metavar="TIME",
        help="with --revoke or --revoke-all: only tokens issued at or before this ISO 8601 time",
    )
    token.set_defaults(func=cmd_token)
