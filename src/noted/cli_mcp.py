"""``noted mcp``: the memories as an MCP server, over stdio (for desktop clients) or
streamable HTTP (``--http``)."""

from __future__ import annotations

import argparse
import contextlib
import os
import threading
from typing import TYPE_CHECKING

from noted._console import err
from noted.cli_db import positive_int, with_config_db
from noted.cli_serve import DEFAULT_HOST, DEFAULT_PORT, check_exposure, port_number
from noted.errors import MissingDependencyError, NotedError
from noted.memory import DEFAULT_USER_ID, Memory
from noted.retrieval.choice import DEFAULT_EMBEDDER

if TYPE_CHECKING:
    from noted.server.config import ServeConfig

__all__ = ["add_mcp_command"]

DEFAULT_MCP_PORT = DEFAULT_PORT + 1  # beside noted serve's


def _configured(memory: Memory, args: argparse.Namespace) -> tuple[Memory, str, ServeConfig]:
    """The Memory (its writes recorded as ``mcp``) and the user to serve, with the config
    file's settings (``--config``): ``--db``, ``--embedder`` and ``--user`` win over the
    file's ``db``, ``embedder`` and ``user``."""
    from noted.server.config import ServeConfig, load_config

    config = load_config(args.config) if args.config else ServeConfig()
    with_config_db(memory, args, config.db)
    store = memory.db
    # as `noted serve`: without one named, the default's (the memories still without a
    # vector, however many, are embedded by the user's next search)
    embedder = args.embedder or config.embedder or DEFAULT_EMBEDDER
    served = Memory(store, embedder=embedder, actor="mcp")
    return served, args.user or config.user or DEFAULT_USER_ID, config


def _load_model_meanwhile(memory: Memory) -> None:
    """Load the local model (a second or two) on a thread of its own while the client
    connects, rather than in the first search. A remote embedder is left alone; a model
    that cannot load says so in the first search that needs it."""
    from noted.retrieval.local import LocalEmbedder

    embedder = memory.embedder
    if isinstance(embedder, LocalEmbedder):

        def load() -> None:
            with contextlib.suppress(NotedError):
                embedder.embed(["a first query"], kind="query")

        threading.Thread(target=load, name="noted-model-load", daemon=True).start()


def cmd_mcp(memory: Memory, args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from noted.mcp import create_server
        from noted.mcp.http import http_app
        from noted.server.auth import Auth
        from noted.server.stopping import DEFAULT_SHUTDOWN_TIMEOUT
    except MissingDependencyError:
        raise
    except ImportError as exc:
        raise MissingDependencyError(
            f"noted mcp needs {exc.name}: pip install 'noted[mcp]'"
        ) from None
    memory, user, config = _configured(memory, args)
    _load_model_meanwhile(memory)
    if not args.http:
        from noted.mcp.stdio import run_stdio

        run_stdio(create_server(memory=memory, user_id=user))
        return 0
    host = args.host or config.host or DEFAULT_HOST
    port = args.port if args.port is not None else config.port or DEFAULT_MCP_PORT
    shutdown_timeout = (
        args.shutdown_timeout
        if args.shutdown_timeout is not None
        else config.shutdown_timeout or DEFAULT_SHUTDOWN_TIMEOUT
    )
    check_exposure(host)
    auth = Auth(
        os.environ.get("NOTED_API_KEY") or None, os.environ.get("NOTED_TOKEN_SECRET") or None
    ).checking_revocations_of(memory.db)  # the gate refuses revoked tokens as the tools do
    server = create_server(memory=memory, user_id=user, auth=auth)
    err.print(f"noted MCP server at http://{host}:{port}{args.path} (streamable HTTP)")
    app = http_app(server, auth, path=args.path, local_only=auth.open)
    # on SIGTERM or Ctrl-C the calls and streams still open get shutdown_timeout seconds,
    # then they are cancelled (a store call under way in its thread is left to end there)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=args.log_level,
        access_log=False,
        timeout_graceful_shutdown=shutdown_timeout,
    )
    return 0


def add_mcp_command(
    groups: argparse._SubParsersAction[argparse.ArgumentParser],
    options: argparse.ArgumentParser,
) -> None:
    """``noted mcp`` with ``options`` (``--db``, its tables and ``--user``: it serves
    over its transport, and has no result to print as JSON)."""
    mcp = groups.add_parser(
        "mcp",
        parents=[options],
        help="serve the memories to MCP clients (Claude Desktop, Cursor, agents)",
        description="An MCP server with tools to add, search, list, read, update and delete "
        "a user's memories. Over stdio (the default) every call is about --user; over "
        "--http a user token (noted token) fixes the user and the admin key "
        "(NOTED_API_KEY) may name one.",
    )
    mcp.add_argument("--http", action="store_true", help="serve streamable HTTP, not stdio")
    mcp.add_argument("--host", help=f"address to listen on with --http (default {DEFAULT_HOST})")
    mcp.add_argument(
        "--port", type=port_number, help=f"port with --http (default {DEFAULT_MCP_PORT})"
    )
    mcp.add_argument("--path", default="/mcp", help="the endpoint's path (default /mcp)")
    mcp.add_argument(
        "--shutdown-timeout",
        type=positive_int,
        metavar="SECONDS",
        help="with --http: on SIGTERM or Ctrl-C, how long the requests still open may go on "
        "before they are cancelled (default: the config file's, else 25)",
    )
    mcp.add_argument(
        "--config",
        help="a TOML file with [server] db, embedder, user, host, port, shutdown_timeout",
    )
    mcp.add_argument(
        "--embedder",
        help="'local' (the embedded model, for semantic and hybrid search), another "
        "embedder, or 'none' for keyword search only (default: the config file's, else "
        "$NOTED_EMBEDDER, else local)",
    )
    mcp.add_argument(
        "--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"]
    )
    mcp.set_defaults(func=cmd_mcp)
