"""Plug-in packages add models, embedders and stores through entry points."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

PLUGIN = """
from noted.db.memory import InMemoryDb
from noted.testing import ScriptedModel
from noted.retrieval.local import default_embedder


def make_model(model_id):
    return ScriptedModel([f"hello from {model_id}"])


def make_embedder(name):
    return default_embedder()


def open_store(url, **options):
    db = InMemoryDb()
    db.opened_from = url
    return db
"""

ENTRY_POINTS = """
[noted.models]
echo = myplug:make_model

[noted.embedders]
plugged = myplug:make_embedder

[noted.stores]
plugdb = myplug:open_store
broken = myplug:does_not_exist
"""

USE = """
from noted import Agent, open_store
from noted.models import get_model, provider_names
from noted.retrieval.registry import get_embedder

assert "echo" in provider_names(), provider_names()
print(Agent(model="echo:m1").run("hi").content)
print(type(get_embedder("plugged")).__name__)
print(open_store("plugdb://somewhere/x").opened_from)
try:
    open_store("broken://x")
except ValueError as exc:
    print("refused:", exc)
"""


def test_entry_points_add_a_model_an_embedder_and_a_store(tmp_path: Path) -> None:
    (tmp_path / "myplug.py").write_text(PLUGIN)
    info = tmp_path / "myplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: myplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(ENTRY_POINTS))
    done = subprocess.run(
        [sys.executable, "-c", USE],
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "hello from m1"
    assert lines[1] == "LocalEmbedder"
    assert lines[2] == "plugdb://somewhere/x"
    assert lines[3].startswith("refused: a database must be")
    assert "store plug-in 'broken' (myplug:does_not_exist) did not load" in done.stderr
