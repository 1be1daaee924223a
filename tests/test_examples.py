"""The README's main job: remember in one process, recall in another."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[1] / "examples" / "remember_and_recall.py"


@pytest.mark.default_embedder
def test_walkthrough_recalls_across_processes(tmp_path: Path) -> None:
    def step(name: str) -> str:
        done = subprocess.run(
            [sys.executable, str(EXAMPLE), name],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout

    remembered = step("remember")
    assert "ava: 3 memories" in remembered
    recalled = step("recall")
    assert "The user lives in Seattle - ['location']" in recalled
    assert "San Francisco" not in recalled
    assert "newest memory: The user enjoys reading science fiction novels before bed" in recalled
    # found by meaning: no word of the question is in the memory
    assert "Which city is her home? -> The user lives in Seattle" in recalled
    assert "What does he do to relax? -> The user enjoys" in recalled
    # what a person reads: a rank and how it was found, not a bare fused score
    assert "(score" not in recalled
    assert "Seattle (the best of 3 memories, found by meaning alone: it shares no word" in recalled
    assert "before bed (the best of 2 memories, found by meaning alone" in recalled
    assert (tmp_path / "tmp" / "walkthrough.db").is_file()
    # Running it again starts over rather than piling up duplicates.
    step("remember")
    assert step("recall").count("The user likes to ski") == 1


def test_agent_example_saves_its_session(tmp_path: Path) -> None:
    example = Path(__file__).parents[1] / "examples" / "agent_with_history.py"
    env = {k: v for k, v in os.environ.items() if k != "NOTED_MODEL"}
    done = subprocess.run(
        [sys.executable, str(example)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert "Skiing is a great way" in done.stdout
    assert "your name is Ava" in done.stdout
    assert "session ski-trip: 2 runs saved" in done.stdout


# -- the seed examples, run end to end with the offline rule-based model -----------------------

EXAMPLES = Path(__file__).parents[1] / "examples"
RUNNER = Path(__file__).parent / "run_example.py"
SRC = str(Path(__file__).parents[1] / "src")
COVERED = {
    "remember_and_recall",
    "agent_with_history",
    "agentic_memory_agent",
    "create_memories_after_each_run",
    "memory_management",
    "create_memories_from_message",
    "create_memories_from_messages",
    "search_memories",
    "agentic_search",
    "sqlite_memory",
    "agent_with_storage",
    "memory_chat",
    "memory_turn_by_turn",
    "basic_memory_agent",
    "postgres_memory",
}


def example_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NOTED_MODEL"}
    env["PYTHONPATH"] = SRC
    env["COLUMNS"] = "200"
    return env


def run_example(name: str, cwd: Path, **env: str) -> str:
    done = subprocess.run(
        [sys.executable, str(RUNNER), str(EXAMPLES / f"{name}.py")],
        cwd=cwd,
        check=False,
        capture_output=True,
        text=True,
        env=example_env() | env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_example_is_run_by_a_test() -> None:
    assert {p.stem for p in EXAMPLES.glob("*.py") if not p.stem.startswith("_")} == COVERED


def test_agentic_memory_agent(tmp_path: Path) -> None:
    out = run_example("agentic_memory_agent", tmp_path)
    first, second = out.split("Memories about Ava:")[1:]
    assert "add_memory: Added memory [1]: User's name is Ava" in out
    assert sorted(eval(first.strip().splitlines()[0])) == [
        "User likes to ski",
        "User's name is Ava",
    ]
    assert "User lives in San Francisco" in second
    assert "From San Francisco, Lake Tahoe" in out  # the second answer used the memory
    again = run_example("agentic_memory_agent", tmp_path)  # starts over: memory.clear()
    assert again.split("Memories about Ava:")[1].count("User likes to ski") == 1


def test_create_memories_after_each_run(tmp_path: Path) -> None:
    out = run_example("create_memories_after_each_run", tmp_path)
    remembered, forgotten = out.split("Memories about John Doe:")[1:]
    assert "User likes to hike in the mountains on weekends" in remembered
    assert "User's name is John Doe" in remembered
    # recalled on the next turn, the name first (it is always kept in view)
    assert "Here is what I remember: User's name is John Doe; User likes to hike" in out
    assert forgotten.strip() == "[]"  # clearing is allowed in this example


def test_memory_management(tmp_path: Path) -> None:
    out = run_example("memory_management", tmp_path)
    assert "Added: The user's name is Jane Doe" in out
    assert "Replaced: The user's name is Verna Doe" in out
    assert "Left: []" in out
    assert 'delete: "The user\'s name is Verna Doe" -> None' in out


def test_create_memories_from_a_message_and_from_messages(tmp_path: Path) -> None:
    out = run_example("create_memories_from_message", tmp_path)
    assert "User enjoys hiking in the mountains on weekends - ['hobbies']" in out
    assert "User has a recent passion for photography" in out
    assert len([line for line in out.splitlines() if line[:1].isdigit()]) == 6
    out = run_example("create_memories_from_messages", tmp_path)
    lines = sorted(line.split(": ", 1)[1] for line in out.splitlines() if line[:1].isdigit())
    assert lines == ["User likes to play chess - ['hobbies']", "User's name is Jane Doe - ['name']"]


def test_search_examples(tmp_path: Path) -> None:
    out = run_example("search_memories", tmp_path)
    assert "last_n memories:\n0: The user enjoys reading science fiction novels" in out
    assert "first_n memories:\n0: The user enjoys hiking in the mountains" in out
    out = run_example("agentic_search", tmp_path)
    assert out.splitlines()[1:] == ["0: The user enjoys hiking in the mountains on weekends"]


def test_storage_examples(tmp_path: Path) -> None:
    out = run_example("sqlite_memory", tmp_path)
    assert "Memory: The user prefers dark mode in applications" in out
    assert "Topics: ['preferences', 'ui']" in out and "Last Updated: 20" in out
    out = run_example("agent_with_storage", tmp_path)
    assert "memories: ['User loves Italian food']" in out
    assert "sessions: 1, runs: 1" in out
    assert (tmp_path / "tmp" / "agent_storage.db").is_file()


def test_memory_turn_by_turn(tmp_path: Path) -> None:
    out = run_example("memory_turn_by_turn", tmp_path)
    assert "Stored fact: User's name is Chandra." in out
    assert out.strip().endswith("Agent: Your name is Chandra, I remember!")


def test_basic_memory_agent(tmp_path: Path) -> None:
    out = run_example("basic_memory_agent", tmp_path)
    assert "- User's name is Sarah ['name']" in out
    assert "- User likes to swim ['hobbies']" in out


def test_memory_chat_remembers_across_restarts(tmp_path: Path) -> None:
    import pexpect

    from test_chat import interruptible

    def chat(*lines: str) -> str:
        child = pexpect.spawn(
            sys.executable,
            [str(RUNNER), str(EXAMPLES / "memory_chat.py")],
            cwd=str(tmp_path),
            env={**example_env(), "TERM": "xterm"},
            encoding="utf-8",
            timeout=30,
            dimensions=(40, 160),
            preexec_fn=interruptible,
        )
        prompt = r"You(\x1b\[[0-9;]*m)* > "
        seen = ""
        child.expect(prompt)
        for line in lines:
            child.sendline(line)
            child.expect(prompt)  # the next prompt: the whole answer came before it
            seen += child.before
        child.sendcontrol("c")
        seen += child.read()
        child.close()
        assert child.exitstatus == 0, seen
        return seen

    chat("I love Italian food and I'm learning Spanish", "My daughter's name is Emma")
    answer = chat("What do you know about me?")
    assert "User loves Italian food" in answer
    assert "User is learning Spanish" in answer
    assert "User's daughter's name is Emma" in answer


def test_postgres_memory(tmp_path: Path, servers) -> None:
    from conftest import server_url

    url = server_url(servers, "postgres").replace("postgresql://", "postgresql+psycopg://")
    out = run_example("postgres_memory", tmp_path, NOTED_DB_URL=url)
    stored = out.split("Stored memories:")[1]
    assert "- User loves Italian food ['hobbies']" in stored
    assert "- User is learning Spanish ['learning']" in stored
    assert "- User's daughter's name is Emma ['family']" in stored
    assert "Italian food" in out.split("Stored memories:")[0].split("What food do I like?")[-1]
    assert "sessions: ['second', 'first']" in out
    again = run_example("postgres_memory", tmp_path, NOTED_DB_URL=url)  # starts over
    assert again.split("Stored memories:")[1].count("Italian food") == 1


# -- how a person runs them ---------------------------------------------------------------------

ROOT = Path(__file__).parents[1]
RUN = "scripts/uv.sh run python examples/"


def test_each_example_says_how_to_run_it_from_the_checkout() -> None:
    """The command in an example's docstring works after the README's set-up (the locked
    environment in .venv); a bare `python` would not find noted there."""
    for name in sorted(COVERED):
        doc = (EXAMPLES / f"{name}.py").read_text().split('"""')[1]
        commands = [line for line in doc.splitlines() if "examples/" in line]
        assert commands, name
        for line in commands:
            assert f"{RUN}{name}.py" in line, (name, line)
            assert f" python examples/{name}.py" not in line.replace(RUN, ""), (name, line)


