"""``noted serve --config noted.toml``: the server and its agent described in a file.

[server]
db = "noted.db"            # or a postgresql:// mongodb:// redis:// URL
host = "127.0.0.1"
port = 7777
embedder = "local"         # semantic and hybrid search; "none" for keyword only
user = "ava"               # noted mcp: whose memories the tools reach (default "default")
shutdown_timeout = 25      # seconds the runs (noted mcp --http: requests) get after SIGTERM

[agent]                    # optional: adds POST /agents/{agent_id}/runs
model = "openai:gpt-4o-mini"
agent_id = "assistant"
instructions = ["Be brief."]
memory = "auto"            # auto (learn after each run), agentic (memory tools), off
summaries = false
history = 3                # earlier runs replayed into each prompt
memory_dates = false       # each recalled fact shown with the day it was last stated
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from noted.agent import Agent
from noted.db.base import SessionStore
from noted.errors import UserError

__all__ = ["AgentConfig", "ServeConfig", "build_agent", "load_config"]

MEMORY_MODES: Final = ("auto", "agentic", "off")


@dataclass(frozen=True, slots=True)
class AgentConfig:
    model: str
    agent_id: str | None = None
    name: str | None = None
    description: str | None = None
    instructions: list[str] = field(default_factory=list)
    memory: str = "auto"
    summaries: bool = False
    history: int = 3
    memory_dates: bool = False


@dataclass(frozen=True, slots=True)
class ServeConfig:
    db: str | None = None
    host: str | None = None
    port: int | None = None
    embedder: str | None = None
    user: str | None = None
    shutdown_timeout: int | None = None
    agent: AgentConfig | None = None


_TOML_TYPES: Final = {int: "an integer", str: "a string", bool: "true or false"}


def _typed(section: str, data: dict[str, Any], name: str, kind: type) -> Any:
    value = data.get(name)
    if value is not None and type(value) is not kind:
        raise UserError(f"[{section}] {name} must be {_TOML_TYPES[kind]}, got {value!r}")
    return value


def _port(value: int | None) -> int | None:
    if value is not None and not 0 < value < 65536:
        raise UserError(f"[server] port must be from 1 to 65535, got {value}")
    return value


def _positive(name: str, value: int | None) -> int | None:
    if value is not None and value < 1:
        raise UserError(f"[server] {name} must be a positive number of seconds, got {value}")
    return value


def _known(section: str, data: dict[str, Any], names: tuple[str, ...]) -> None:
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise UserError(f"[{section}] has unknown keys: {', '.join(unknown)}")


def _agent(data: dict[str, Any]) -> AgentConfig:
    names = ("model", "agent_id", "name", "description", "instructions", "memory")
    _known("agent", data, (*names, "summaries", "history", "memory_dates"))
    model = _typed("agent", data, "model", str)
    if not model:
        raise UserError('[agent] needs a model, e.g. model = "openai:gpt-4o-mini"')
    instructions = data.get("instructions", [])
    if isinstance(instructions, str):
        instructions = [instructions]
    if not isinstance(instructions, list) or not all(isinstance(i, str) for i in instructions):
        raise UserError("[agent] instructions must be a string or a list of strings")
    memory = _typed("agent", data, "memory", str) or "auto"
    if memory not in MEMORY_MODES:
        raise UserError(f"[agent] memory must be one of {', '.join(MEMORY_MODES)}, got {memory!r}")
    history = _typed("agent", data, "history", int)
    return AgentConfig(
        model=model,
        agent_id=_typed("agent", data, "agent_id", str),
        name=_typed("agent", data, "name", str),
        description=_typed("agent", data, "description", str),
        instructions=instructions,
        memory=memory,
        summaries=bool(_typed("agent", data, "summaries", bool)),
        history=3 if history is None else history,
        memory_dates=bool(_typed("agent", data, "memory_dates", bool)),
    )


def load_config(path: str | Path) -> ServeConfig:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"cannot read the config file {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"the config file {path} is not valid TOML: {exc}") from None
    _known("top level", data, ("server", "agent"))
    server = data.get("server", {})
    agent = data.get("agent")
    if not isinstance(server, dict) or (agent is not None and not isinstance(agent, dict)):
        raise UserError("[server] and [agent] must be tables")
    _known("server", server, ("db", "host", "port", "embedder", "user", "shutdown_timeout"))
    return ServeConfig(
        db=_typed("server", server, "db", str),
        host=_typed("server", server, "host", str),
        port=_port(_typed("server", server, "port", int)),
        embedder=_typed("server", server, "embedder", str),
        user=_typed("server", server, "user", str),
        shutdown_timeout=_positive(
            "shutdown_timeout", _typed("server", server, "shutdown_timeout", int)
        ),
        agent=None if agent is None else _agent(agent),
    )


def build_agent(config: AgentConfig, db: SessionStore) -> Agent:
    return Agent(
        config.model,
        db=db,
        agent_id=config.agent_id,
        name=config.name,
        description=config.description,
        instructions=config.instructions,
        add_history_to_context=config.history > 0,
        num_history_runs=max(config.history, 0),
        enable_user_memories=config.memory == "auto",
        enable_agentic_memory=config.memory == "agentic",
        enable_session_summaries=config.summaries,
        memory_dates=config.memory_dates,
    )
