"""Cutting the middle out of a long text, where its start and its end say the most."""

from __future__ import annotations

__all__ = ["cut_middle"]


def cut_middle(text: str, limit: int, mark: str) -> str:
    """``text``'s first two thirds of ``limit`` characters and its last third, ``mark`` (a
    line saying what was left out) between them."""
    head = limit * 2 // 3
    tail = limit - head
    return text[:head] + mark + (text[-tail:] if tail else "")
