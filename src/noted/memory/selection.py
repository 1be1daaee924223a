"""Which of a user's memories matter for a text: the ones the agent's prompt shows, the
memory manager's "existing memories" and agentic search's candidates.

Every selection searches ALL of the user's memories, never a window of the newest: the
store's keyword index (SQLite FTS5, PostgreSQL full text, MongoDB's text index; BM25 over
the user's memories in the process for the in-process store and Redis), fused with
semantic search when there is an embedder (hybrid). The search's results come first, best
first (meaning weighs ``SEMANTIC_WEIGHT`` in the fusion, more than in a search's default:
a prompt shows some 30 memories, and gathering all that bear on a question counts more
there than the best few matches); then facts that always matter (the user's name); then
the newest memories, so a text with no content words ("what do you know about me?") still
shows something, and duplicates (the same words) are shown once.

Cost: one search of a bounded depth, one listing of the ``recent`` newest and one small
search for the name, whatever the number of memories. A store with an index answers in
time that grows slowly with the user's memory count; the in-process store and Redis rank
the user's memories in Python (a cached BM25 index for Redis), which grows linearly with
the user's memory count (see docs/benchmarks.md for figures).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterable, Sequence
from typing import Final

from noted.db.base import MemoryQuery, MemoryStore, ScoredMemory
from noted.memory.index import MemoryIndex
from noted.retrieval.ranking import WORD
from noted.schema import UserMemory
from noted.tracing import _hooks as tracing

__all__ = [
    "RECENT",
    "SEARCH_DEPTH",
    "SEMANTIC_WEIGHT",
    "distinct",
    "estimate_tokens",
    "scoped",
    "search_memories",
    "select_memories",
]

SEARCH_DEPTH: Final = 60  # results read from the search, at least
RECENT: Final = 5  # the newest memories, offered after the search's results
SEMANTIC_WEIGHT: Final = 0.5  # hybrid's weight of meaning for a selection
_NAME = re.compile(r"\bname\b|\bcalled\b|\bgoes by\b", re.IGNORECASE)
_NAME_QUERY: Final = "name called"
_TOKEN = re.compile(r"\w+|[^\w\s]")


def estimate_tokens(text: str) -> int:
    """An offline estimate of how many tokens ``text`` takes for a model's tokenizer: its
    words and punctuation marks, long words counted for more (about 4 characters a token)."""
    return sum(1 + len(piece) // 8 for piece in _TOKEN.findall(text))


def scoped(memories: Iterable[UserMemory], agent_id: str | None) -> list[UserMemory]:
    """The memories an agent scoped to ``agent_id`` sees: its own and those of no agent."""
    return [m for m in memories if agent_id is None or m.agent_id in (agent_id, None)]


def _search(
    store: MemoryStore, index: MemoryIndex | None, query: MemoryQuery, text: str
) -> list[ScoredMemory]:
    if index is not None:
        return index.hybrid(query, text, semantic_weight=SEMANTIC_WEIGHT)
    return store.keyword_search(query, text)


def search_memories(
    store: MemoryStore,
    query: MemoryQuery,
    text: str,
    *,
    index: MemoryIndex | None = None,
    agent_id: str | None = None,
) -> list[ScoredMemory]:
    """The best matches for ``text`` among all the memories ``query`` selects (at most
    ``query.limit``): hybrid with an ``index``, keyword otherwise. With ``agent_id``, only
    that agent's memories and those written with no agent id: the agent's own are searched
    apart, so other agents' memories cannot crowd them out."""
    if not text.strip():
        return []
    if agent_id is None:
        return _search(store, index, query, text)
    own = _search(store, index, dataclasses.replace(query, agent_id=agent_id), text)
    depth = None if query.limit is None else 3 * query.limit
    shared = [
        r
        for r in _search(store, index, dataclasses.replace(query, limit=depth), text)
        if r.memory.agent_id is None
    ]
    merged = sorted([*own, *shared], key=lambda r: -r.score)
    return merged[: query.limit]


def _newest(
    store: MemoryStore, query: MemoryQuery, count: int, agent_id: str | None
) -> list[UserMemory]:
    if count <= 0:
        return []
    if agent_id is None:
        return store.list_memories(dataclasses.replace(query, limit=count))
    own = store.list_memories(dataclasses.replace(query, agent_id=agent_id, limit=count))
    shared = scoped(store.list_memories(dataclasses.replace(query, limit=3 * count)), agent_id)
    both = {m.memory_id: m for m in [*own, *shared]}.values()
    return sorted(both, key=_stamp, reverse=True)[:count]


def _stamp(memory: UserMemory) -> float:
    return 0.0 if memory.updated_at is None else memory.updated_at.timestamp()


def _names(store: MemoryStore, query: MemoryQuery, agent_id: str | None) -> list[UserMemory]:
    """The user's own name, as far as the memories say it."""
    found = search_memories(
        store, dataclasses.replace(query, limit=3), _NAME_QUERY, agent_id=agent_id
    )
    return [r.memory for r in found if _NAME.search(r.memory.memory)]


def select_memories(
    store: MemoryStore,
    query: MemoryQuery,
    text: str,
    limit: int,
    *,
    index: MemoryIndex | None = None,
    agent_id: str | None = None,
    recent: int = RECENT,
    names: bool = True,
) -> list[UserMemory]:
    """At most ``limit`` of the memories ``query`` selects (its user and filters) that
    matter for ``text``, most relevant first (see the module's note). ``query.limit`` is
    how many of the search's best matches are read (``SEARCH_DEPTH`` when None)."""
    if limit <= 0:
        return []
    depth = dataclasses.replace(query, limit=max(limit, query.limit or SEARCH_DEPTH), offset=0)
    found = [r.memory for r in search_memories(store, depth, text, index=index, agent_id=agent_id)]
    pinned = _names(store, query, agent_id) if names else []
    newest = _newest(store, query, recent, agent_id)
    candidates = [*pinned[:1], *found, *newest]
    tracing.considered(len({m.memory_id for m in candidates}))
    return distinct(candidates, limit)


@functools.lru_cache(maxsize=65536)
def _words(text: str) -> frozenset[str]:
    return frozenset(WORD.findall(text.casefold()))


def distinct(memories: Sequence[UserMemory], limit: int) -> list[UserMemory]:
    """The first ``limit`` memories, each once, a memory saying what an earlier one said
    (the same words, whatever their case, order and punctuation) left out."""
    kept: list[UserMemory] = []
    ids: set[str | None] = set()
    said: set[frozenset[str]] = set()
    for memory in memories:
        words = _words(memory.memory)
        if memory.memory_id in ids or (words and words in said):
            continue
        kept.append(memory)
        ids.add(memory.memory_id)
        said.add(words)
        if len(kept) >= limit:
            break
    return kept
