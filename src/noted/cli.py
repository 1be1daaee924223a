"""The ``noted`` command: manage memories from a terminal or a script.

Thin by design: it parses arguments, calls the Memory API, and prints a table or JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence

from rich.markup import escape

from noted import __version__
from noted._console import counted, emit_json, err, guarded_stdout, out, progress_bar
from noted._listing import Field, Listing, Record
from noted._memory_listing import match_column, memory_table, quoted_query
from noted.audit import MemoryEvent
from noted.cli_db import (
    db_target,
    embedder_option,
    identifier,
    length_option,
    non_negative_int,
    open_db,
    positive_int,
    user_options,
)
from noted.cli_files import export_memories, import_check, in_utf8, read_text, written_file
from noted.cli_import import add_import_commands
from noted.cli_jobs import add_job_commands
from noted.cli_mcp import add_mcp_command
from noted.cli_serve import add_server_commands
from noted.cli_sessions import INTERRUPTED, add_chat_command, add_session_commands
from noted.db import MemoryQuery
from noted.db._rows import DAMAGED_RECORD
from noted.db.urls import DEFAULT_TABLES, TABLE_ENVIRONMENT
from noted.errors import DamagedMemoryError, NotedError, NotFoundError, UserError
from noted.importers.plan import memories_of, not_stored_as_is
from noted.limits import MAX_MEMORY_LENGTH
from noted.memory import DEFAULT_USER_ID, Memory
from noted.memory.door import TextTooLong, told
from noted.memory.jsonl import jsonl_lines, read_jsonl
from noted.retrieval.choice import DEFAULT_EMBEDDER
from noted.schema import UserMemory, check_topics

__all__ = ["main"]

DEFAULT_DB = "noted.db"
_OTHERS_NAMED = 5


def _note_default_user(memory: Memory, whole_store: str) -> None:
    """Without ``--user`` a command works on the user "default": say so on standard error
    (standard output may be data), and name the users who do have memories."""
    stats = memory.get_user_stats(limit=_OTHERS_NAMED + 2)
    others = [s.user_id for s in stats if s.user_id != DEFAULT_USER_ID][: _OTHERS_NAMED + 1]
    note = f"note: no --user given, so this is user {DEFAULT_USER_ID!r}"
    if others:
        count = f"more than {_OTHERS_NAMED}" if len(others) > _OTHERS_NAMED else len(others)
        names = ", ".join(others[:_OTHERS_NAMED]) + (", ..." if len(others) > _OTHERS_NAMED else "")
        plural = "user has" if count == 1 else "users have"
        note += f"; {count} other {plural} memories ({names}): pass --user ID{whole_store}"
    err.print(escape(note), style="dim")


def _note_damaged(memories: Sequence[UserMemory]) -> None:
    """Say on standard error which of the memories shown have damaged stored topics (they
    are listed with none) and how to repair or delete each."""
    for m in memories:
        if m.damaged is not None:
            err.print(escape(f"note: {_damage(m.memory_id or '', m.damaged)}"), style="yellow")


class _DamageTold(logging.Filter):
    """Holds back the store's log line about a damaged memory, which the command says
    itself (see _note_damaged), with how to repair it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not hasattr(record, DAMAGED_RECORD)


def _telling_damage(command: Command) -> Command:
    """``command`` (which notes the damaged memories it shows), the store's own log line
    about them held back unless it prints JSON, where that line is the only word of it."""

    @functools.wraps(command)
    def telling(memory: Memory, args: argparse.Namespace) -> int:
        if args.json:
            return command(memory, args)
        logger, held = logging.getLogger("noted.db"), _DamageTold()
        logger.addFilter(held)
        try:
            return command(memory, args)
        finally:
            logger.removeFilter(held)

    return telling


def _damage(memory_id: str, reason: str) -> str:
    """What the command says of a memory whose stored topics are damaged."""
    return (
        f"memory {memory_id!r} has damaged topics: {reason}; `noted memories edit "
        f"{memory_id} --topic TOPIC` (or --no-topics) repairs it, `noted memories delete "
        f"{memory_id}` deletes it"
    )


# -- commands -------------------------------------------------------------------------------


