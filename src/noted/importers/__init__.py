"""Bringing memories and sessions over from Agno and mem0 into a noted store.

``import_agno("agent.db", memory)`` reads an Agno database (a SQLite file or a PostgreSQL
URL); ``import_mem0("memories.json", memory)`` reads mem0's ``get_all`` / export JSON.
Both read and check the whole source before writing, write only what the store does not
have yet (so a second run writes nothing), and return an :class:`ImportReport`.
"""

from __future__ import annotations

from datetime import tzinfo
from pathlib import Path

from noted.importers.agno import read_agno
from noted.importers.mem0 import read_mem0
from noted.importers.plan import ImportPlan, ImportReport, Progress, apply_plan
from noted.importers.sources import open_source
from noted.memory.memory import Memory

__all__ = ["ImportPlan", "ImportReport", "import_agno", "import_mem0"]


def import_agno(
    source: str,
    memory: Memory,
    *,
    memory_table: str | None = None,
    session_table: str | None = None,
    runs_table: str | None = None,
    schema: str = "ai",
    dry_run: bool = False,
    progress: Progress | None = None,
    user_id: str | None = None,
    agno_timezone: str | tzinfo | None = None,
) -> ImportReport:
    """Import an Agno database's user memories and sessions into ``memory``'s store.

    ``source`` is a SQLite file or a ``postgresql://`` URL (``schema`` names the
    PostgreSQL schema, Agno's ``ai`` by default). Without table names, Agno 2/3's
    ``agno_memories`` / ``agno_sessions`` are read, else Agno 1's ``memory`` /
    ``agent_sessions``; Agno 3's runs are read from ``agno_runs``, else from the one table
    with its columns (``runs_table`` names another). ``user_id`` imports that user's
    memories and sessions only (the memories that name no user become theirs).

    Agno wrote some times (a session summary's, an Agno 1.x memory's ``last_updated``)
    in the local time of the machine it ran on, without a time zone: they are read in
    ``agno_timezone`` (a name such as ``"Europe/Paris"``), by default in this machine's.
    """
    opened = open_source(source, schema)
    try:
        plan, _ = read_agno(opened, memory_table, session_table, agno_timezone, runs_table)
    finally:
        opened.close()
    return apply_plan(plan, memory, dry_run=dry_run, progress=progress, user_id=user_id)


def import_mem0(
    file: str | Path,
    memory: Memory,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    user_id: str | None = None,
) -> ImportReport:
    """Import the memories of mem0's ``get_all`` / export JSON into ``memory``'s store
    (with ``user_id``, that user's only; those that name no user become theirs)."""
    return apply_plan(read_mem0(file), memory, dry_run=dry_run, progress=progress, user_id=user_id)
