"""The app as ``noted serve`` builds it, also in each worker process of ``--workers N``
(uvicorn starts workers from an import string, so the settings travel in environment
variables)."""

from __future__ import annotations

import gc
import os
from typing import Final

from fastapi import FastAPI

from noted.db.base import Store
from noted.db.urls import open_store
from noted.memory import Memory
from noted.retrieval.choice import DEFAULT_EMBEDDER
from noted.server.app import create_app
from noted.server.config import ServeConfig, build_agent, load_config

__all__ = ["ENV_CONFIG", "ENV_DB", "ENV_EMBEDDER", "ENV_MCP", "app_from_env", "build_app"]

ENV_DB: Final = "NOTED_SERVE_DB"
ENV_EMBEDDER: Final = "NOTED_SERVE_EMBEDDER"
ENV_CONFIG: Final = "NOTED_SERVE_CONFIG"
ENV_MCP: Final = "NOTED_SERVE_MCP"


def build_app(
    store: Store, embedder: str | None, config: ServeConfig, mcp: bool = False
) -> FastAPI:
    """The served app: the store, an embedder (the default's when neither ``embedder``
    nor the config names one; ``"none"`` for keyword search only), the config file's agent
    if it has one, and the MCP endpoint with ``mcp``."""
    memory = Memory(store, embedder=embedder or config.embedder or DEFAULT_EMBEDDER)
    agent = None if config.agent is None else build_agent(config.agent, store)
    app = create_app(memory=memory, agent=agent, mcp=mcp)
    # The objects built so far live as long as the process: keep the collector from
    # walking them again on every full collection (fewer and shorter pauses under load).
    gc.collect()
    gc.freeze()
    return app


def app_from_env() -> FastAPI:
    """uvicorn's factory for worker processes (``noted serve --workers N``)."""
    path = os.environ.get(ENV_CONFIG)
    config = load_config(path) if path else ServeConfig()
    return build_app(
        open_store(os.environ[ENV_DB]),
        os.environ.get(ENV_EMBEDDER),
        config,
        mcp=os.environ.get(ENV_MCP) == "1",
    )
