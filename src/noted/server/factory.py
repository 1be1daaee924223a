"""The app as ``noted serve`` builds it, also in each worker process of ``--workers N``
(uvicorn starts workers from an import string, so the settings travel in environment
variables)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

from fastapi import FastAPI

from noted import _portal
from noted.agent import Agent
from noted.agent.jobs import leave_jobs_to_workers, start_job_loop
from noted.db.base import Store
from noted.db.urls import env_tables, open_store
from noted.memory import Memory
from noted.retrieval.choice import DEFAULT_EMBEDDER
from noted.server.app import create_app
from noted.server.config import ServeConfig, build_agent, load_config
from noted.server.stopping import DEFAULT_SHUTDOWN_TIMEOUT, Lifespan, Shutdown

__all__ = [
    "ENV_CONFIG",
    "ENV_DB",
    "ENV_EMBEDDER",
    "ENV_MCP",
    "ENV_NO_BACKGROUND",
    "ENV_SHUTDOWN_TIMEOUT",
    "app_from_env",
    "build_app",
]

log = logging.getLogger("noted.server")

ENV_DB: Final = "NOTED_SERVE_DB"
ENV_EMBEDDER: Final = "NOTED_SERVE_EMBEDDER"
ENV_CONFIG: Final = "NOTED_SERVE_CONFIG"
ENV_MCP: Final = "NOTED_SERVE_MCP"
ENV_NO_BACKGROUND: Final = "NOTED_SERVE_NO_BACKGROUND"
ENV_SHUTDOWN_TIMEOUT: Final = "NOTED_SERVE_SHUTDOWN_TIMEOUT"


def build_app(
    store: Store,
    embedder: str | None,
    config: ServeConfig,
    *,
    mcp: bool = False,
    background: bool = True,
    shutdown_timeout: int = DEFAULT_SHUTDOWN_TIMEOUT,
) -> FastAPI:
    """The served app: the store, an embedder (the default's when neither ``embedder``
    nor the config names one; ``"none"`` for keyword search only), the config file's agent
    if it has one, whose background jobs run in this process (or, with
    ``background=False``, are left to ``noted worker`` processes), and the MCP endpoint
    with ``mcp``. Once SIGTERM or Ctrl-C comes, the runs under way are stopped after
    ``shutdown_timeout`` seconds, and the jobs under way are left after that time too."""
    memory = Memory(store, embedder=embedder or config.embedder or DEFAULT_EMBEDDER)
    agent = None if config.agent is None else build_agent(config.agent, store)
    if agent is not None and not background:
        leave_jobs_to_workers(agent)
    app = create_app(memory=memory, agent=agent, mcp=mcp, shutdown_timeout=shutdown_timeout)
    shutdown: Shutdown = app.state.shutdown
    if agent is not None and background:
        app.router.lifespan_context = _running_jobs(agent, shutdown, app.router.lifespan_context)
    # The objects built so far live as long as the process: keep the collector from
    # walking them again on every full collection (fewer and shorter pauses under load).
    gc.collect()
    gc.freeze()
    return app


def _running_jobs(agent: Agent, shutdown: Shutdown, inner: Lifespan) -> Lifespan:
    """The app's lifespan with the agent's background jobs running in this process. When
    the server starts to stop (SIGTERM, Ctrl-C) no job is taken any more, and those under
    way are finished, within the shutdown's timeout from the signal (then they are left to
    the next process, which takes them over once their lease has run out)."""

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Any]:
        stop = start_job_loop(agent)
        if stop is not None:
            shutdown.on_begin(stop.set)
        try:
            async with inner(app) as state:
                yield state
        finally:
            if stop is not None:
                stop.set()
            if not await asyncio.to_thread(_portal.drain, shutdown.left()):
                log.warning(
                    "stopping with background jobs still running after the shutdown timeout "
                    "(%d s): another process takes them over when their lease runs out",
                    shutdown.timeout,
                )

    return lifespan


def app_from_env() -> FastAPI:
    """uvicorn's factory for worker processes (``noted serve --workers N``)."""
    path = os.environ.get(ENV_CONFIG)
    config = load_config(path) if path else ServeConfig()
    return build_app(
        open_store(os.environ[ENV_DB], **env_tables(os.environ[ENV_DB])),
        os.environ.get(ENV_EMBEDDER),
        config,
        mcp=os.environ.get(ENV_MCP) == "1",
        background=not os.environ.get(ENV_NO_BACKGROUND),
        shutdown_timeout=int(os.environ.get(ENV_SHUTDOWN_TIMEOUT, DEFAULT_SHUTDOWN_TIMEOUT)),
    )
