"""The model an example talks to: ``$NOTED_MODEL``, else the example's default.

When that model needs an API key and none is set, the example stops at once with one line
saying what to set, instead of failing at its first model call.
"""

from __future__ import annotations

import os
import sys

from noted.models import get_model


def example_model(default: str) -> str:
    """``$NOTED_MODEL`` or ``default``, as ``provider:model-id``."""
    name = os.environ.get("NOTED_MODEL") or default
    model = get_model(name)
    keys: tuple[str, ...] = getattr(model, "api_key_envs", ())
    if keys and not getattr(model, "api_key", None) and not any(map(os.environ.get, keys)):
        sys.exit(
            f"{name} needs an API key: set {' or '.join(keys)}, or choose another model "
            "with NOTED_MODEL=provider:model-id (for example NOTED_MODEL=ollama:llama3.2)"
        )
    return name
