"""The agent's long-term memory: relevant memories into the prompt, and after each run the
memory manager's one model call, in the background by default."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from dataclasses import dataclass, field

from noted import _portal
from noted.agent.context import PromptSection, memory_section
from noted.audit import AuditContext
from noted.db.base import MemoryStore
from noted.errors import NotedError
from noted.memory.manager import MemoryManager, MemoryUpdate
from noted.models.base import ChatModel
from noted.models.types import Message
from noted.sessions import RunResult

__all__ = ["AgentMemory"]

log = logging.getLogger("noted.agent")


@dataclass
class AgentMemory:
    """Memory settings of one agent and the work it has started."""

    store: MemoryStore
    manager: MemoryManager
    automatic: bool
    in_context: bool
    context_chars: int = 4000
    background: bool = True
    pending: set[concurrent.futures.Future[MemoryUpdate]] = field(default_factory=set)

    async def section(self, user_id: str, message: str) -> PromptSection | None:
        if not self.in_context:
            return None
        memories = await asyncio.to_thread(
            self.manager.relevant_memories, self.store, user_id, message
        )
        return memory_section(memories, self.context_chars)

    async def after_run(self, run: RunResult, model: ChatModel, agent_id: str | None) -> None:
        """Hand the finished turn to the manager: started in the background, or awaited."""
        if not self.automatic or run.status != "completed":
            return
        turn = [m for m in run.messages if m.role == "user"][:1]
        if run.content:
            turn.append(Message("assistant", run.content))
        work = self.manager.aprocess(
            turn,
            user_id=run.user_id,
            db=self.store,
            model=model,
            audit=AuditContext(actor="manager", session_id=run.session_id, run_id=run.run_id),
            agent_id=agent_id,
        )
        if not self.background:
            try:
                await work
            except NotedError as exc:
                log.warning("memory update failed: %s", exc)
            return
        future = _portal.background(work)
        self.pending.add(future)
        future.add_done_callback(self._finished)

    def _finished(self, future: concurrent.futures.Future[MemoryUpdate]) -> None:
        self.pending.discard(future)
        if future.cancelled():
            return
        error = future.exception()
        if isinstance(error, NotedError):
            log.warning("memory update failed: %s", error)
        elif error is not None:
            log.error("memory update failed", exc_info=error)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the memory work started so far; False if some is still running."""
        _, not_done = concurrent.futures.wait(list(self.pending), timeout=timeout)
        return not not_done
