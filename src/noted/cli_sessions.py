"""``noted chat`` and ``noted sessions``: talk to an agent, read and delete session history.

The CLI is an administrator's tool: without ``--user`` the session commands span every
user (session ids are unique across users); with it they see that user's sessions only.
"""

from __future__ import annotations

import argparse
import os
import signal
from collections.abc import Callable
from typing import Final

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from noted._console import emit_json, out, printable
from noted._listing import Field, Listing
from noted.agent import Agent
from noted.cli_db import embedder_option, non_negative_int, positive_int, user_options
from noted.db import SessionStore
from noted.db.sessions_core import session_pages
from noted.errors import ConflictError, NotFoundError, UserError
from noted.memory import Memory
from noted.memory.door import DEFAULT_USER_ID
from noted.models._provider import HTTPChatModel
from noted.sessions import RunResult, Session, SessionSummary

__all__ = ["INTERRUPTED", "add_chat_command", "add_session_commands"]

# The exit status of a chat ended by Ctrl-C, as a shell reports a program SIGINT ended
INTERRUPTED: Final = 128 + signal.SIGINT
SHOWN_RUNS: Final = 50  # the newest runs of a session `noted sessions show` prints


def _store(memory: Memory) -> SessionStore:
    if not isinstance(memory.db, SessionStore):  # pragma: no cover - every CLI db has sessions
        raise UserError(f"{memory.db!r} does not keep sessions")
    return memory.db


def _when(session: Session) -> str:
    return session.updated_at.strftime("%Y-%m-%d %H:%M:%S")


def cmd_chat(memory: Memory, args: argparse.Namespace) -> int:
    model = args.model or os.environ.get("NOTED_MODEL")
    if not model:
        raise UserError(
            "choose a model: --model provider:model-id (for example ollama:llama3.2 or "
            "openai:gpt-4o-mini), or set NOTED_MODEL"
        )
    store = _store(memory)
    agent = Agent(
        model,
        db=store,
        memory=memory,  # its embedder is --embedder's; its writes are the chat's ("cli")
        user_id=args.user,
        session_id=args.session,
        instructions=args.instructions,
        markdown=not args.plain,
        add_history_to_context=args.history > 0,
        num_history_runs=args.history,
        enable_user_memories=args.memory == "auto",
        enable_agentic_memory=args.memory == "agentic",
        memory_dates=args.memory_dates,
        enable_session_summaries=args.summaries,
    )
    if isinstance(agent.model, HTTPChatModel):
        if args.timeout is not None:
            agent.model.timeout = float(args.timeout)
        agent.model.check_ready()
    elif args.timeout is not None:  # taken silently, it would seem to apply
        raise UserError(
            "--timeout limits the calls of a model served over HTTP; "
            f"{type(agent.model).__name__} runs in this process, with no time limit"
        )
    if args.session is not None:  # another user's session: refused now, not at each turn
        try:
            store.get_runs(args.session, agent.user_id or DEFAULT_USER_ID, last_n=0)
        except ConflictError:
            raise UserError(f"session {args.session!r} belongs to another user") from None
    from noted.agent.terminal import chat  # as Agent.cli_app does: rich's live view on use

    ended_by_ctrl_c = chat(
        agent,
        user_id=None,
        session_id=None,
        stream=not args.no_stream,
        markdown=agent.markdown,
        memory=memory,  # /memories WORDS searches with --embedder under --memory off too
    )
    return INTERRUPTED if ended_by_ctrl_c else 0


def cmd_sessions_list(memory: Memory, args: argparse.Namespace) -> int:
    sessions = _store(memory).list_sessions(args.user, limit=args.limit, offset=args.offset)
    if args.json:
        emit_json([s.to_dict(with_runs=False) for s in sessions])
        return 0
    who = "every user" if args.user is None else f"user {args.user}"
    fields = [
        Field("session", "head"),
        Field("user"),
        Field("agent"),
        Field("runs", justify="right"),
        Field("updated (UTC)", "head"),
    ]
    rows = [
        [s.session_id, s.user_id, s.agent_id or "", str(s.run_count), _when(s)] for s in sessions
    ]
    out.print(Listing(f"Sessions of {who}", fields, rows))
    return 0


def _get_session(
    memory: Memory, session_id: str, user_id: str | None, last_n: int | None, offset: int
) -> Session:
    session = session_pages(_store(memory))(session_id, user_id, last_n, offset)
    if session is None:
        owner = "" if user_id is None else f" for user {user_id!r}"
        raise NotFoundError(f"no session {session_id!r}{owner}")
    return session


def _print_run(out: Console, run: RunResult) -> None:
    """A run of a transcript; what the user and the model wrote is shown without the
    escape sequences in it (see :func:`printable`)."""
    stamp = run.created_at.strftime("%Y-%m-%d %H:%M:%S")
    out.print(Text(f"{stamp}  {run.run_id}", style="dim"))
    out.print(Text.assemble(("you: ", "bold green"), printable(run.input)))
    for execution in run.tool_calls:
        style = "red" if execution.error else "dim"
        said = printable(f"  tool {execution.name}: {execution.result[:200]}")
        out.print(Text(said, style=style))
    if run.status == "failed":
        out.print(Text(printable(f"failed: {run.error}"), style="red"))
    elif run.content:
        out.print(Text.assemble(("assistant: ", "bold blue"), printable(run.content)))
    out.print()


def _print_summary(out: Console, summary: SessionSummary) -> None:
    """A session's summary: its text, its topics and how many runs it covers."""
    out.print(Text(printable(f"summary: {summary.summary}"), style="italic"))
    if summary.topics:
        out.print(Text(printable(f"topics: {', '.join(summary.topics)}")))
    stamp = summary.updated_at.strftime("%Y-%m-%d %H:%M:%S")
    covers = f"covers {summary.run_count} completed run(s), updated {stamp} UTC"
    out.print(Text(covers, style="dim"))


