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
from noted.db.base import SessionStore
from noted.memory.memory import Memory
from noted.models.base import ChatModel
from noted.sessions import RunResult

__all__ = ["Agent"]


class Agent(noted_agent.Agent):
    """An agent that takes Agno's argument names. Without a model it uses
    ``OpenAIChat(id="gpt-4o")``, as Agno does. Enabling agentic memory and user memories
    together gives agentic memory (the model writes the memories with its tools).
    ``num_history_responses`` is Agno 1.x's older name of ``num_history_runs``."""

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
        enable_agentic_memory: bool = False,
        enable_user_memories: bool = False,
        add_memories_to_context: bool | None = None,
        enable_session_summaries: bool = False,
        add_history_to_messages: bool = False,
        add_history_to_context: bool = False,
        num_history_runs: int = 3,
        num_history_responses: int | None = None,
        read_chat_history: bool = False,
        add_datetime_to_context: bool = False,
        markdown: bool = False,
    ) -> None:
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
            add_memories_to_context=add_memories_to_context,
            enable_session_summaries=enable_session_summaries,
            background_memory=False,
        )
        if isinstance(memory, AgnoMemory):
            # its session summaries are the agent's, as in Agno (in this process, when the
            # agent has no storage)
            memory.sessions = self.db

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
