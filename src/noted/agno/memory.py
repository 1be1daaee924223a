"""Agno 1.x's ``Memory`` (``agno.memory.v2``) and ``RunResponse`` on noted's Memory.

Everything noted's :class:`noted.Memory` does, with Agno's argument order and names, plus
the in-process run history Agno's memory kept per session (``add_run``,
``get_messages_from_last_n_runs``). As in Agno, ``get_user_memories`` lists a user's
memories in the order they were added, and ``replace_user_memory`` stores the memory under
the given id when the user has none with it yet.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from noted import schema
from noted.db.base import MemoryStore, SessionStore, SortField, SortOrder
from noted.errors import NotFoundError, UserError
from noted.memory import memory as noted_memory
from noted.memory.door import resolve_user
from noted.memory.manager import MemoryManager
from noted.memory.summary import SessionSummarizer
from noted.models.base import ChatModel
from noted.models.types import Message
from noted.retrieval.embedders import Embedder
from noted.schema import MemoryMatch, check_id, require_id
from noted.sessions import RunResult, SessionSummary

__all__ = ["Memory", "RunResponse", "UserMemory"]


class UserMemory(schema.UserMemory):
    """Agno 1.x's ``UserMemory(memory, topics, input, last_updated, memory_id)``: the same
    positional order, ``topics=None`` for none, and ``last_updated`` (noted's
    ``updated_at``) taken by the constructor and by ``from_dict``. It is a
    :class:`noted.UserMemory` everywhere one is taken."""

    __slots__ = ()

    def __init__(
        self,
        memory: str,
        topics: list[str] | None = None,
        input: str | None = None,
        last_updated: datetime | None = None,
        memory_id: str | None = None,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        team_id: str | None = None,
        session_id: str | None = None,
        created_at: datetime | None = None,
        updated_at: datetime | None = None,
    ) -> None:
        super().__init__(
            memory,
            topics=[] if topics is None else topics,
            input=input,
            memory_id=memory_id,
            user_id=user_id,
            agent_id=agent_id,
            team_id=team_id,
            session_id=session_id,
            created_at=created_at,
            updated_at=updated_at if updated_at is not None else _aware(last_updated),  # type: ignore[arg-type]
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> schema.UserMemory:
        """noted's fields, or Agno's ``to_dict()`` (``last_updated`` as ISO 8601 text)."""
        if isinstance(data, Mapping) and "last_updated" in data:
            data = {k: v for k, v in data.items() if k != "last_updated"} | {
                "updated_at": data.get("updated_at") or _aware(data["last_updated"])
            }
        return super().from_dict(data)


def _aware(when: object) -> object:
    """Agno's ``last_updated``: a datetime or its ISO text, naive ones in local time (as
    ``datetime.now()`` gives them), made timezone-aware; anything else is left to the
    checks of :class:`noted.UserMemory`."""
    if isinstance(when, str):
        try:
            when = datetime.fromisoformat(when)
        except ValueError:
            return when
    if isinstance(when, datetime) and when.tzinfo is None:
        return when.astimezone(UTC)
    return when


@dataclass
class RunResponse:
    """One turn as Agno 1.x handed it around: the answer and the turn's messages."""

    content: str | None = None
    messages: list[Message] | None = None
    run_id: str | None = None
    session_id: str | None = None
    agent_id: str | None = None
    extra_data: dict[str, object] = field(default_factory=dict)


