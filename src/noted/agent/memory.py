"""The agent's long-term memory and session summaries.

Before a run: the relevant memories (and the session's summary) go into the system prompt;
with agentic memory the run also gets the memory tools. After a run: the memory manager's
one model call (automatic memory) and the summary update, in the background by default.
Background work is chained per user and agent (memories) and per session (summaries), so
two quick runs never race to write the same facts or overwrite a newer summary.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import threading
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from noted import _portal
from noted.agent.context import (
    PromptSection,
    fit_memories,
    render_memory_section,
    summary_section,
)
from noted.agent.memory_tools import WRITING_TOOL_NAMES, MemoryTools, numbers_given
from noted.agent.tools import Tool
from noted.audit import AuditContext
from noted.db.base import MemoryQuery, MemoryStore, SessionStore
from noted.errors import ConflictError, NotedError
from noted.memory.index import MemoryIndex
from noted.memory.manager import MemoryManager, MemoryUpdate
from noted.memory.memory import Memory
from noted.memory.operations import number_memories
from noted.memory.selection import RecentTurns, search_memories, select_memories
from noted.memory.summary import SessionSummarizer, read_for_update
from noted.models.base import ChatModel
from noted.models.types import Message
from noted.schema import UserMemory
from noted.sessions import RunResult, SessionSummary
from noted.tracing import _hooks as tracing

__all__ = ["AgentMemory", "BackgroundWork", "RunMemory", "SessionSummaries"]


log = logging.getLogger("noted.agent")

CONTEXT_DEPTH: Final = 100  # the search's best matches read for the prompt ...
CONTEXT_CANDIDATES: Final = 100  # ... and how many memories are offered to its budget


# The last work started per key, of every BackgroundWork in the process: agents that share
# a store name the same key for a session's summaries, and for a user's memories when they
# have one agent id, and take turns on it as one agent's runs do.
_tails: dict[str, concurrent.futures.Future[Any]] = {}
_tails_lock = threading.Lock()


def work_key(kind: str, store: object, name: str, agent_id: str | None = None) -> str:
    """The key of background work of ``kind`` ("memory", "summary") on ``store`` for
    ``name`` (a user, with the agent whose runs it follows; a session): work of one key
    runs one at a time, in order."""
    return f"{kind}:{id(store)}:" + json.dumps([name, agent_id], ensure_ascii=False)


class BackgroundWork:
    """Work after a run: on noted's background loop, chained per key (across every agent
    of the process: see :func:`work_key`), waited for on request (and at normal exit); or,
    with ``background=False``, awaited where it is submitted, still in its key's turn.
    A noted error is logged, never raised into the run."""

    def __init__(self, background: bool = True) -> None:
        self.background = background
        self.pending: set[concurrent.futures.Future[Any]] = set()
        self._lock = threading.Lock()

    async def submit(self, key: str, work: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Run ``work()`` for ``key`` (see :func:`work_key`), in the trace of the run that
        submits it."""
        future = self._start(key, tracing.carry(work))
        if not self.background:
            with contextlib.suppress(NotedError):  # logged as it ended
                await asyncio.wrap_future(future)

    def _start(
        self, key: str, work: Callable[[], Coroutine[Any, Any, Any]]
    ) -> concurrent.futures.Future[Any]:
        with _tails_lock:
            before = _tails.get(key)

            async def after_previous() -> Any:
                if before is not None and not before.done():
                    await asyncio.wait([asyncio.wrap_future(before)])
                return await work()

            future = _portal.background(after_previous())
            _tails[key] = future
        with self._lock:
            self.pending.add(future)
        future.add_done_callback(lambda done: self._finished(key, done))
        return future

    def _finished(self, key: str, future: concurrent.futures.Future[Any]) -> None:
        with _tails_lock:
            if _tails.get(key) is future:
                del _tails[key]
        with self._lock:
            self.pending.discard(future)
        if future.cancelled():
            return
        error = future.exception()
        if isinstance(error, NotedError):
            log.warning("%s update failed: %s", key.partition(":")[0], error)
        elif error is not None:
            log.error("%s update failed", key.partition(":")[0], exc_info=error)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the work started so far; False if some is still running."""
        with self._lock:
            pending = list(self.pending)
        _, not_done = concurrent.futures.wait(pending, timeout=timeout)
        return not not_done


@dataclass(slots=True)
class RunMemory:
    """What memory adds to one run: prompt sections and tools."""

    sections: list[PromptSection] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)


def changed(update: MemoryUpdate) -> bool:
    """Whether the manager's pass wrote, deleted or cleared any memory."""
    return bool(update.memory_ids) or any(
        op.kind in ("delete", "clear") for op in update.operations
    )


