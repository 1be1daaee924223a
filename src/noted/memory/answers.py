"""Reading a model's JSON answer: the JSON itself, or inside a markdown code fence."""

from __future__ import annotations

import re
from typing import Any

from noted._json import decode_json

__all__ = ["load_json_answer"]

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def load_json_answer(answer: str | None) -> Any:
    """The decoded answer; ValueError when it is empty, not JSON, or nested too deeply."""
    text = (answer or "").strip()
    fenced = _FENCE.match(text)
    return decode_json(fenced.group(1) if fenced else text)