class Memory(noted_memory.Memory):
    """``Memory(db=SqliteMemoryDb(...), model=...)``: user memories on a noted store.

    ``delete_memories`` and ``clear_memories`` let the memory manager delete and clear, as
    in Agno, also when a ``memory_manager`` is given (a copy of it then has them on)."""

    def __init__(
        self,
        model: ChatModel | str | None = None,
        memory_manager: MemoryManager | None = None,
        summarizer: SessionSummarizer | None = None,
        db: MemoryStore | None = None,
        *,
        delete_memories: bool = False,
        clear_memories: bool = False,
        embedder: Embedder | str | None = None,
        debug_mode: bool = False,
    ) -> None:
        if memory_manager is not None and (delete_memories or clear_memories):
            memory_manager = _allowing(memory_manager, delete_memories, clear_memories)
            delete_memories = clear_memories = False
        super().__init__(
            db,
            model=model,
            embedder=embedder,
            memory_manager=memory_manager,
            summarizer=summarizer,
            delete_memories=delete_memories,
            clear_memories=clear_memories,
        )
        self.debug_mode = debug_mode
        self.runs: dict[str, list[RunResponse]] = {}
        # the summaries of sessions kept with add_run (in this process, as Agno kept them)
        self.summaries: dict[tuple[str, str], SessionSummary] = {}
        # an Agent's storage, when the sessions are not kept in ``db`` (Agno 1.x's layout)
        self.sessions: SessionStore | None = None

    def _sessions(self) -> SessionStore:
        return self.sessions if self.sessions is not None else super()._sessions()

    async def acreate_session_summary(
        self, session_id: str, user_id: str | None = None
    ) -> SessionSummary:
        """Summarize the session: the runs kept with ``add_run`` when it has some (the
        summary stays in this process, as in Agno), else the session in the store."""
        kept = self.runs.get(require_id("session_id", session_id))
        if not kept:
            return await super().acreate_session_summary(session_id, user_id)
        user = resolve_user(user_id)
        runs = [_as_run(run, session_id, user, place) for place, run in enumerate(kept)]
        previous = self.summaries.get((session_id, user))
        summary = await self.summarizer.asummarize(previous, runs, self.model)
        self.summaries[session_id, user] = summary
        return summary

    def get_session_summary(
        self, session_id: str, user_id: str | None = None
    ) -> SessionSummary | None:
        kept = self.summaries.get((require_id("session_id", session_id), resolve_user(user_id)))
        return kept if kept is not None else super().get_session_summary(session_id, user_id)

    def get_user_memories(
        self,
        user_id: str | None = None,
        *,
        topics: Iterable[str] | str | None = None,
        agent_id: str | None = None,
        team_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        sort_by: SortField = "created_at",
        sort_order: SortOrder = "asc",
    ) -> list[schema.UserMemory]:
        """The user's memories in the order they were added, as Agno lists them."""
        return super().get_user_memories(
            user_id,
            topics=topics,
            agent_id=agent_id,
            team_id=team_id,
            limit=limit,
            offset=offset,
            sort_by=sort_by,
            sort_order=sort_order,
        )

    def search_user_memories(  # type: ignore[override]
        self,
        query: str | None = None,
        limit: int | None = None,
        retrieval_method: str | None = None,
        user_id: str | None = None,
        refresh_from_db: bool = True,
        **filters: Any,
    ) -> list[MemoryMatch]:
        """Agno's argument order and defaults: without a method, the user's newest
        memories (``"last_n"``), listed oldest first as Agno lists them; a limit of 0 or
        None takes them all. noted's methods (``"hybrid"``, ``"keyword"``, ``"semantic"``)
        and filters (``topics=``...) are there too. Every read goes to the store, so
        ``refresh_from_db`` changes nothing."""
        del refresh_from_db
        method = retrieval_method or "last_n"
        found = super().search_user_memories(query, user_id, limit or None, method, **filters)
        return found[::-1] if method == "last_n" else found

    def initialize(self, user_id: str | None = None) -> None:
        """Nothing to load: every read goes to the store (kept for Agno's callers)."""
        check_id("user_id", user_id)

    def replace_user_memory(
        self, memory_id: str, memory: schema.UserMemory, user_id: str | None = None
    ) -> str:
        try:
            return super().replace_user_memory(memory_id, memory, user_id)
        except NotFoundError:
            given = memory.copy()
            given.memory_id = require_id("memory_id", memory_id)
            return self.add_user_memory(given, user_id)

    # -- Agno 1.x's per-session run history (in this process) ----------------------------

    def add_run(self, session_id: str, run: RunResponse) -> None:
        """Keep one turn of a session, for ``get_messages_from_last_n_runs``: in place of
        the kept run with the same ``run_id``, as Agno does, else after the others."""
        if not isinstance(run, RunResponse):
            raise UserError(f"run must be a RunResponse, got {type(run).__name__}")
        runs = self.runs.setdefault(require_id("session_id", session_id), [])
        for place, kept in enumerate(runs):
            if run.run_id is not None and kept.run_id == run.run_id:
                runs[place] = run
                return
        runs.append(run)

    def get_runs(self, session_id: str) -> list[RunResponse]:
        return list(self.runs.get(require_id("session_id", session_id), ()))

    def get_messages_from_last_n_runs(
        self, session_id: str, last_n: int | None = None, skip_role: str | None = None
    ) -> list[Message]:
        """The messages of the session's last ``last_n`` runs (all when None), oldest
        first; the first system message leads, later ones and ``skip_role``'s are left out."""
        runs = self.get_runs(session_id)
        if last_n is not None:
            if type(last_n) is not int or last_n < 0:
                raise UserError(f"last_n must be an integer >= 0, got {last_n!r}")
            runs = runs[len(runs) - last_n :] if last_n else []
        system: list[Message] = []
        messages: list[Message] = []
        for run in runs:
            for message in run.messages or ():
                if skip_role is not None and message.role == skip_role:
                    continue
                if message.role == "system":
                    if not system:
                        system.append(message)
                    continue
                messages.append(message)
        return system + messages


def _allowing(manager: MemoryManager, delete: bool, clear: bool) -> MemoryManager:
    """A copy of ``manager`` that may also delete (``delete``) and clear (``clear``) the
    user's memories, as Agno's ``Memory(delete_memories=..., clear_memories=...)`` lets
    the manager it is given."""
    allowed = copy.copy(manager)
    granted = allowed.permissions
    allowed.permissions = replace(
        granted, delete=granted.delete or delete, clear=granted.clear or clear
    )
    return allowed


def _as_run(run: RunResponse, session_id: str, user_id: str, place: int) -> RunResult:
    """A turn kept with ``add_run`` (the ``place``-th) as the summarizer reads one; one
    kept without an id is named by its place, which stays its own (kept turns are only
    appended or replaced), so the summary's last run is found again at the next update."""
    said = next((m.content or "" for m in run.messages or () if m.role == "user"), "")
    return RunResult(
        run_id=run.run_id or f"kept-{place}",
        session_id=session_id,
        user_id=user_id,
        input=said,
        agent_id=run.agent_id,
        content=run.content,
        messages=list(run.messages or ()),
    )