def cmd_add(memory: Memory, args: argparse.Namespace) -> int:
    new = UserMemory(args.text, topics=args.topic or [], agent_id=args.agent, team_id=args.team)
    memory_id = memory.add_user_memory(new, user_id=args.user)
    if args.json:
        emit_json(_get_or_fail(memory, memory_id, args.user).to_dict())
    else:
        out.print(f"added {memory_id}")
    return 0


def cmd_list(memory: Memory, args: argparse.Namespace) -> int:
    query = MemoryQuery(
        user_id=None if args.all_users else (args.user or DEFAULT_USER_ID),
        topics=tuple(check_topics(args.topic)) if args.topic else (),  # as the API has them
        agent_id=args.agent,
        team_id=args.team,
        sort_by=args.sort,
        sort_order=args.order,
        limit=args.limit,
        offset=args.offset,
    )
    memories = memory.db.list_memories(query)
    if args.user is None and not args.all_users:
        _note_default_user(memory, ", or --all-users")
    if args.json:
        emit_json([m.to_dict() for m in memories])
        return 0
    total = memory.db.count_memories(query)
    who = "every user" if query.user_id is None else f"user {query.user_id}"
    shown = f"{query.offset + 1}-{query.offset + len(memories)}" if memories else "0"
    out.print(memory_table(memories, f"Memories of {who} ({shown} of {total})", args.all_users))
    _note_damaged(memories)
    return 0


def cmd_search(memory: Memory, args: argparse.Namespace) -> int:
    user = args.user or DEFAULT_USER_ID
    found = memory.search_user_memories(
        args.query,
        user_id=user,
        limit=args.limit,
        retrieval_method=args.method,
        topics=args.topic,
    )
    if args.user is None:
        _note_default_user(memory, "")
    if args.json:
        emit_json([m.to_dict() for m in found])
        return 0
    title = f"Memories of user {user} matching {quoted_query(args.query)} ({len(found)})"
    out.print(memory_table(found, title, False, match_column(found)))
    _note_damaged(found)
    return 0


def cmd_reindex(memory: Memory, args: argparse.Namespace) -> int:
    progress = progress_bar("embedding", args.json)
    who = "every user" if args.user is None else f"user {args.user}"
    embedded = [0]  # so far: each batch's vectors are stored as it is done

    def advance(n: int, total: int) -> None:
        embedded[0] = n
        progress.update(task, completed=n, total=total)

    with progress:
        task = progress.add_task("reindex", total=None)
        try:
            done = memory.reindex_user_memories(args.user, progress=advance)
        except KeyboardInterrupt:
            err.print(
                f"embedded {counted(embedded[0], 'memory', 'memories')} of {escape(who)} "
                "before the interrupt (what is embedded keeps its vector); "
                "`noted memories reindex` again embeds the rest"
            )
            raise
    if args.json:
        emit_json({"embedded": done, "model": memory.index and memory.index.model_name})
    else:
        out.print(f"embedded {counted(done, 'memory', 'memories')} of {escape(who)}")
    return 0


def _get_or_fail(memory: Memory, memory_id: str, user_id: str | None) -> UserMemory:
    found = memory.get_user_memory(memory_id, user_id=user_id)
    if found is None:
        raise NotFoundError(
            f"user {user_id or DEFAULT_USER_ID!r} has no memory with id {memory_id!r}"
        )
    return found


def cmd_show(memory: Memory, args: argparse.Namespace) -> int:
    found = _get_or_fail(memory, args.memory_id, args.user)
    if args.json:
        emit_json(found.to_dict())
        return 0
    pairs = []
    for key, value in found.to_dict().items():
        shown = ", ".join(value) if isinstance(value, list) else value
        pairs.append((key, "" if shown is None else str(shown)))
    out.print(Record(pairs))
    _note_damaged([found])
    return 0


