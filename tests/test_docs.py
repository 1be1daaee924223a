"""The README's quickstart runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_readme_quickstart_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    assert blocks, "the README has no python example"
    for block in blocks:
        subprocess.run([sys.executable, "-c", block], cwd=tmp_path, check=True, timeout=60)
    assert (tmp_path / "memory.db").is_file()


def test_every_cli_command_is_documented() -> None:
    from noted.cli import build_parser

    doc = (ROOT / "docs" / "cli.md").read_text()
    parser = build_parser()
    groups = next(a for a in parser._actions if a.dest == "group")
    memories = groups.choices["memories"]  # type: ignore[index]
    commands = next(a for a in memories._actions if a.dest == "command")
    for name in commands.choices:  # type: ignore[union-attr]
        assert f"noted memories {name}" in doc, name
    sessions = groups.choices["sessions"]  # type: ignore[index]
    session_commands = next(a for a in sessions._actions if a.dest == "command")
    for name in session_commands.choices:  # type: ignore[union-attr]
        assert f"noted sessions {name}" in doc, name
    jobs = groups.choices["jobs"]  # type: ignore[index]
    job_commands = next(a for a in jobs._actions if a.dest == "command")
    for name in job_commands.choices:  # type: ignore[union-attr]
        assert f"noted jobs {name}" in doc, name
    for name in (
        "noted chat",
        "noted serve",
        "noted token",
        "noted worker",
        "noted mcp",
        "noted import agno",
        "noted import mem0",
    ):
        assert name in doc, name
    assert set(groups.choices) == {  # type: ignore[arg-type]
        "memories",
        "sessions",
        "chat",
        "serve",
        "token",
        "mcp",
        "import",
        "worker",
        "jobs",
    }


def test_every_markdown_table_is_whole() -> None:
    """A table row after a blank line must start a new table (header and separator):
    otherwise Markdown shows it as a paragraph of pipes, cut off from its table."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            starts_table = line.startswith("|") and (i == 0 or not lines[i - 1].startswith("|"))
            separator = lines[i + 1] if i + 1 < len(lines) else ""
            if starts_table and not re.fullmatch(r"\|( *:?-+:? *\|)+", separator):
                broken.append(f"{page.relative_to(ROOT)}:{i + 1}: {line[:60]}")
    assert broken == []
