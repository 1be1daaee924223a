"""Memories as the terminal shows them: a listing of their ids, texts, topics and times,
with each search result's share of the best one's score."""

from __future__ import annotations

from collections.abc import Sequence

from noted._listing import Field, Listing
from noted.schema import MemoryMatch, UserMemory

__all__ = [
    "MATCH_LEGEND",
    "QUERY_SHOWN",
    "RAW_SCORES",
    "match_column",
    "memory_table",
    "quoted_query",
]

QUERY_SHOWN = 60
"""The most characters of a search's query its listing's title quotes."""
MATCH_LEGEND = "match: each result's score as a share of the best one's"
RAW_SCORES = " (--json gives the raw scores)"


def match_column(found: Sequence[UserMemory]) -> list[str] | None:
    """Each result's score as a percentage of the best one's: what a person can read from
    BM25 (unbounded), cosine (-1..1) or fused (0..1) scores alike. The raw scores are in
    ``--json``."""
    scores = [m.score for m in found if isinstance(m, MemoryMatch) and m.score is not None]
    if not scores or len(scores) != len(found):  # a method that does not rank by score
        return None
    best = max(scores, default=0.0)
    return [f"{max(0, round(100 * s / best))}%" if best > 0 else "-" for s in scores]


def quoted_query(query: str) -> str:
    """``query`` quoted for a listing's title: whole when it has at most
    :data:`QUERY_SHOWN` characters, else its first ones and "…", so that a long query
    (a pasted page) does not fill the terminal above its results."""
    if len(query) <= QUERY_SHOWN:
        return repr(query)
    return f"{query[:QUERY_SHOWN].rstrip()!r}…"


def _when(memory: UserMemory) -> str:
    return "" if memory.updated_at is None else memory.updated_at.strftime("%Y-%m-%d %H:%M:%S")


def memory_table(
    memories: Sequence[UserMemory],
    title: str,
    with_user: bool,
    match: Sequence[str] | None = None,
    legend: str = MATCH_LEGEND + RAW_SCORES,
) -> Listing:
    """A listing of ``memories``; with ``match`` (see :func:`match_column`) a column of
    it first, explained by ``legend`` under the listing."""
    fields = [] if match is None else [Field("match", justify="right")]
    fields += [Field("id", "head", style="dim"), Field("memory", "text"), Field("topics")]
    if with_user:
        fields.append(Field("user"))
    fields.append(Field("updated (UTC)", "head"))
    rows = []
    for i, m in enumerate(memories):
        cells = [] if match is None else [match[i]]
        cells += [m.memory_id or "", m.memory, "(damaged)" if m.damaged else ", ".join(m.topics)]
        if with_user:
            cells.append(m.user_id or "")
        cells.append(_when(m))
        rows.append(cells)
    return Listing(title, fields, rows, legend if match is not None else "")
