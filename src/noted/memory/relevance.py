"""Which memories matter for a message: keyword overlap first, recency second.

A bounded window of the user's most recent memories is ranked, so the cost and the
prompt size do not grow with the user's total memory count.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from noted.retrieval.ranking import STOPWORDS, WORD
from noted.schema import UserMemory

__all__ = ["keywords", "rank_memories"]

# Besides the common function words: words that every memory or question about a user has.
_STOPWORDS = STOPWORDS | frozenset(("user", "users", "tell", "know", "like"))


@lru_cache(maxsize=65536)
def keywords(text: str) -> frozenset[str]:
    """Lowercase content words (a plural 's' dropped), without common function words."""
    found: set[str] = set()
    for word in WORD.findall(text.casefold()):
        if len(word) < 3 or word in _STOPWORDS:
            continue
        found.add(word[:-1] if len(word) > 3 and word.endswith("s") else word)
    return frozenset(found)


def rank_memories(memories: Sequence[UserMemory], query: str, limit: int) -> list[UserMemory]:
    """The ``limit`` memories that share most content words with ``query``; ties (and a
    query with no content words, such as "what do you know about me?") go to the more
    recent. ``memories`` come newest first."""
    wanted = keywords(query)

    def score(item: tuple[int, UserMemory]) -> tuple[int, int]:
        index, memory = item
        words = keywords(memory.memory) | keywords(" ".join(memory.topics))
        return (-len(wanted & words), index)

    ranked = sorted(enumerate(memories), key=score)
    return [memory for _, memory in ranked[:limit]]
