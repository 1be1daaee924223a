"""Decoding JSON from outside (model answers, files, requests) without builtin surprises."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["decode_json"]


def decode_json(text: str | bytes) -> Any:
    """``json.loads(text)``; a :class:`ValueError` (never a :class:`RecursionError`) for
    text nested too deeply to decode."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply to read") from None
