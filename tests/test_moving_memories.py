"""Moving memories from one store to another with ``noted memories export`` and
``noted memories import``, on real stores (SQLite files and real servers)."""

from __future__ import annotations

import itertools
import json
import subprocess
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


@pytest.mark.parametrize("encoding", ["latin-1", "ascii"])
@pytest.mark.parametrize(("source", "target"), [("postgres", "mongo"), ("redis", "sqlite")])
def test_a_pipe_carries_utf_8_whatever_the_locale(
    capsys, servers, tmp_path: Path, encoding: str, source: str, target: str
) -> None:
    """`noted memories export | noted memories import -` in a locale whose encoding is not
    UTF-8 (a Windows code page, an ISO 8859 locale; here PYTHONIOENCODING) stopped the
    export with a UnicodeEncodeError traceback at the first emoji, and the import read
    each accented letter as two wrong ones ("cafÃ©") and stored them so, or failed with a
    traceback. Both now speak UTF-8 on the pipe, as in a file."""
    from test_cli_process import NOTED, script_env

    source_db, target_db = (store_args(kind, servers, tmp_path) for kind in (source, target))
    texts = ["Ava's café order: crème brûlée 🍮", "שלום, Ava — e\u0301"]
    for text in texts:
        assert run(capsys, "memories", "add", text, "--user", "ava", *source_db)[0] == 0
    env = script_env() | {"PYTHONIOENCODING": encoding}
    export = [NOTED, "memories", "export", "--user", "ava", *source_db]
    with subprocess.Popen(export, env=env, stdout=subprocess.PIPE) as exporting:
        importing = subprocess.run(
            [NOTED, "memories", "import", "-", *target_db],
            env=env,
            stdin=exporting.stdout,
            capture_output=True,
            check=False,
            timeout=60,
        )
    assert exporting.returncode == 0
    assert (importing.returncode, importing.stdout) == (0, b"imported 2 memories\n")
    moved = exported(capsys, target_db)
    assert [m["memory"] for m in moved] == texts
    assert moved == exported(capsys, source_db)


def test_standard_input_that_is_not_utf_8_is_refused_in_one_line(servers, tmp_path: Path) -> None:
    """A file of another encoding on standard input is refused with one error line, and
    nothing is written (it was a traceback, or text stored with the wrong letters)."""
    from test_cli_process import NOTED, script_env

    target = store_args("postgres", servers, tmp_path)
    latin = '{"memory": "Ava likes café", "user_id": "ava"}\n'.encode("latin-1")
    done = subprocess.run(
        [NOTED, "memories", "import", "-", *target],
        env=script_env() | {"PYTHONIOENCODING": "latin-1"},
        input=latin,
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.decode().startswith("error: cannot read standard input: 'utf-8' codec")
    assert done.stderr.count(b"\n") == 1


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mongo", "redis"])
def test_a_text_over_the_limit_is_named_by_its_line(
    capsys, servers, tmp_path: Path, kind: str
) -> None:
    """A line whose memory is longer than the limit (5,000 characters) stopped the import
    with "error: memory text is 5001 characters; the limit is 5000", naming neither the
    line nor the memory: in a file of thousands, the user could not find it. The error
    now names its line, as for any other line the import refuses, and nothing is written."""
    target = store_args(kind, servers, tmp_path)
    lines = [
        json.dumps({"memory": text, "user_id": "ava", "memory_id": f"m{i}"})
        for i, text in enumerate(["Ava skis", "é" * 5000, "😀" * 5001, "Ava rows"])
    ]
    file = tmp_path / "long.jsonl"
    file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out, err = run(capsys, "memories", "import", str(file), *target)
    assert (code, out) == (1, "")
    assert err == (
        "error: line 3: memory text is 5001 characters; the limit is 5000 "
        "(--max-memory-length raises it)\n"
    )
    assert exported(capsys, target) == []