@dataclass
class AgentMemory:
    """Memory settings of one agent. ``mode`` is "automatic" (the manager after each
    run), "agentic" (the memory tools) or None (memories only read into context)."""

    memory: Memory
    manager: MemoryManager
    mode: str | None
    in_context: bool
    context_chars: int = 4000
    work: BackgroundWork = field(default_factory=BackgroundWork)
    context_tokens: int = 1200
    scope_agent: str | None = None  # only this agent's memories and those of no agent
    query_turns: int = 1  # the session's earlier runs searched with the message
    dated: bool = False  # each memory in the prompt shows the day it was last changed

    @property
    def store(self) -> MemoryStore:
        return self.memory.db

    @property
    def index(self) -> MemoryIndex | None:
        """The Memory's, when it has an embedder."""
        return self.memory.index

    @property
    def model(self) -> ChatModel | None:
        """The Memory's own model, used before the agent's."""
        return self.memory.model

    @tracing.traced("retriever")
    def relevant(
        self, user_id: str, text: str, turns: RecentTurns | None = None
    ) -> list[UserMemory]:
        """The memories offered to the prompt for ``text`` (and, less, the session's
        recent ``turns``), most relevant first."""
        query = MemoryQuery(user_id=user_id, limit=CONTEXT_DEPTH)
        return select_memories(
            self.store,
            query,
            text,
            CONTEXT_CANDIDATES,
            index=self.index,
            agent_id=self.scope_agent,
            turns=turns,
        )

    def refresh(self, user_id: str, text: str) -> None:
        """After a run's memory work changed the user's memories, search them once (in
        the background, like that work): the new memories get their embeddings now and
        the store loads again what its searches keep per user (SQLite's vectors, the
        in-process store's and Redis's snapshots), work that the user's next run would
        otherwise wait for. Only an agent that reads memories into its prompt does this."""
        if not self.in_context:
            return
        try:
            search_memories(
                self.store,
                MemoryQuery(user_id=user_id, limit=1),
                text.strip() or "memories",
                index=self.index,
                agent_id=self.scope_agent,
            )
        except NotedError as exc:  # the update stands; the next run searches as it would
            log.warning("search after the memory update failed: %s", exc)

    async def arefresh(self, user_id: str, text: str) -> None:
        """:meth:`refresh` on a worker thread."""
        await asyncio.to_thread(self.refresh, user_id, text)

    def recent_turns(self, earlier: Sequence[RunResult]) -> RecentTurns:
        """The last ``query_turns`` of the session's earlier runs, for the memory query."""
        last = earlier[-self.query_turns :] if self.query_turns else []
        return RecentTurns.of([(past.input, past.content) for past in last])

    async def prepare(self, run: RunResult, earlier: Sequence[RunResult] = ()) -> RunMemory:
        """The run's memory section and tools; ``earlier`` are the session's runs before
        it, oldest first (their last ``query_turns`` join the memory query)."""
        prepared = RunMemory()
        agentic = self.mode == "agentic"
        # numbers that the replayed turns gave name nothing in this run (see numbers_given)
        first = numbers_given(earlier) + 1 if agentic else 1
        shown: dict[int, UserMemory] = {}
        if self.in_context:
            turns = self.recent_turns(earlier)
            relevant = await asyncio.to_thread(self.relevant, run.user_id, run.input, turns)
            kept = fit_memories(
                relevant,
                self.context_chars,
                numbered=agentic,
                budget_tokens=self.context_tokens,
                dated=self.dated,
                first=first,
            )
            section = render_memory_section(kept, numbered=agentic, dated=self.dated, first=first)
            if section is not None:
                prepared.sections.append(section)
            shown = number_memories(kept, first)
        if agentic:
            tools = MemoryTools(
                self.memory.door,
                self.manager,
                run.user_id,
                shown,
                AuditContext(actor="agent", session_id=run.session_id, run_id=run.run_id),
                said=run.input,
                agent_id=run.agent_id,
                scope_agent=self.scope_agent,
                first=first,
            )
            prepared.tools = tools.tools()
        return prepared

    async def _extract(self, run: RunResult, model: ChatModel) -> None:
        turn = [m for m in run.messages if m.role == "user"][:1]
        if run.content:
            turn.append(Message("assistant", run.content))
        update = await self.manager.aprocess(
            turn,
            user_id=run.user_id,
            door=self.memory.door,
            model=self.model or model,
            audit=AuditContext(actor="manager", session_id=run.session_id, run_id=run.run_id),
            agent_id=run.agent_id,
        )
        if changed(update):
            await self.arefresh(run.user_id, run.input)

    async def finish(self, run: RunResult, model: ChatModel) -> None:
        """Hand the finished turn to the manager (automatic memory), or refresh the
        search after the run's own memory tools wrote (agentic memory)."""
        if self.mode == "automatic" and run.status == "completed":
            key = work_key("memory", self.memory.db, run.user_id, run.agent_id)
            await self.work.submit(key, lambda: self._extract(run, model))
        await self.finish_tools(run)

    async def finish_tools(self, run: RunResult) -> None:
        """After an agentic run whose memory tools changed memories: :meth:`refresh` in the
        background."""
        if self.mode != "agentic" or not any(
            call.name in WRITING_TOOL_NAMES and not call.error for call in run.tool_calls
        ):
            return
        key = work_key("memory", self.memory.db, run.user_id, run.agent_id)
        await self.work.submit(key, lambda: self.arefresh(run.user_id, run.input))


