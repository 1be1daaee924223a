"""Moving memories from one store to another with ``noted memories export`` and
``noted memories import``, on real stores (SQLite files and real servers)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from conftest import server_url
from noted.cli import main
from servers import Server

_names = itertools.count(1)

# (from, to): each server store is written and read at least once
PAIRS = [("sqlite", "postgres"), ("postgres", "mongo"), ("redis", "sqlite"), ("mongo", "redis")]


def store_args(kind: str, servers: dict[str, Server | str], tmp_path: Path) -> list[str]:
    """The ``--db`` and table options of a fresh, empty store of ``kind``."""
    n = next(_names)
    tables = ["--memory-table", f"mv{n}_memories", "--session-table", f"mv{n}_sessions"]
    if kind == "sqlite":
        return ["--db", str(tmp_path / f"moving{n}.db"), *tables]
    url = server_url(servers, kind)
    return ["--db", url + ("noted_tests" if kind == "mongo" else ""), *tables]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def exported(capsys: pytest.CaptureFixture[str], store: list[str]) -> list[dict[str, object]]:
    """Every memory of the store, as ``noted memories export --all`` writes them."""
    code, out, err = run(capsys, "memories", "export", "--all", *store)
    assert code == 0, err
    return [json.loads(line) for line in out.split("\n") if line]


@pytest.mark.parametrize(("source", "target"), PAIRS)
def test_texts_with_unicode_line_separators_come_back_whole(
    capsys, servers, tmp_path: Path, source: str, target: str
) -> None:
    """A memory whose text, topic or input held a line or paragraph separator (U+2028,
    U+2029) or a next-line character (U+0085), which an export writes as they are, made
    the import of that export fail ("line 1: not valid JSON: Unterminated string"): the
    import cut lines there too. It now splits at line feeds only."""
    source_db, target_db = (store_args(kind, servers, tmp_path) for kind in (source, target))
    texts = ["Ava reads\u2028poems", "Ava\u2029sings", "Ava\x85knits"]
    for text in texts:
        argv = ["memories", "add", text, "-t", f"arts\u2028{text[-5:]}", "--user", "ava"]
        assert run(capsys, *argv, *source_db)[0] == 0
    file = tmp_path / "ava.jsonl"
    code, _, err = run(capsys, "memories", "export", "--all", "-o", str(file), *source_db)
    assert (code, err) == (0, f"exported 3 memories to {file}\n")
    code, out, err = run(capsys, "memories", "import", str(file), *target_db)
    assert (code, out, err) == (0, "imported 3 memories\n", "")
    moved = exported(capsys, target_db)
    assert moved == exported(capsys, source_db)
    assert [m["memory"] for m in moved] == texts
