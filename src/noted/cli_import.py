"""``noted import agno SOURCE`` and ``noted import mem0 FILE``: bring memories (and Agno's
sessions) over into the store named by ``--db``.

Each reads and checks its whole source first (a malformed one writes nothing), shows a
progress bar while writing, and prints a summary; ``--dry-run`` only reports what would be
written. Running an import again writes nothing new.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from rich.markup import escape

from noted._console import counted, emit_json, out, progress_bar
from noted.cli_db import length_option
from noted.importers import ImportReport, import_agno, import_mem0
from noted.memory import Memory

__all__ = ["add_import_commands"]

Command = Callable[[Memory, argparse.Namespace], int]


def _run(
    args: argparse.Namespace, work: Callable[[Callable[[int, int], None]], ImportReport]
) -> int:
    bar = progress_bar("importing", args.json)
    with bar:
        task = bar.add_task("import", total=None)
        report = work(lambda done, total: bar.update(task, completed=done, total=total))
    if args.json:
        emit_json(report.to_dict())
        return 0
    verb = "would write" if report.dry_run else "wrote"
    skipped = report.memories_skipped
    shown = args.user is not None or skipped
    other = f"; skipped {_memories(skipped)} of other users" if shown else ""
    kept = report.memories_kept
    if kept:
        other += f"; kept {_memories(kept)} changed here since the source's version"
    deleted = report.memories_deleted_here
    if deleted:
        other += f"; left out {_memories(deleted)} deleted here since the source's version"
    read = f"{_memories(report.memories_read)}, {counted(report.sessions_read, 'session')}"
    written = (
        f"{_memories(report.memories_written)}, {counted(report.runs_written, 'run')}, "
        f"{counted(report.summaries_written, 'summary', 'summaries')}"
    )
    out.print(
        escape(
            f"{report.source}: read {read} ({counted(report.runs_read, 'run')}); "
            f"{verb} {written}{other}"
        )
    )
    return 0


def _memories(count: int) -> str:
    return counted(count, "memory", "memories")


def cmd_import_agno(memory: Memory, args: argparse.Namespace) -> int:
    return _run(
        args,
        lambda progress: import_agno(
            args.source,
            memory,
            memory_table=args.source_memory_table,
            session_table=args.source_session_table,
            runs_table=args.source_runs_table,
            schema=args.schema,
            dry_run=args.dry_run,
            progress=progress,
            user_id=args.user,
            agno_timezone=args.agno_timezone,
        ),
    )


def cmd_import_mem0(memory: Memory, args: argparse.Namespace) -> int:
    return _run(
        args,
        lambda progress: import_mem0(
            args.file, memory, dry_run=args.dry_run, progress=progress, user_id=args.user
        ),
    )


def add_import_commands(
    groups: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    group = groups.add_parser("import", help="bring memories over from Agno or mem0")
    commands = group.add_subparsers(dest="command", metavar="SOURCE")

    def command(name: str, fn: Command, help_: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help_, description=help_)
        sub.set_defaults(func=fn)
        sub.add_argument("--dry-run", action="store_true", help="report, write nothing")
        length_option(sub, "to import")
        return sub

    agno = command(
        "agno",
        cmd_import_agno,
        "Import an Agno database's user memories and sessions (Agno 1.x, 2.x, 3.x).",
    )
    agno.add_argument("source", help="a SQLite file, or a postgresql:// URL")
    # the source's tables: dest names of their own, so that they do not also name the
    # tables of --db, as the other commands' table options do
    agno.add_argument(
        "--memory-table",
        dest="source_memory_table",
        help="the source's memory table (default: agno_memories, else Agno 1's memory)",
    )
    agno.add_argument(
        "--session-table",
        dest="source_session_table",
        help="the source's session table (default: agno_sessions, else agent_sessions)",
    )
    agno.add_argument(
        "--runs-table",
        dest="source_runs_table",
        help="Agno 3's runs table (default: agno_runs, else the one table of its columns)",
    )
    agno.add_argument("--schema", default="ai", help="PostgreSQL schema (default: ai)")
    agno.add_argument(
        "--agno-timezone",
        metavar="ZONE",
        help="the time zone Agno ran in, for the times it wrote without one, such as "
        "Europe/Paris (default: this machine's)",
    )

    mem0 = command("mem0", cmd_import_mem0, "Import mem0's get_all / export JSON.")
    mem0.add_argument("file", help="the JSON file")