@dataclass
class SessionSummaries:
    """Session summaries of one agent: read into context, updated after each run with the
    previous summary and the new run only."""

    sessions: SessionStore
    summarizer: SessionSummarizer
    update: bool
    in_context: bool
    model: ChatModel | None = None
    work: BackgroundWork = field(default_factory=BackgroundWork)

    async def section(self, run: RunResult) -> PromptSection | None:
        if not self.in_context:
            return None
        summary = await asyncio.to_thread(
            self.sessions.get_session_summary, run.session_id, run.user_id
        )
        return summary_section(summary)

    async def after(self, run: RunResult, model: ChatModel) -> SessionSummary | None:
        """The summary of the run's session brought up to date with its completed runs,
        this one included (and any an earlier update missed); None when the session is
        gone (deleted since the run, perhaps begun again by another user under its id).
        The last few runs are read, which hold the summary's last run unless updates
        failed or were off for longer: then every run is."""
        try:
            previous, runs = await read_for_update(self.sessions, run.session_id, run.user_id)
        except ConflictError:  # deleted, and now another user's: not this run's to summarize
            return None
        if previous is None and not runs:
            return None
        return await self.summarizer.asummarize(previous, runs, self.model or model)

    def store(self, session_id: str, user_id: str, summary: SessionSummary) -> None:
        """Write ``summary`` as the user's session's; nothing when the session is gone, or
        was deleted and begun again meanwhile (by this user or another)."""
        with contextlib.suppress(ConflictError):  # another user's session now
            self.sessions.set_session_summary(session_id, user_id, summary)

    async def _update(self, run: RunResult, model: ChatModel) -> None:
        summary = await self.after(run, model)
        if summary is None:
            return
        await asyncio.to_thread(self.store, run.session_id, run.user_id, summary)

    async def finish(self, run: RunResult, model: ChatModel) -> None:
        if not self.update or run.status != "completed":
            return
        key = work_key("summary", self.sessions, run.session_id)
        await self.work.submit(key, lambda: self._update(run, model))