def cmd_edit(memory: Memory, args: argparse.Namespace) -> int:
    if args.text is None and args.topic is None and not args.no_topics:
        raise UserError("nothing to change: give --text, --topic or --no-topics")
    topics = [] if args.no_topics else args.topic
    current = _get_or_fail(memory, args.memory_id, args.user)
    stored = memory.edit_user_memory(args.memory_id, args.user, memory=args.text, topics=topics)
    if stored.updated_at == current.updated_at:  # nothing written
        if args.json:
            emit_json(current.to_dict())
        else:
            out.print(f"unchanged {args.memory_id}: it already has this text and these topics")
        return 0
    if args.json:
        emit_json(stored.to_dict())
    else:
        out.print(f"updated {args.memory_id}")
    return 0


def _change(old: str | list[str] | None, new: str | list[str] | None) -> str:
    """An event's change as "old -> new" (one side only for an add, a delete or no change)."""

    def shown(value: str | list[str]) -> str:
        return value if isinstance(value, str) else ", ".join(value)

    if old is None or new is None or old == new:
        side = new if new is not None else old
        return "" if side is None else shown(side)
    return f"{shown(old) or '(none)'} -> {shown(new) or '(none)'}"


def _history_table(events: Sequence[MemoryEvent], title: str) -> Listing:
    fields = [
        Field("time (UTC)", "head"),
        Field("event", "head"),
        Field("actor"),
        Field("memory", "text"),
        Field("topics"),
    ]
    with_runs = any(e.session_id is not None or e.run_id is not None for e in events)
    if with_runs:
        fields.append(Field("session / run", style="dim"))
    rows = []
    for e in events:
        cells = [
            e.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            e.event,
            e.actor,
            _change(e.old_memory, e.new_memory),
            _change(e.old_topics, e.new_topics),
        ]
        if with_runs:
            cells.append(" / ".join(x or "-" for x in (e.session_id, e.run_id)))
        rows.append(cells)
    return Listing(title, fields, rows)


def cmd_history(memory: Memory, args: argparse.Namespace) -> int:
    events = memory.get_memory_history(args.memory_id, user_id=args.user)
    if not events and memory.get_user_memory(args.memory_id, user_id=args.user) is None:
        raise NotFoundError(
            f"user {args.user or DEFAULT_USER_ID!r} has no memory and no history "
            f"with id {args.memory_id!r}"
        )
    if args.json:
        emit_json([e.to_dict() for e in events])
        return 0
    user = args.user or DEFAULT_USER_ID
    title = f"History of memory {args.memory_id} of user {user} ({counted(len(events), 'event')})"
    out.print(_history_table(events, title))
    return 0


def cmd_delete(memory: Memory, args: argparse.Namespace) -> int:
    user = args.user or DEFAULT_USER_ID
    wanted = list(dict.fromkeys(args.memory_ids))
    present = {m for m in wanted if memory.get_user_memory(m, user_id=user) is not None}
    deleted = memory.delete_user_memories(wanted, user_id=user)
    absent = [m for m in wanted if m not in present]
    missing = len(wanted) - deleted
    if args.json:  # as noted sessions delete reports
        emit_json({"deleted": deleted, "not_found": absent})
    else:
        out.print(f"deleted {deleted}")
    if missing:
        ids = ", ".join(map(repr, absent))
        raise NotFoundError(f"{missing} not found: user {user!r} has no memory with id {ids}")
    return 0


def _confirm(question: str, assume_yes: bool) -> None:
    if assume_yes:
        return
    if not sys.stdin.isatty():
        raise UserError(f"{question} Refusing without --yes when not run interactively")
    answer = input(f"{question} [y/N] ").strip().lower()
    if answer not in {"y", "yes"}:
        raise UserError("cancelled; nothing was deleted")


def cmd_clear(memory: Memory, args: argparse.Namespace) -> int:
    if args.all == (args.user is not None):
        raise UserError("name one user with --user, or pass --all to clear every user")
    if args.all:
        _confirm("Delete the memories of EVERY user?", args.yes)
        deleted = memory.clear()
    else:
        _confirm(f"Delete every memory of user {args.user!r}?", args.yes)
        deleted = memory.clear(user_id=args.user)
    if args.json:
        emit_json({"deleted": deleted})
    else:
        out.print(f"deleted {deleted}")
    return 0