def test_an_examples_own_command_runs_as_written() -> None:
    doc = (EXAMPLES / "sqlite_memory.py").read_text().split('"""')[1]
    command = next(line.strip() for line in doc.splitlines() if RUN in line)
    done = subprocess.run(
        ["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "Memory: The user prefers dark mode in applications" in done.stdout


def test_model_examples_without_a_key_say_what_to_set_in_one_line(tmp_path: Path) -> None:
    keys = ("OPENAI_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY", "ANTHROPIC_API_KEY")
    env = {k: v for k, v in example_env().items() if k not in keys}
    picks = sorted(p for p in EXAMPLES.glob("[!_]*.py") if "example_model(" in p.read_text())
    assert len(picks) >= 9

    def run_without_key(example: Path, **more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(example)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=env | {"NOTED_DB_URL": "postgresql://127.0.0.1:1/none"} | more,
            timeout=60,
            check=False,
        )

    asked = set()
    for example in picks:
        done = run_without_key(example)
        assert done.returncode == 1, (example.name, done.stderr)
        lines = done.stderr.splitlines()
        assert len(lines) == 1, (example.name, done.stderr)
        assert "needs an API key: set " in lines[0], lines
        assert "NOTED_MODEL=" in lines[0], lines
        asked.add(lines[0].split(": set ")[1].split(",")[0])
    assert asked == {"OPENAI_API_KEY", "GOOGLE_API_KEY or GEMINI_API_KEY"}
    done = run_without_key(EXAMPLES / "agentic_search.py", NOTED_MODEL="openai:gpt-4o-mini")
    assert done.stderr.startswith("openai:gpt-4o-mini needs an API key: set OPENAI_API_KEY")
