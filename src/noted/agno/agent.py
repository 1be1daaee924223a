"""Agno's ``Agent`` arguments (1.x and 2.x) on noted's :class:`noted.Agent`.

Agno 1.x: ``Agent(model=..., memory=Memory(...), storage=SqliteStorage(...),
add_history_to_messages=True, enable_agentic_memory=True, enable_user_memories=True)``;
Agno 2.x: ``Agent(db=PostgresDb(...), user_id=..., enable_user_memories=True,
add_history_to_context=True, add_datetime_to_context=True)``. The memories a run creates
are written before ``run`` / ``print_response`` returns, as in Agno.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterator, Sequence
from typing import Any

from noted.agent import agent as noted_agent
from noted.agent.events import RunEvent
from noted.agent.tools import Tool
from noted.agno.memory import Memory as AgnoMemory
from noted.agno.models import OpenAIChat
from noted.db.base import MemoryQuery, MemoryStore, SessionStore
from noted.errors import UserError
from noted.memory.manager import MemoryManager
from noted.memory.memory import Memory
from noted.memory.summary import SessionSummarizer
from noted.models.base import ChatModel
from noted.schema import UserMemory, require_id
from noted.sessions import RunResult, SessionSummary

__all__ = ["Agent"]


class Agent(noted_agent.Agent):
    """An agent that takes Agno's argument names. Without a model it uses
    ``OpenAIChat(id="gpt-4o")``, as Agno does. Enabling agentic memory and user memories
    together gives agentic memory (the model writes the memories with its tools).
    ``num_history_responses``, ``add_memory_references`` and
    ``add_session_summary_references`` are Agno 1.x's names of ``num_history_runs``,
    ``add_memories_to_context`` and ``add_session_summary_to_context``;
    ``session_summary_manager`` is noted's ``session_summarizer``. ``debug_mode`` is
    accepted (noted logs through :mod:`logging`)."""

    def __init__(
        self,
        model: ChatModel | str | None = None,
        *,
        name: str | None = None,
        agent_id: str | None = None,
        user_id: str | None = None,
        session_id: str | None = None,
        description: str | None = None,
        instructions: str | Sequence[str] | None = None,
        system_message: str | None = None,
        tools: Sequence[Tool | Callable[..., Any]] | None = None,
        memory: Memory | None = None,
        db: SessionStore | None = None,
        storage: SessionStore | None = None,
        memory_manager: MemoryManager | None = None,
        enable_agentic_memory: bool = False,
        enable_user_memories: bool = False,
        add_memories_to_context: bool | None = None,
        add_memory_references: bool | None = None,
        enable_session_summaries: bool = False,
        add_session_summary_to_context: bool | None = None,
        add_session_summary_references: bool | None = None,
        session_summary_manager: SessionSummarizer | None = None,
        add_history_to_messages: bool = False,
        add_history_to_context: bool = False,
        num_history_runs: int = 3,
        num_history_responses: int | None = None,
        read_chat_history: bool = False,
        add_datetime_to_context: bool = False,
        markdown: bool = False,
        debug_mode: bool = False,
    ) -> None:
        self.debug_mode = debug_mode
        super().__init__(
            model if model is not None else OpenAIChat(),
            db=db if db is not None else storage,
            user_id=user_id,
            session_id=session_id,
            name=name,
            agent_id=agent_id,
            description=description,
            instructions=instructions,
            system_message=system_message,
            tools=tools,
            markdown=markdown,
            add_datetime_to_context=add_datetime_to_context,
            add_history_to_context=add_history_to_context or add_history_to_messages,
            num_history_runs=num_history_runs
            if num_history_responses is None
            else num_history_responses,
            read_chat_history=read_chat_history,
            memory=memory,
            enable_user_memories=enable_user_memories and not enable_agentic_memory,
            enable_agentic_memory=enable_agentic_memory,
            add_memories_to_context=_either(add_memories_to_context, add_memory_references),
            memory_manager=memory_manager,
            enable_session_summaries=enable_session_summaries,
            add_session_summary_to_context=_either(
                add_session_summary_to_context, add_session_summary_references
            ),
            session_summarizer=session_summary_manager,
            background_memory=False,
        )
        if isinstance(memory, AgnoMemory):
            # its session summaries are the agent's, as in Agno (in this process, when the
            # agent has no storage)
            memory.sessions = self.db

    def get_user_memories(self, user_id: str | None = None) -> list[UserMemory]:
        """Every memory of the user, in the order they were added, as Agno lists them."""
        store = self.memory.store if self.memory is not None else self.db
        if not isinstance(store, MemoryStore):
            raise UserError("this agent's db keeps no memories")
        query = MemoryQuery(user_id=self._user(user_id), sort_by="created_at", sort_order="asc")
        return store.list_memories(query)

    def get_session_summary(
        self, session_id: str | None = None, user_id: str | None = None
    ) -> SessionSummary | None:
        """The summary of one of the user's sessions (by default the one the agent's next
        run continues), or None when it has none yet."""
        user = self._user(user_id)
        session = self.get_session_id(user) if session_id is None else session_id
        return self.db.get_session_summary(require_id("session_id", session), user)

    def run(  # type: ignore[override]
        self,
        message: str,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        stream: bool = False,
        stream_intermediate_steps: bool = False,
    ) -> RunResult | Iterator[RunEvent]:
        """noted's ``run``; ``stream_intermediate_steps`` is accepted (tool calls are
        always among the streamed events)."""
        del stream_intermediate_steps
        if stream:
            return super().run(message, user_id=user_id, session_id=session_id, stream=True)
        return super().run(message, user_id=user_id, session_id=session_id)

    def arun(  # type: ignore[override]
        self,
        message: str,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        stream: bool = False,
        stream_intermediate_steps: bool = False,
    ) -> Coroutine[Any, Any, RunResult] | _AwaitableEvents:
        """noted's ``arun``. A stream may be awaited first, as Agno 1.x's was
        (``async for event in await agent.arun(..., stream=True)``), or not."""
        del stream_intermediate_steps
        if stream:
            return _AwaitableEvents(
                super().arun(message, user_id=user_id, session_id=session_id, stream=True)
            )
        return super().arun(message, user_id=user_id, session_id=session_id)

    def print_response(
        self,
        message: str,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        stream: bool = False,
        markdown: bool | None = None,
        stream_intermediate_steps: bool = False,
    ) -> RunResult:
        del stream_intermediate_steps
        return super().print_response(
            message, user_id=user_id, session_id=session_id, stream=stream, markdown=markdown
        )

    def cli_app(
        self,
        message: str | None = None,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        stream: bool = False,
        markdown: bool | None = None,
    ) -> None:
        """Chat in the terminal; ``message`` is sent first when given."""
        if message is not None:
            self.print_response(
                message, user_id=user_id, session_id=session_id, stream=stream, markdown=markdown
            )
        super().cli_app(user_id=user_id, session_id=session_id, stream=stream, markdown=markdown)


def _either(setting: bool | None, older_name: bool | None) -> bool | None:
    """A setting given under its name or under Agno 1.x's older one (None: neither)."""
    return setting if setting is not None else older_name


class _AwaitableEvents:
    """A run's events, to ``async for`` over, awaited first or not."""

    def __init__(self, events: AsyncIterator[RunEvent]) -> None:
        self._events = events

    def __await__(self) -> Generator[Any, None, _AwaitableEvents]:
        return self._itself().__await__()

    async def _itself(self) -> _AwaitableEvents:
        return self

    def __aiter__(self) -> AsyncIterator[RunEvent]:
        return self._events.__aiter__()
