"""Which memories matter for a message: keyword overlap first, recency second.

A bounded window of the user's most recent memories is ranked, so the cost and the
prompt size do not grow with the user's total memory count.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from noted.schema import UserMemory

__all__ = ["keywords", "rank_memories"]

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_STOPWORD_TEXT = """a about above after again all also am an and any are as at be because been
    before     being below between both but by can could did do does doing down during each few for
    from further had has have having he her here hers herself him himself his how i if in
    into is it its itself just me more most my myself no nor not now of off on once only or
    other our ours out over own same she should so some such than that the their theirs them
    then there these they this those through to too under until up very was we were what
    when where which while who whom why will with would you your yours yourself user users
    tell know like"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


@lru_cache(maxsize=65536)
def keywords(text: str) -> frozenset[str]:
    """Lowercase content words (a plural 's' dropped), without common function words."""
    found: set[str] = set()
    for word in _WORD.findall(text.casefold()):
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