def cmd_topics(memory: Memory, args: argparse.Namespace) -> int:
    topics = memory.get_topics(None if args.all_users else (args.user or DEFAULT_USER_ID))
    if args.json:
        emit_json(topics)
    else:
        for topic in topics:
            out.print(topic)
    return 0


def cmd_stats(memory: Memory, args: argparse.Namespace) -> int:
    stats = memory.get_user_stats(limit=args.limit)
    if args.json:
        emit_json([s.to_dict() for s in stats])
        return 0
    fields = [
        Field("user", "head"),
        Field("memories", justify="right"),
        Field("last update (UTC)", "head"),
    ]
    rows = [
        [s.user_id, str(s.memory_count), s.last_updated.strftime("%Y-%m-%d %H:%M:%S")]
        for s in stats
    ]
    out.print(Listing("Memories per user", fields, rows))
    return 0


def cmd_export(memory: Memory, args: argparse.Namespace) -> int:
    user = None if args.all else (args.user or DEFAULT_USER_ID)
    if args.user is None and not args.all:
        _note_default_user(memory, ", or --all for every user")
    if args.output in (None, "-"):  # a full disk under `> FILE`: see main()
        in_utf8(sys.stdout)
        export_memories(memory, user, sys.stdout)
        sys.stdout.flush()
        return 0
    with written_file(args.output) as stream:  # the whole export, or the file as it was
        written = export_memories(memory, user, stream)
    err.print(escape(f"exported {counted(written, 'memory', 'memories')} to {args.output}"))
    return 0


def cmd_import(memory: Memory, args: argparse.Namespace) -> int:
    lines = jsonl_lines(read_text(args.file))
    progress = progress_bar("importing", args.json)
    skipped = 0
    with progress:
        task = progress.add_task("import", total=len(lines))
        memories = read_jsonl(
            lines, on_line=lambda n: progress.update(task, completed=n), check=import_check(memory)
        )
        if args.user is not None:  # that user's memories only; those with no user become its
            kept = memories_of(memories, args.user)
            skipped, memories = len(memories) - len(kept), kept
        changed = not_stored_as_is(memory.db, memories)
        imported = memory.import_user_memories(changed)
    same = len(memories) - len(changed)
    if args.json:
        counts = {"imported": imported, "unchanged": same}
        emit_json(counts | ({} if args.user is None else {"skipped": skipped}))
        return 0
    said = f"imported {counted(imported, 'memory', 'memories')}"
    if args.user is not None:
        other = "memory of other users" if skipped == 1 else "memories of other users"
        said += f" of user {args.user!r}; skipped {skipped} {other}"
    if same:
        said += f"; {same} already stored as they are"
    out.print(escape(said))
    return 0


# -- parser ----------------------------------------------------------------------------------

Command = Callable[[Memory, argparse.Namespace], int]


def _list_arguments(ls: argparse.ArgumentParser) -> None:
    ls.add_argument("--limit", type=positive_int, default=50, help="rows per page (default 50)")
    ls.add_argument("--offset", type=non_negative_int, default=0, help="rows to skip")
    ls.add_argument("--topic", "-t", action="append", help="only memories with this topic")
    ls.add_argument("--agent", type=identifier, help="only memories of this agent")
    ls.add_argument("--team", type=identifier, help="only memories of this team")
    ls.add_argument("--sort", choices=["updated_at", "created_at"], default="updated_at")
    ls.add_argument("--order", choices=["desc", "asc"], default="desc")
    ls.add_argument("--all-users", action="store_true", help="list every user's memories")


def _edit_arguments(edit: argparse.ArgumentParser) -> None:
    edit.add_argument("memory_id")
    edit.add_argument("--text", help="the new text")
    new_topics = edit.add_mutually_exclusive_group()  # both: the topics asked for were lost
    new_topics.add_argument("--topic", "-t", action="append", help="the new topics (repeat)")
    new_topics.add_argument("--no-topics", action="store_true", help="remove every topic")
    length_option(edit, "to store")


