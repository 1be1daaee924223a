"""Run one seed example as ``__main__`` with the hosted models replaced by the offline
rule-based test model: ``python run_seed.py FILE``.

``OpenAIChat``, ``Gemini`` and ``Claude`` in :mod:`noted.agno` are swapped for a factory
of :class:`noted.testing.FunctionModel` before the example imports them, so the example
runs as written, with no network and no API key.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import noted.agno
from example_model import example_model
from noted.testing import FunctionModel


def offline_model(id: str | None = None, **_: object) -> FunctionModel:
    return example_model(id or "offline")


if __name__ == "__main__":
    for name in ("OpenAIChat", "Gemini", "Claude"):
        setattr(noted.agno, name, offline_model)
    example = sys.argv[1]
    sys.argv = sys.argv[1:]
    runpy.run_path(example, run_name="__main__")