def cmd_sessions_show(memory: Memory, args: argparse.Namespace) -> int:
    last_n = None if args.all else args.limit
    session = _get_session(memory, args.session_id, args.user, last_n, args.offset)
    if args.json:
        emit_json(session.to_dict())
        return 0
    out.print(
        f"[bold]session {escape(session.session_id)}[/] user {escape(session.user_id)}, "
        f"{session.run_count} run(s), updated {_when(session)} UTC"
    )
    if session.summary:
        _print_summary(out, session.summary)
    out.print()
    for run in session.runs:
        _print_run(out, run)
    older = session.run_count - args.offset - len(session.runs)
    if older > 0:
        out.print(
            Text(f"{older} older run(s) not shown: --offset {args.offset + len(session.runs)}")
        )
    return 0


def cmd_sessions_delete(memory: Memory, args: argparse.Namespace) -> int:
    store = _store(memory)
    missing = [sid for sid in args.session_ids if not store.delete_session(sid, args.user)]
    deleted = len(args.session_ids) - len(missing)
    if args.json:
        emit_json({"deleted": deleted, "not_found": missing})
    else:
        out.print(f"deleted {deleted} session(s)")
    if missing:
        raise NotFoundError(f"no such session: {', '.join(missing)}")
    return 0


class _NoJsonChat(argparse.Action):
    """``noted chat --json``: a usage error. Every other command's --json prints its
    result as one JSON document; a chat's answers are text as they come, and a session's
    runs (ids, answers, token counts) are JSON in ``noted sessions show ID --json``."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        parser.error(
            "--json: the chat prints its answers as text; `noted sessions show SESSION "
            "--json` gives a session's newest 50 runs as JSON (--all: every run)"
        )


def add_chat_command(
    groups: argparse._SubParsersAction[argparse.ArgumentParser], db_option: argparse.ArgumentParser
) -> None:
    """``noted chat``: ``db_option``'s options, ``--user`` and the chat's own (no
    ``--json``, which it refuses)."""
    options = user_options(db_option, f"user id (default: {DEFAULT_USER_ID!r})", json=False)
    chat = groups.add_parser(
        "chat",
        parents=[options],
        help="chat with an agent in the terminal; the session is kept in --db",
        description="Chat with an agent in the terminal. Leave with exit, quit or Ctrl-D "
        "(exit status 0) or Ctrl-C (130). End a line with \\ to go on with the message on "
        "the next. /help lists the chat's own commands (/memories, /forget ID, /new, "
        "/session). Run again with the same --session to continue a conversation.",
    )
    chat.set_defaults(func=cmd_chat)
    chat.add_argument("--model", "-m", help="provider:model-id (default: $NOTED_MODEL)")
    chat.add_argument("--session", "-s", help="session id to continue (default: a new one)")
    chat.add_argument("--instructions", "-i", help="instructions for the agent")
    chat.add_argument(
        "--history",
        type=non_negative_int,
        default=5,
        help="earlier runs replayed to the model (default 5)",
    )
    chat.add_argument(
        "--memory",
        choices=("auto", "agentic", "off"),
        default="auto",
        help="learn facts about the user after each turn (auto, the default), let the model "
        "manage them with tools (agentic), or neither (off)",
    )
    chat.add_argument(
        "--memory-dates",
        action="store_true",
        help="show the model the day each remembered fact was last stated or changed",
    )
    chat.add_argument(
        "--summaries", action="store_true", help="keep a running summary of the session"
    )
    embedder_option(chat)
    chat.add_argument(
        "--timeout",
        type=positive_int,
        metavar="SECONDS",
        help="how long each model call may take before it is tried again (default: the "
        "provider's, 60 for most; raise it for a local model on a CPU, whose memory "
        "updates can take minutes)",
    )
    chat.add_argument("--no-stream", action="store_true", help="print answers when complete")
    chat.add_argument("--plain", action="store_true", help="plain text instead of markdown")
    chat.add_argument("--json", nargs=0, action=_NoJsonChat, help=argparse.SUPPRESS)


def add_session_commands(
    groups: argparse._SubParsersAction[argparse.ArgumentParser], db_option: argparse.ArgumentParser
) -> None:
    """The session commands; their ``--user`` narrows them (they span every user)."""
    common = user_options(db_option, "only this user's sessions (default: every user's)")
    sessions = groups.add_parser("sessions", help="list, show and delete session history")
    commands = sessions.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, fn: Callable[..., int], help_: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help_, description=help_)
        sub.set_defaults(func=fn)
        return sub

    ls = command("list", cmd_sessions_list, "List sessions, most recently updated first.")
    ls.add_argument("--limit", type=positive_int, default=50, help="rows per page (default 50)")
    ls.add_argument("--offset", type=non_negative_int, default=0, help="rows to skip")
    show = command("show", cmd_sessions_show, "Show a session's summary and transcript.")
    show.add_argument("session_id")
    runs = show.add_mutually_exclusive_group()
    runs.add_argument(
        "--limit",
        type=non_negative_int,
        default=SHOWN_RUNS,
        help=f"the newest runs shown (default {SHOWN_RUNS})",
    )
    runs.add_argument("--all", action="store_true", help="every run of the session")
    show.add_argument("--offset", type=non_negative_int, default=0, help="the newest runs to skip")
    delete = command("delete", cmd_sessions_delete, "Delete sessions and their runs.")
    delete.add_argument("session_ids", nargs="+", metavar="session_id")
