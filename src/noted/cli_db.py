"""The ``--db`` option of the ``noted`` command: a store, or an error worded for a shell."""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from noted.db import Store, open_store
from noted.db.urls import env_tables
from noted.errors import UserError
from noted.limits import MAX_MEMORY_LENGTH, MAX_PAGE
from noted.retrieval.choice import DEFAULT_EMBEDDER
from noted.schema import check_id

if TYPE_CHECKING:
    from noted.memory import Memory

__all__ = [
    "db_target",
    "length_option",
    "non_negative_int",
    "open_db",
    "positive_int",
    "user_options",
    "with_config_db",
]


def positive_int(text: str) -> int:
    """An argument that must be an integer from 1 to 2**63 - 1 (a limit, a count of
    workers): what a store can take, so that a larger one is a usage error, not a crash."""
    return _count(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """An argument that must be an integer from 0 to 2**63 - 1 (an offset, a number of
    earlier runs)."""
    return _count(text, 0, "an integer of 0 or more")


def _count(text: str, minimum: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if not minimum <= value <= MAX_PAGE:
        raise argparse.ArgumentTypeError(f"must be {what} (at most 2**63 - 1), got {text!r}")
    return value


def embedder_option(sub: argparse.ArgumentParser) -> None:
    """``--embedder``: the model a command's memory searches by meaning with."""
    sub.add_argument(
        "--embedder",
        default=DEFAULT_EMBEDDER,
        help="embedding model: 'local' (the embedded default), 'local:<dir or hub id>', "
        "'openai:<model>', or 'none' (default: $NOTED_EMBEDDER, else local)",
    )


def length_option(command: argparse.ArgumentParser, doing: str) -> None:
    """``--max-memory-length N``: the limit of the command's Memory, for a store used with
    a higher ``Memory(max_memory_length=...)`` than the default."""
    command.add_argument(
        "--max-memory-length",
        type=positive_int,
        default=MAX_MEMORY_LENGTH,
        metavar="N",
        help=f"the longest memory text {doing}, in characters (default: {MAX_MEMORY_LENGTH:,})"
        ": as the Memory(max_memory_length=...) the store is used with",
    )


def db_target(text: str) -> str:
    """``--db``: an empty (or blank) one is a usage error, where it used to stand for the
    default file ``./noted.db`` without a word (an unset variable in ``--db "$DB"``)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            f"must name a SQLite file or a database URL, got {text!r} "
            "(leave --db out for $NOTED_DB, else ./noted.db)"
        )
    return text


def identifier(text: str) -> str:
    """An argument naming a user, agent or team: refused where the Memory API would refuse
    it (empty, blank, too long), before any command runs on it."""
    try:
        checked = check_id("it", text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("it ")) from None
    assert checked is not None
    return checked


def user_options(
    parent: argparse.ArgumentParser, user_help: str, json: bool = True
) -> argparse.ArgumentParser:
    """``parent``'s options with ``--user`` (saying ``user_help``) and, if ``json``,
    ``--json``."""
    options = argparse.ArgumentParser(add_help=False, parents=[parent])
    options.add_argument("--user", type=identifier, help=user_help)
    if json:
        options.add_argument("--json", action="store_true", help="print JSON for scripts")
    return options


def with_config_db(memory: Memory, args: argparse.Namespace, configured: str | None) -> str:
    """The store a command serves: ``--db`` or ``$NOTED_DB`` when given, else a config
    file's ``db`` (``configured``), which then takes the place of ``memory.db``; its name."""
    if configured is None or args.db_given:
        return str(args.db)
    memory.db.close()
    memory.db = open_db(configured)
    return configured


def open_db(target: str) -> Store:
    """A store for ``--db``: a SQLite file path, or a database URL (see open_store), with
    the table names of ``$NOTED_MEMORY_TABLE`` and ``$NOTED_SESSION_TABLE`` (which
    ``--memory-table`` and ``--session-table`` set).

    A file path is checked first, so that a typo gets an answer a shell user can act on:
    a directory (named, or ending with a slash) is not taken for a file, and a missing
    parent directory is named rather than created.
    """
    _check_text(target)
    if "://" not in target and target.strip():
        _check_file_path(target)
    elif target.lower().startswith("sqlite:///"):
        _check_file_path(target.split("://", 1)[1].removeprefix("/"))
    return open_store(target, **env_tables(target))


def _check_text(target: str) -> None:
    """Refuse a ``--db`` that is not text (a file name of bytes that are not UTF-8 comes
    from the shell as lone surrogates): neither SQLite nor a database driver takes one. A
    URL is not shown, as it may hold a password."""
    try:
        target.encode("utf-8")
    except UnicodeEncodeError:
        if "://" in target:
            raise UserError("cannot use the --db URL: it is not valid UTF-8") from None
        shown = target.encode("utf-8", "replace").decode("utf-8")
        raise UserError(
            f"cannot use {shown} as the database: its name is not valid UTF-8 "
            "(rename the file, or link to it under a UTF-8 name)"
        ) from None


def _check_file_path(target: str) -> None:
    path = Path(target)
    seps = (os.sep, os.altsep) if os.altsep else (os.sep,)
    if target.endswith(seps) or path.is_dir():
        what = f"{target} is a directory" if path.is_dir() else f"{target} names a directory"
        raise UserError(
            f"cannot use {target} as the database: {what}; name a SQLite file in it, "
            f"such as {path / 'noted.db'}"
        )
    parent = path.parent
    if parent.is_dir():
        return
    if parent.exists():
        raise UserError(f"cannot use {target} as the database: {parent} is a file, not a directory")
    raise UserError(
        f"cannot use {target} as the database: directory {parent} does not exist "
        f"(create it first: mkdir -p {shlex.quote(str(parent))})"
    )
