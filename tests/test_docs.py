"""The docs run as written: the README's quickstart, and every `noted` command they show."""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def test_readme_quickstart_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    assert blocks, "the README has no python example"
    for block in blocks:
        subprocess.run([sys.executable, "-c", block], cwd=tmp_path, check=True, timeout=60)
    assert (tmp_path / "memory.db").is_file()


def _python_block(page: str, holding: str) -> str:
    """The python example of ``page`` that holds ``holding``."""
    blocks: list[str] = re.findall(r"```python\n(.*?)```", (ROOT / page).read_text(), re.DOTALL)
    found = [block for block in blocks if holding in block]
    assert len(found) == 1, (page, holding)
    return found[0]


@pytest.mark.parametrize(
    ("page", "holding"),
    [
        ("docs/models.md", "ScriptedModel(["),
        ("docs/agent.md", "def get_weather("),
        ("docs/memory.md", "get_memory_history("),
        ("docs/storage.md", "query.following("),
    ],
)
def test_the_guides_offline_examples_run(tmp_path: Path, page: str, holding: str) -> None:
    """The examples a reader can run with no model and no server run as written (after
    the Memory API's setup, for the memory guide's that go on from it)."""
    code = _python_block(page, holding)
    if page == "docs/memory.md":
        code = _python_block(page, "# or Memory() for an in-process store") + code
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, timeout=60)


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


def _pages() -> list[Path]:
    """The README and the guides (not the benchmarks' log of measured figures)."""
    return [ROOT / "README.md", *sorted(ROOT.glob("docs/*.md"))]


def _subcommand(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            found: argparse.ArgumentParser = action.choices[name]
            return found
    return None


def test_every_documented_command_line_parses() -> None:
    """Each `noted ...` line of a shell example runs as written: no unknown flag, no
    missing argument, no usage placeholder such as `[--dry-run]` left in it."""
    from noted.cli import build_parser

    refused = []
    for page in _pages():
        for block in re.findall(r"```(?:bash|sh|console)\n(.*?)```", page.read_text(), re.DOTALL):
            for line in block.replace("\\\n", " ").splitlines():
                command = line.split(" #")[0].strip()
                if not command.startswith("noted "):
                    continue
                args = shlex.split(command)[1:]
                ends = [i for i, arg in enumerate(args) if arg in ("|", ">", "&&", ";")]
                try:
                    build_parser().parse_args(args[: ends[0]] if ends else args)
                except SystemExit:
                    refused.append(f"{page.relative_to(ROOT)}: {command}")
    assert refused == []


def test_every_flag_named_with_its_command_exists() -> None:
    """A flag written beside its command in the text (`noted memories list [--limit 50]`)
    is one that command takes."""
    from noted.cli import build_parser

    root = build_parser()
    unknown = []
    for page in _pages():
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
        for span in re.findall(r"`(noted [^`]*)`", text):
            parser = root
            for word in span.split()[1:]:
                below = _subcommand(parser, word)
                if below is None:
                    break
                parser = below
            taken = {option for action in parser._actions for option in action.option_strings}
            named = set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", span))
            unknown += [f"{page.relative_to(ROOT)}: {flag} in `{span}`" for flag in named - taken]
    assert unknown == []


def test_every_sqlite_migration_is_in_the_storage_guide() -> None:
    """docs/storage.md has a row for each migration of the memory and session tables."""
    from noted.db.sqlite.migrations import MIGRATIONS, SESSION_MIGRATIONS

    doc = (ROOT / "docs" / "storage.md").read_text()
    tables = {
        header: re.findall(r"^\| (\d+) \|", body, flags=re.MULTILINE)
        for header, body in re.findall(
            r"^\| (version|session table version) \| change \|\n((?:\|.*\n)+)", doc, re.MULTILINE
        )
    }
    expected = {
        "version": [str(n) for n in range(1, len(MIGRATIONS) + 1)],
        "session table version": [str(n) for n in range(1, len(SESSION_MIGRATIONS) + 1)],
    }
    assert tables == expected


def test_the_server_guide_lists_every_route(tmp_path: Path) -> None:
    """docs/server.md's route table names each route of the OpenAPI schema (an agent
    served, so its routes are there too), and no route the server does not have."""
    from noted import Agent, SqliteDb
    from noted.server import create_app
    from noted.testing import ScriptedModel

    def shape(path: str) -> str:
        return re.sub(r"\{[^}]+\}", "{id}", path.partition("?")[0])

    app = create_app(
        SqliteDb(db_file=tmp_path / "noted.db"), embedder=None, agent=Agent(ScriptedModel([]))
    )
    served = {
        (method.upper(), shape(path))
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    doc = (ROOT / "docs" / "server.md").read_text()
    routes = re.findall(r"^\| `(GET|POST|PATCH|PUT|DELETE) ([^` ]+)`", doc, flags=re.MULTILINE)
    documented = {(method, shape(path)) for method, path in routes}
    assert (sorted(served - documented), sorted(documented - served)) == ([], [])


def test_the_agent_guide_lists_every_option_with_its_default() -> None:
    """docs/agent.md's table of options names each parameter of `Agent`, and the default
    it shows (when it is a value) is the one the signature has."""
    import inspect

    from noted import Agent

    doc = (ROOT / "docs" / "agent.md").read_text()
    table = doc.split("## Options", 1)[1].split("\n## ", 1)[0]
    shown: dict[str, str] = {}
    for names, default in re.findall(r"^\| (`[^|]+`) \| ([^|]+) \|", table, flags=re.MULTILINE):
        for name in re.findall(r"`(\w+)`", names):
            shown[name] = default.strip()
    parameters = inspect.signature(Agent).parameters
    assert sorted(shown) == sorted(parameters)
    for name, default in shown.items():
        if default.startswith("`"):
            assert default == f"`{parameters[name].default!r}`".replace("'", '"'), name


def test_the_memory_guide_names_each_methods_parameters() -> None:
    """Each method in docs/memory.md's table of the Memory API is written with the
    parameters `Memory`'s method has, in their order."""
    import inspect

    from noted import Memory

    doc = (ROOT / "docs" / "memory.md").read_text()
    table = doc.split("## The Memory API", 1)[1].split("\n## ", 1)[0]
    methods = re.findall(r"^\| `(\w+)\(([^`]*)\)` \|", table, flags=re.MULTILINE)
    assert len(methods) > 20
    for name, arguments in methods:
        written = [a.split("=")[0].strip() for a in arguments.split(",") if a.strip() not in "*"]
        parameters = list(inspect.signature(getattr(Memory, name)).parameters)[1:]
        assert written == parameters, name


def test_the_servers_config_file_example_is_read_as_it_says(tmp_path: Path) -> None:
    """docs/server.md's config file: every key it shows is one the server reads."""
    from noted.server.config import load_config

    doc = (ROOT / "docs" / "server.md").read_text()
    [block] = [b for b in re.findall(r"```toml\n(.*?)```", doc, re.DOTALL) if "[agent]" in b]
    path = tmp_path / "noted.toml"
    path.write_text(block)
    config = load_config(path)
    assert config.agent is not None
    assert (config.agent.agent_id, config.agent.name) == ("assistant", "Assistant")
    assert config.agent.description == "You help Ava plan trips."
