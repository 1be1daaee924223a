"""What the package says about itself agrees: its version is written in pyproject.toml
and in ``noted.__version__`` (the server's OpenAPI document and ``noted --version`` read the
second), and an installed copy reports the same."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

import noted

ROOT = Path(__file__).resolve().parents[1]


def test_the_version_is_the_same_in_pyproject_the_package_and_its_metadata() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert noted.__version__ == project["version"]
    assert metadata.version("noted") == project["version"]