def _common_options() -> tuple[argparse.ArgumentParser, ...]:
    """The options every command takes; the same without the table names (for the
    imports, whose sources have tables of their own), their ``--user`` narrowing them to one
    user; ``--db`` with the table names alone (for ``serve`` and the session commands);
    the options of the commands of every user unless ``--user`` names one; and those of
    the commands that span every user (``memories stats``, ``jobs``): no ``--user``."""
    db_only = argparse.ArgumentParser(add_help=False)
    db_only.add_argument(
        "--db",
        type=db_target,
        help="SQLite file, or postgresql:// mongodb:// redis:// URL "
        "(default: $NOTED_DB, else ./noted.db)",
    )
    db_option = argparse.ArgumentParser(add_help=False, parents=[db_only])
    for option, variable in TABLE_ENVIRONMENT.items():
        table = option.removesuffix("_table")
        db_option.add_argument(
            f"--{table}-table",
            help=f"the {table} table (or collection, or key prefix) of --db "
            f"(default: ${variable}, else {DEFAULT_TABLES[option]})",
        )
    user_help = f"user id (default: {DEFAULT_USER_ID!r})"
    everyone = "only this user's memories (default: every user's)"
    all_users = argparse.ArgumentParser(add_help=False, parents=[db_option])
    all_users.add_argument("--json", action="store_true", help="print JSON for scripts")
    return (
        user_options(db_option, user_help),
        user_options(db_only, everyone),
        db_option,
        user_options(db_option, everyone),
        all_users,
    )


def build_parser() -> argparse.ArgumentParser:
    common, importing, db_option, every_user, all_users = _common_options()

    parser = argparse.ArgumentParser(prog="noted", description="Long-term memory for LLM agents.")
    parser.add_argument("--version", action="version", version=f"noted {__version__}")
    groups = parser.add_subparsers(dest="group", metavar="GROUP")
    memories = groups.add_parser("memories", help="add, list, edit and delete user memories")
    commands = memories.add_subparsers(dest="command", metavar="COMMAND")

    def command(
        name: str, fn: Command, help_: str, options: argparse.ArgumentParser = common
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[options], help=help_, description=help_)
        sub.set_defaults(func=fn)
        return sub

    add = command("add", cmd_add, "Store a new memory for a user.")
    add.add_argument("text", help="the memory, e.g. 'The user likes to ski'")
    add.add_argument("--topic", "-t", action="append", help="a topic (repeat for several)")
    add.add_argument("--agent", type=identifier, help="agent id")
    add.add_argument("--team", type=identifier, help="team id")
    length_option(add, "to store")

    _list_arguments(
        command("list", _telling_damage(cmd_list), "List a user's memories, newest first.")
    )

    search = command(
        "search", _telling_damage(cmd_search), "Find a user's memories, best match first."
    )
    search.add_argument("query", help="what to look for, e.g. 'where does she ski'")
    search.add_argument("--limit", type=positive_int, default=10, help="results (default 10)")
    search.add_argument("--topic", "-t", action="append", help="only memories with this topic")
    search.add_argument(
        "--method",
        choices=["hybrid", "semantic", "keyword"],
        help="hybrid (meaning and words; the default), semantic, or keyword "
        "(the default with --embedder none)",
    )
    embedder_option(search)

    reindex = command(
        "reindex",
        cmd_reindex,
        "Embed the memories (of --user, or of every user) that have no embedding from the "
        "embedder: after changing embedders, or for memories written without one.",
        every_user,
    )
    embedder_option(reindex)

    show = command("show", _telling_damage(cmd_show), "Show one memory in full.")
    show.add_argument("memory_id")

    _edit_arguments(command("edit", cmd_edit, "Change a memory's text or topics."))

    history = command(
        "history", cmd_history, "Every add, update and delete of a memory, oldest first."
    )
    history.add_argument("memory_id")

    delete = command("delete", cmd_delete, "Delete memories by id.")
    delete.add_argument("memory_ids", nargs="+", metavar="memory_id")

    clear = command(
        "clear", cmd_clear, "Delete every memory of one user (--user) or of all (--all)."
    )
    clear.add_argument("--all", action="store_true", help="clear every user")
    clear.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")

    topics = command("topics", cmd_topics, "List the topics of a user's memories.")
    topics.add_argument("--all-users", action="store_true", help="topics of every user")

    stats = command("stats", cmd_stats, "Memory count and last update per user.", all_users)
    stats.add_argument("--limit", type=positive_int, default=None, help="at most this many users")

    export = command("export", cmd_export, "Write memories as JSON Lines.")
    export.add_argument("--all", action="store_true", help="export every user")
    export.add_argument("--output", "-o", help="file to write (default: standard output)")

    imp = command(
        "import",
        cmd_import,
        "Read memories from JSON Lines (all or nothing). With --user, only that user's "
        "memories (and those that name no user) are imported; the others are skipped.",
        every_user,
    )
    imp.add_argument("file", help="a .jsonl file, or - for standard input")
    length_option(imp, "to import")

    add_session_commands(groups, db_option)
    add_chat_command(groups, db_option)
    add_mcp_command(
        groups, user_options(db_option, f"user id (default: {DEFAULT_USER_ID!r})", json=False)
    )
    add_job_commands(groups, all_users, db_option)
    add_import_commands(groups, importing)
    add_server_commands(groups, db_option)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        with guarded_stdout():  # a full disk under `> FILE`: one error line, any command
            code = _run(argv)
            sys.stdout.flush()  # here, where a closed pipe can still be handled
    except UserError as exc:  # that last flush
        _print_error(exc)
        return 1
    except BrokenPipeError:
        # The reader went away (`noted memories export | head -1`): stop quietly, as other
        # tools do, and keep the interpreter's last flush from failing too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        # Ctrl-C: the store has rolled back what was not committed and been closed on the
        # way here; one line, and the status a shell gives a program SIGINT ended
        err.print("interrupted")
        return INTERRUPTED
    return code


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Command | None = getattr(args, "func", None)
    if func is None:  # a group without its command: its help, and the status of a usage error
        with contextlib.suppress(SystemExit):
            parser.parse_args([*(argv if argv is not None else sys.argv[1:]), "--help"])
        return 2
    resolve_db(args)
    try:
        with _tables(args):
            embedder = getattr(args, "embedder", DEFAULT_EMBEDDER)
            longest = getattr(args, "max_memory_length", MAX_MEMORY_LENGTH)
            memory = Memory(
                db=open_db(args.db), actor="cli", embedder=embedder, max_memory_length=longest
            )
            try:
                return func(memory, args)
            finally:
                memory.db.close()
    except TextTooLong as exc:
        said = exc.without_hint
        if hasattr(args, "max_memory_length"):
            said += " (--max-memory-length raises it)"
        err.print(f"[bold red]error:[/] {escape(said)}")
        return 1
    except NotedError as exc:
        _print_error(exc)
        return 1


