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
    for name in ("noted chat", "noted serve", "noted token", "noted worker"):
        assert name in doc, name
    assert set(groups.choices) == {  # type: ignore[arg-type]
        "memories",
        "sessions",
        "chat",
        "serve",
        "token",
        "worker",
        "jobs",
    }
