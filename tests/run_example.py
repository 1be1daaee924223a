"""Run an example with the offline rule-based model: ``python run_example.py EXAMPLE [ARGS]``.

The example is run as its own ``__main__`` with ``NOTED_MODEL=offline:examples``; the
``offline`` provider is registered here, the way any third-party provider registers.
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from example_model import example_model
from noted.models import register_provider

if __name__ == "__main__":
    register_provider("offline", example_model)
    os.environ["NOTED_MODEL"] = "offline:examples"
    example = sys.argv[1]
    sys.argv = sys.argv[1:]
    sys.path.insert(0, str(Path(example).parent))  # as `python example.py` would
    runpy.run_path(example, run_name="__main__")
