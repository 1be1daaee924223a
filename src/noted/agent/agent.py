"""Agent: a model, tools, instructions and session history, run one turn at a time.

The run loop is written once, as an async generator of events (``_events``). ``arun``
collects it, ``arun(stream=True)`` hands it out, and the sync ``run`` drives the same
generator on noted's background loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Iterator, Sequence
from contextlib import aclosing
from datetime import datetime
from typing import Any, Final, Literal, overload

from noted import _portal
from noted._async import aclose
from noted.agent.context import PromptSection, render_system_prompt, standard_sections
from noted.agent.events import (
    ContentDelta,
    RunCompleted,
    RunEvent,
    RunStarted,
    ToolCallCompleted,
    ToolCallStarted,
)
from noted.agent.fitting import answer_carried, check_message_fits, fit_run, fitted, shown_to_model
from noted.agent.history_tool import chat_history_tool
from noted.agent.jobs import agent_jobs
from noted.agent.memory import AgentMemory, BackgroundWork, SessionSummaries
from noted.agent.memory_tools import MEMORY_TOOL_NAMES
from noted.agent.options import check_count, check_flag, check_limit, memory_scope_of
from noted.agent.tools import Tool, ask_again, execute_tool_calls, to_tools
from noted.agent.tools import stop_reason as stop_reason_of
from noted.db.base import MemoryQuery, MemoryStore, SessionStore
from noted.db.memory import InMemoryDb
from noted.errors import ConflictError, NotedError, UserError
from noted.memory.manager import MemoryManager
from noted.memory.memory import DEFAULT_USER_ID, Memory
from noted.memory.summary import SessionSummarizer
from noted.models.base import ChatModel
from noted.models.registry import get_model
from noted.models.types import (
    Message,
    ModelRequest,
    ModelResponse,
    ResponseBuilder,
    TextDelta,
    ToolCall,
    split_pair,
    valid_text,
)
from noted.schema import UserMemory, check_new_user_id, check_unicode, require_id
from noted.sessions import RunResult, new_run_id, new_session_id
from noted.tracing import _hooks as tracing

__all__ = ["Agent"]

log = logging.getLogger("noted.agent")

# The users whose session an agent keeps for runs that name none (the most recently run):
# a user past them starts a new session at their next run.
USER_SESSIONS_KEPT: Final = 10_000

# The ``error`` of a run its caller stopped before it finished (a client gone mid-answer).
CANCELLED_RUN_ERROR: Final = "cancelled: the caller stopped the run before it finished"
# The ``error`` of a run a stopping server cancelled, with this text as the reason.
STOPPED_RUN_ERROR: Final = "cancelled: the server stopped before the run finished"


class Agent:
    """An agent that answers messages with a model, remembers each session's history,
    and calls tools.

    ``model`` is a model object or a string such as ``"openai:gpt-4o-mini"``. ``db`` keeps
    the sessions (any :class:`~noted.db.base.SessionStore`, e.g. :class:`~noted.SqliteDb`);
    without one they live in this process only. ``user_id`` and ``session_id`` are
    defaults for every run (a ``user_id`` with whitespace around it is refused, as a run
    refuses it); a run without a session id continues the session this agent
    started for that user (a new id is made on the user's first run).
    """

    def __init__(
        self,
        model: ChatModel | str,
        *,
        db: SessionStore | None = None,
        user_id: str | None = None,
        session_id: str | None = None,
        name: str | None = None,
        agent_id: str | None = None,
        description: str | None = None,
        instructions: str | Sequence[str] | None = None,
        system_message: str | None = None,
        tools: Sequence[Tool | Callable[..., Any]] | None = None,
        markdown: bool = False,
        add_datetime_to_context: bool = False,
        add_history_to_context: bool = False,
        num_history_runs: int = 3,
        read_chat_history: bool = False,
        max_tool_rounds: int = 10,
        max_tool_result_chars: int | None = 50_000,
        memory: Memory | None = None,
        enable_user_memories: bool = False,
        enable_agentic_memory: bool = False,
        add_memories_to_context: bool | None = None,
        memory_manager: MemoryManager | None = None,
        memory_context_chars: int = 4000,
        memory_context_tokens: int = 1200,
        memory_scope: str = "user",
        memory_query_turns: int = 1,
        memory_dates: bool = False,
        enable_session_summaries: bool = False,
        add_session_summary_to_context: bool | None = None,
        session_summarizer: SessionSummarizer | None = None,
        background_memory: bool = True,
    ) -> None:
        self.model = get_model(model)
        if db is not None and not isinstance(db, SessionStore):
            raise UserError(f"db must be a session store such as SqliteDb, got {db!r}")
        self.db: SessionStore = db if db is not None else InMemoryDb()
        self.user_id = (
            None if user_id is None else check_new_user_id(require_id("user_id", user_id))
        )
        self.session_id = None if session_id is None else require_id("session_id", session_id)
        self.name = name
        self.agent_id = agent_id if agent_id is not None else name
        self.description = description
        self.instructions = (
            [instructions] if isinstance(instructions, str) else list(instructions or ())
        )
        self.system_message = system_message
        self.tools = to_tools(tools)
        self.markdown = markdown
        self.add_datetime_to_context = add_datetime_to_context
        self.add_history_to_context = add_history_to_context
        self.num_history_runs = check_count("num_history_runs", num_history_runs, 0)
        self.read_chat_history = read_chat_history
        self.max_tool_rounds = check_count("max_tool_rounds", max_tool_rounds, 0)
        self.max_tool_result_chars = check_limit("max_tool_result_chars", max_tool_result_chars)
        query_turns = check_count("memory_query_turns", memory_query_turns, 0)
        dated = check_flag("memory_dates", memory_dates)
        self._user_sessions: OrderedDict[str, str] = OrderedDict()  # newest run last
        self._sessions_lock = threading.Lock()
        self._work = BackgroundWork(background=background_memory)
        self.memory = self._memory_settings(
            memory,
            "agentic" if enable_agentic_memory else "automatic" if enable_user_memories else None,
            add_memories_to_context,
            memory_manager,
            check_count("memory_context_chars", memory_context_chars, 0),
        )
        if self.memory is not None:
            self.memory.context_tokens = check_count(
                "memory_context_tokens", memory_context_tokens, 0
            )
            self.memory.scope_agent = memory_scope_of(memory_scope, self.agent_id)
            self.memory.query_turns = query_turns
            self.memory.dated = dated
        if enable_agentic_memory and enable_user_memories:
            warnings.warn(
                "enable_agentic_memory and enable_user_memories are both set: agentic memory "
                "takes precedence, so memories are not also extracted after each run",
                UserWarning,
                stacklevel=2,
            )
        self.summaries = self._summary_settings(
            memory,
            enable_session_summaries,
            add_session_summary_to_context,
            session_summarizer,
        )
        self._jobs = agent_jobs(
            self.db, self.model, self.memory, self.summaries, self.agent_id, background_memory
        )

    def _memory_settings(
        self,
        memory: Memory | None,
        mode: str | None,
        in_context: bool | None,
        manager: MemoryManager | None,
        context_chars: int,
    ) -> AgentMemory | None:
        in_context = mode is not None if in_context is None else in_context
        if mode is None and not in_context:
            return None
        if memory is None:
            if not isinstance(self.db, MemoryStore):
                raise UserError(
                    "memory needs a db that keeps memories (SqliteDb, InMemoryDb) or "
                    "memory=Memory(...)"
                )
            memory = Memory(db=self.db)
        if mode == "agentic":
            taken = sorted({t.name for t in self.tools} & set(MEMORY_TOOL_NAMES))
            if taken:
                raise UserError(f"agentic memory brings its own tools named {', '.join(taken)}")
        return AgentMemory(
            memory=memory,
            manager=manager or memory.memory_manager,
            mode=mode,
            in_context=in_context,
            context_chars=context_chars,
            work=self._work,
        )

    def _summary_settings(
        self,
        memory: Memory | None,
        enabled: bool,
        in_context: bool | None,
        summarizer: SessionSummarizer | None,
    ) -> SessionSummaries | None:
        in_context = enabled if in_context is None else in_context
        if not (enabled or in_context):
            return None
        if summarizer is None:
            summarizer = memory.summarizer if memory is not None else SessionSummarizer()
        return SessionSummaries(
            sessions=self.db,
            summarizer=summarizer,
            update=enabled,
            in_context=in_context,
            model=None if memory is None else memory.model,
            work=self._work,
        )

    def get_user_memories(self, user_id: str | None = None) -> list[UserMemory]:
        """Every memory of the user, newest first."""
        store = self.memory.store if self.memory is not None else self.db
        if not isinstance(store, MemoryStore):
            raise UserError("this agent's db keeps no memories")
        return store.list_memories(MemoryQuery(user_id=self._user(user_id)))

    def wait_for_memories(self, timeout: float | None = None) -> bool:
        """Wait until the memory and summary updates started by earlier runs are written;
        False if some are still running after ``timeout`` seconds. (They are also waited
        for when the program exits normally.) With a store that keeps jobs, this waits for
        the jobs of this agent's runs so far (a job given back by a worker that was stopped
        included, not one waiting for a retry after a failure), taking over those whose
        worker died; jobs of other processes and agents in the store are not waited for."""
        if self._jobs is not None:
            return self._jobs.wait(timeout)
        return self._work.wait(timeout)

    def __repr__(self) -> str:
        return f"Agent(model={self.model!r}, name={self.name!r})"

    # -- identity ------------------------------------------------------------------------

    def _user(self, user_id: str | None) -> str:
        if user_id is not None:
            return require_id("user_id", user_id)
        return self.user_id or DEFAULT_USER_ID

    def get_session_id(self, user_id: str | None = None) -> str:
        """The session a run for ``user_id`` continues when it names none."""
        if self.session_id is not None:
            return self.session_id
        user = self._user(user_id)
        with self._sessions_lock:  # runs of one user started at once share one session
            session = self._user_sessions.get(user)
            if session is None:
                session = self._user_sessions[user] = new_session_id()
                if len(self._user_sessions) > USER_SESSIONS_KEPT:  # a server of many users
                    self._user_sessions.popitem(last=False)
            else:
                self._user_sessions.move_to_end(user)
        return session

    # -- the prompt ----------------------------------------------------------------------

    def system_prompt(
        self, now: datetime | None = None, extra: Sequence[PromptSection] = ()
    ) -> str | None:
        """The system prompt of a run (``now`` is used when the datetime is in context;
        ``extra`` are the run's own sections, such as the user's memories)."""
        if self.system_message is not None:
            return self.system_message
        if self.add_datetime_to_context and now is None:
            now = datetime.now().astimezone()
        sections: list[PromptSection] = standard_sections(
            instructions=self.instructions,
            markdown=self.markdown,
            now=now if self.add_datetime_to_context else None,
        )
        return render_system_prompt(self.description, [*sections, *extra])

    # -- the run loop (the one source of truth) ------------------------------------------

    def _run_tools(self, session_id: str, user_id: str) -> list[Tool]:
        tools = list(self.tools)
        if self.read_chat_history:
            tools.append(
                chat_history_tool(self.db, session_id, user_id, self.max_tool_result_chars)
            )
        return tools

    def _earlier_runs(self, run: RunResult, wanted: int) -> tuple[list[RunResult], str | bool]:
        """The last ``wanted`` completed runs of the run's session, and which session the
        run continues (``existing`` for append_run): the id of the last run read of it,
        or False when the session is not stored (every session holds its first run). One
        read, and a second only when the first finds none."""
        if wanted:
            earlier = self.db.get_runs(
                run.session_id, run.user_id, last_n=wanted, completed_only=True
            )
            if earlier:
                return earlier, earlier[-1].run_id
        last = self.db.get_runs(run.session_id, run.user_id, last_n=1)
        return [], last[-1].run_id if last else False

    async def _opening(self, run: RunResult) -> tuple[list[Message], list[Tool], str | bool]:
        """The messages the first model call sees (system prompt, history, the new
        message), the run's tools, and which stored session the run continues (the id of
        a run read of it), or False when there was none (the run begins it)."""
        last_n = self.num_history_runs if self.add_history_to_context else 0
        memory = self.memory
        turns = memory.query_turns if memory is not None and memory.in_context else 0
        earlier, existing = await asyncio.to_thread(self._earlier_runs, run, max(last_n, turns))
        history = earlier[-last_n:] if last_n else []
        extra: list[PromptSection] = []
        tools = self._run_tools(run.session_id, run.user_id)
        if self.summaries is not None:
            section = await self.summaries.section(run)
            if section is not None:
                extra.append(section)
        if self.memory is not None:
            prepared = await self.memory.prepare(run, earlier)
            extra.extend(prepared.sections)
            tools.extend(prepared.tools)
        system = self.system_prompt(extra=extra)
        conversation = [Message("system", system)] if system else []
        for past in history:
            conversation.extend(past.messages)
        conversation.extend(run.messages)
        return conversation, tools, existing

    def _events(
        self, message: str, user_id: str, session_id: str, stream: bool
    ) -> AsyncIterator[RunEvent]:
        run = RunResult(
            run_id=new_run_id(),
            session_id=session_id,
            user_id=user_id,
            input=message,
            agent_id=self.agent_id,
            model=self.model.id,
            messages=[Message("user", message)],
        )
        return tracing.agent_run(self, run, self._loop(run, stream))

    async def _loop(self, run: RunResult, stream: bool) -> AsyncIterator[RunEvent]:
        started = time.perf_counter()
        opened = False
        # the stored session the run continues, named by a run read of it at its start
        existing: str | bool = False
        partial = ""  # the text streamed so far of the answer being made
        try:
            conversation, tools, existing = await self._opening(run)
            opened = True
            by_name = {tool.name: tool for tool in tools}
            definitions = [tool.definition() for tool in tools]
            yield RunStarted(run.run_id, run.session_id, run.user_id)
            rounds = 0
            while True:
                request = ModelRequest(messages=list(conversation), tools=definitions)
                response = ModelResponse()
                # closed at once when the caller stops the run here, not when collected
                async with aclosing(self._answer(request, run, stream, started)) as answers:
                    async for item in answers:
                        if isinstance(item, ModelResponse):
                            response = item
                        else:
                            partial += item.text
                            yield item
                partial = ""
                answer = response.to_message()
                conversation.append(answer)
                run.messages.append(answer)
                run.content = response.content
                if not response.tool_calls:  # the answer, or its start (the token limit)
                    run.stop_reason = stop_reason_of(response)
                    break
                for call in response.tool_calls:
                    yield ToolCallStarted(call)
                # not run: the calls of an answer cut off at its token limit, or past the last
                # round (this agent's, or the provider's: Gemini's TOO_MANY_TOOL_CALLS)
                if response.cut_short or response.tool_limited or rounds >= self.max_tool_rounds:
                    run.stop_reason = "max_tokens" if response.cut_short else "tool_limit"
                    results = [self._refusal(call, response) for call in response.tool_calls]
                    conversation.extend(results)
                    run.messages.extend(results)
                    break
                rounds += 1
                for execution in await execute_tool_calls(by_name, response.tool_calls):
                    run.metrics.tool_calls += 1
                    run.tool_calls.append(execution)
                    result = Message(
                        "tool",
                        shown_to_model(execution.result, self.max_tool_result_chars),
                        tool_call_id=execution.tool_call_id,
                        name=execution.name,
                    )
                    conversation.append(result)
                    run.messages.append(result)
                    yield ToolCallCompleted(execution)
        except BaseException as exc:
            # The failed turn is kept in the session for the record (status "failed"),
            # and left out of the history later runs replay; a run refused before it began
            # (another user's session, a bad setting) is not a turn.
            if opened or not isinstance(exc, UserError | ConflictError):
                await self._save_failed(run, exc, started, partial, existing)
            raise
        run.metrics.duration = time.perf_counter() - started
        # The run is answered: it is kept, and its memory work started, even when the
        # caller stops waiting meanwhile (a timeout).
        await asyncio.shield(self._keep(run, existing))
        yield RunCompleted(run)

    async def _keep(self, run: RunResult, existing: bool | str) -> None:
        """Store the finished run and start its background memory and summary work; a run
        of a session deleted while it ran (``existing``: the session it began in, when
        there was one), or deleted and begun again by another writer, is dropped with its
        session, and nothing is learned from it. A run too large to store, even with its
        tools' results and arguments cut (:func:`~noted.agent.fitting.fit_run`), raises
        :class:`~noted.errors.RunTooLargeError` carrying the run; a store failing to save
        it, :class:`~noted.errors.RunNotSavedError` carrying the run."""
        with answer_carried(run):  # the answer is the caller's all the same
            if self._jobs is not None:  # the run and its jobs in one write
                kept = await self._jobs.record(await fitted(run), existing)
            else:
                kept = await asyncio.to_thread(self._append_fitted, run, existing)
        if not kept:
            _dropped(run)
            return
        if self._jobs is not None:
            if self.memory is not None:  # the jobs are the manager's and the summary's
                await self.memory.finish_tools(run)
            return
        if self.memory is not None:
            await self.memory.finish(run, self.model)
        if self.summaries is not None:
            await self.summaries.finish(run, self.model)

    async def _answer(
        self, request: ModelRequest, run: RunResult, stream: bool, started: float
    ) -> AsyncGenerator[ContentDelta | ModelResponse, None]:
        """:meth:`_ask`, asked once more for an answer whose tool call the provider could
        not read (see :func:`~noted.agent.tools.ask_again`)."""
        asked_again = False
        while True:
            response = ModelResponse()
            async with aclosing(self._ask(request, run, stream, started)) as answers:
                async for item in answers:
                    if isinstance(item, ModelResponse):
                        response = item
                    else:
                        yield item
            if not ask_again(response, asked_again):
                yield response
                return
            asked_again = True

    async def _ask(
        self, request: ModelRequest, run: RunResult, stream: bool, started: float
    ) -> AsyncGenerator[ContentDelta | ModelResponse, None]:
        """One model call: the text deltas as they stream (when streaming), then the
        whole response as the last item. Counts the call in the run's metrics."""
        metrics = run.metrics
        called = time.perf_counter()
        if stream:
            builder = ResponseBuilder()
            deltas = tracing.stream(self.model, request, "agent", builder)
            held = ""  # the first half of a surrogate pair, until its second half comes
            try:
                async for delta in deltas:
                    builder.add(delta)
                    if isinstance(delta, TextDelta) and delta.text:
                        if metrics.time_to_first_token is None:
                            metrics.time_to_first_token = time.perf_counter() - started
                        text, held = split_pair(held + delta.text)
                        if text:
                            yield ContentDelta(valid_text(text))
                if held:
                    yield ContentDelta(valid_text(held))
            finally:
                await aclose(deltas)
            response = builder.build()
        else:
            response = await tracing.complete(self.model, request, "agent")
        metrics.model_calls += 1
        metrics.model_duration += time.perf_counter() - called
        metrics.add_usage(response.usage)
        yield response.valid()

    def _refusal(self, call: ToolCall, response: ModelResponse) -> Message:
        """The answer to a tool call made after the last allowed round, in an answer cut
        off at the model's token limit, or in one whose provider stopped its tool calls."""
        why = (
            "the answer was cut off at the model's token limit"
            if response.cut_short
            else "the model's provider stopped its tool calls (too many in one answer)"
            if response.tool_limited
            else f"the limit of {self.max_tool_rounds} tool rounds was reached"
        )
        return Message("tool", f"Not run: {why}.", tool_call_id=call.id, name=call.name)

    async def _save_failed(
        self,
        run: RunResult,
        exc: BaseException,
        started: float,
        partial: str = "",
        existing: bool | str = False,
    ) -> None:
        """Keep the failed turn, with ``partial``: the text streamed so far of the answer
        being made when it failed, which the user saw. Written in a worker thread, as a
        completed turn is: a server's loop must not wait for the store (every client that
        leaves mid-answer ends a run this way). Dropped, as a completed turn is, when its
        session was deleted while it ran (``existing``)."""
        if partial:
            run.content = valid_text(partial)
            run.messages.append(Message("assistant", run.content))
        run.status = "failed"
        if isinstance(exc, asyncio.CancelledError) and exc.args[:1] == (STOPPED_RUN_ERROR,):
            run.error = STOPPED_RUN_ERROR
        elif isinstance(exc, asyncio.CancelledError | GeneratorExit):
            run.error = CANCELLED_RUN_ERROR
        else:
            run.error = str(exc) or type(exc).__name__
        run.metrics.duration = time.perf_counter() - started
        try:
            saving = asyncio.to_thread(self._append_fitted, run, existing)
            if not await asyncio.shield(saving):
                _dropped(run)
        except NotedError as error:
            log.warning("could not save failed run %s: %s", run.run_id, error)

    def _append_fitted(self, run: RunResult, existing: bool | str) -> bool:
        """``db.append_run`` of the run as :func:`~noted.agent.fitting.fit_run` keeps it."""
        return self.db.append_run(fit_run(run), existing=existing)

    async def _collect(self, message: str, user_id: str, session_id: str) -> RunResult:
        # closed here, at its last event, not later by the garbage collector's hook (a
        # loop closed without shutting its generators down warns of a pending task)
        events = self._events(message, user_id, session_id, stream=False)
        try:
            async for event in events:
                if isinstance(event, RunCompleted):
                    return event.result
        finally:
            await aclose(events)
        raise AssertionError("a run ends with RunCompleted or an exception")  # pragma: no cover

    def _start(
        self, message: object, user_id: str | None, session_id: str | None
    ) -> tuple[str, str, str]:
        if not isinstance(message, str) or not message.strip():
            raise UserError(f"message must be a non-empty string, got {message!r}")
        check_unicode("message", message)  # before any model call: the run must be kept
        user = check_new_user_id(self._user(user_id))
        session = (
            require_id("session_id", session_id)
            if session_id is not None
            else self.get_session_id(user)
        )
        check_message_fits(message, user, session)
        return message, user, session

    # -- public entry points -------------------------------------------------------------

    @overload
    def arun(
        self,
        message: str,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        stream: Literal[False] = False,
    ) -> Coroutine[Any, Any, RunResult]: ...

    @overload
    def arun(
        self,
        message: str,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        stream: Literal[True],
    ) -> AsyncIterator[RunEvent]: ...

    def arun(
        self,
        message: str,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        stream: bool = False,
    ) -> Coroutine[Any, Any, RunResult] | AsyncIterator[RunEvent]:
        """``await agent.arun(message)`` -> :class:`RunResult`;
        ``async for event in agent.arun(message, stream=True)`` -> run events."""
        args = self._start(message, user_id, session_id)
        if stream:
            return self._events(*args, stream=True)
        return self._collect(*args)

    @overload
    def run(
        self,
        message: str,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        stream: Literal[False] = False,
    ) -> RunResult: ...

    @overload
    def run(
        self,
        message: str,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        stream: Literal[True],
    ) -> Iterator[RunEvent]: ...

    def run(
        self,
        message: str,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        stream: bool = False,
    ) -> RunResult | Iterator[RunEvent]:
        """Sync :meth:`arun`: a :class:`RunResult`, or with ``stream=True`` an iterator of
        run events (content deltas, tool calls, and finally :class:`RunCompleted`)."""
        args = self._start(message, user_id, session_id)
        if stream:
            return _portal.iterate(self._events(*args, stream=True))
        return _portal.run(self._collect(*args))

    def print_response(
        self,
        message: str,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        stream: bool = True,
        markdown: bool | None = None,
    ) -> RunResult:
        """Run and show the answer in the terminal, live while it streams."""
        from noted.agent.terminal import print_response

        return print_response(
            self,
            message,
            user_id=user_id,
            session_id=session_id,
            stream=stream,
            markdown=self.markdown if markdown is None else markdown,
        )

    def cli_app(
        self,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        stream: bool = True,
        markdown: bool | None = None,
    ) -> None:
        """Chat in the terminal until ``exit``, ``quit``, Ctrl-D or Ctrl-C (``/help`` lists
        the chat's own commands: ``/memories``, ``/forget ID``, ``/new``, ``/session``)."""
        from noted.agent.terminal import chat

        chat(
            self,
            user_id=user_id,
            session_id=session_id,
            stream=stream,
            markdown=self.markdown if markdown is None else markdown,
        )


def _dropped(run: RunResult) -> None:
    """Say that ``run`` was not saved: its session was deleted while it ran, and perhaps
    begun again by another writer (a deleted conversation stays deleted, and a new one
    under its id does not take the old one's run; the caller still has the run's
    answer)."""
    log.warning(
        "run %s was not saved: its session %r was deleted while it ran",
        run.run_id,
        run.session_id,
    )