def _print_error(exc: NotedError) -> None:
    if isinstance(exc, DamagedMemoryError):
        said = _damage(exc.memory_id, exc.reason)
    else:
        said = one_line(told(exc))
    err.print(f"[bold red]error:[/] {escape(said)}")


def one_line(message: str) -> str:
    """``message`` on one line: a driver's message may run on over several (psycopg's
    "Connection refused" goes on with an indented "Is the server running ...")."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def resolve_db(args: argparse.Namespace) -> None:
    """``args.db``: ``--db``, else ``$NOTED_DB``, else ``noted.db``; ``args.db_given``
    says whether one of the first two named it (they win over a config file's ``db``).
    An empty ``$NOTED_DB`` counts as unset (``NOTED_DB= noted ...`` sets it aside)."""
    args.db_given = args.db is not None or bool(os.environ.get("NOTED_DB"))
    args.db = args.db or os.environ.get("NOTED_DB") or DEFAULT_DB


@contextlib.contextmanager
def _tables(args: argparse.Namespace) -> Iterator[None]:
    """``--memory-table`` and ``--session-table`` as the environment variables every
    store the command opens reads (a server's worker processes too), while it runs."""
    given = {
        variable: getattr(args, option)
        for option, variable in TABLE_ENVIRONMENT.items()
        if getattr(args, option, None)
    }
    before = {variable: os.environ.get(variable) for variable in given}
    os.environ.update(given)
    try:
        yield
    finally:
        for variable, value in before.items():
            if value is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = value


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
