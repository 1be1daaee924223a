"""Which of a user's memories matter for a text: the ones the agent's prompt shows, the
memory manager's "existing memories" and agentic search's candidates.

Every selection searches ALL of the user's memories, never a window of the newest: the
store's keyword index (SQLite FTS5, PostgreSQL full text, MongoDB's text index; BM25 over
the user's memories in the process for the in-process store and Redis), fused with
semantic search when there is an embedder (hybrid). The search's results come first, best
first (meaning weighs ``SEMANTIC_WEIGHT`` in the fusion, more than in a search's default:
a prompt shows some 35 memories, and gathering all that bear on a question counts more
there than the best few matches); then facts that always matter, whatever is asked (the
user's name, what they are allergic or intolerant to: "Can I order the prawn curry?" must
not be answered without "allergic to shellfish", which a small embedder may rank far
down); then the newest memories, so a text with no content words ("what do you know
about me?") still shows something, and duplicates (the same words) are shown once.

What was learned together bears on a question together: the rest of an event, the other
facts a question gathers, often sharing no word with it. So the memories of the same
episode as the search's ``EPISODE_TOP`` best matches (their session; for memories with
none, the label in brackets their text starts with) are lifted by ``EPISODE_LIFT`` of the
best match's score before the results are offered (:func:`lifted`); not an episode that
holds most of the results (``EPISODE_SHARE``: an agent kept on one session).

A follow-up ("and what does she eat?") names nothing the memories say: the session's
recent turns (:class:`RecentTurns`) are searched too, and their results are merged with the
message's at a lower weight (``RECENT_TURNS_WEIGHT``, by rank), so the message still leads
and what both point to comes first. Their meaning is the earlier user messages' (with one
turn, the previous message, whose embedding its own run already made and the index keeps);
the opening of the assistant's last reply adds its words only. The messages are cut to
``RECENT_TURNS_CHARS``, the reply to ``RECENT_REPLY_CHARS``: for a user with many memories
each new word of a keyword search is counted first (see the SQLite store's full-text
search), so the words searched are kept few.

Cost: one search of a bounded depth (two in a session's later turns, with one query
embedding between them as a rule), one listing of the ``recent`` newest and two small
keyword searches for the facts always shown, whatever the number of memories. SQLite
answers the last two from kept results while the user's memories are unchanged (then on
the caller's thread; after a change, on another thread while the message embeds, where it
is embedded), PostgreSQL too after one read of the user's generation; on the other stores,
which wait on a server or rank in Python, they and the listing run on another thread beside
the search, so a selection takes about as long as its longest part, not their sum. A store
with an index answers in time that grows slowly with the user's memory count; the
in-process store and Redis rank the user's memories in Python (a BM25 index kept per user,
built at their first search and then patched with the memories each change writes), which
grows linearly with the user's memory count (see docs/benchmarks.md for figures).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from noted.db.base import MemoryQuery, MemoryStore, ScoredMemory
from noted.memory.index import HitSearch, MemoryIndex, alongside, beside
from noted.retrieval.ranking import STOPWORDS, WORD, fts_terms
from noted.schema import UserMemory
from noted.tracing import _hooks as tracing

__all__ = [
    "CENTERING",
    "EPISODE_LIFT",
    "EPISODE_SHARE",
    "EPISODE_TOP",
    "PINNED_CONSTRAINTS",
    "RECENT",
    "RECENT_REPLY_CHARS",
    "RECENT_TURNS_CHARS",
    "RECENT_TURNS_WEIGHT",
    "SEARCH_DEPTH",
    "SEMANTIC_WEIGHT",
    "RecentTurns",
    "distinct",
    "episode",
    "estimate_tokens",
    "labelled",
    "lifted",
    "scoped",
    "search_memories",
    "select_memories",
]

SEARCH_DEPTH: Final = 60  # results read from the search, at least
RECENT: Final = 5  # the newest memories, offered after the search's results
SEMANTIC_WEIGHT: Final = 0.6  # hybrid's weight of meaning for a selection
CENTERING: Final = 0.75  # of the query's part along the user's mean vector, taken away
RECENT_TURNS_WEIGHT: Final = 0.5  # the recent turns' search, against the message's 1
RECENT_TURNS_CHARS: Final = 300  # of the earlier user messages, newest first
RECENT_REPLY_CHARS: Final = 200  # of the last reply, its opening
_RANK_OFFSET: Final = 10  # reciprocal rank fusion's constant: 1 / (offset + rank)
EPISODE_TOP: Final = 2  # the best matches whose episodes are lifted ...
EPISODE_LIFT: Final = 0.2  # ... by this share of the best match's score
EPISODE_SHARE: Final = 0.5  # an episode holding more of the results than this is no sign
# a label in brackets that a memory's text starts with: "[8 May, 2023] ...", "[work] ..."
_LABEL: Final = re.compile(r"\[[^\[\]\n]{1,80}\][ \t]+(?=\S)")
PINNED_CONSTRAINTS: Final = 3  # memories of allergies and intolerances, always offered
# a memory that says the user's own name ("User's name is Ava", "The user goes by Av",
# "She prefers to be called Sam"); not one that names something else ("a group called
# Connected", "a dog named Luna", "her cat's name is Oliver")
_NAME = re.compile(
    r"(?:^|\b(?:user'?s?|my|your|their|his|her|first|full|last|given|real|preferred))"
    r"[ -]?(?:nick)?name\b"
    r"|\b(?:user|i|you|he|she|they)\s+(?:is|am|are|was|were)\s+(?:called|named)\b"
    r"|\bgoes by\b|\bgo by\b|\b(?:prefers?|likes?|wants?|asks?|asked) to be called\b"
    r"|\bcall (?:me|him|her|them)\b",
    re.IGNORECASE,
)
_CONSTRAINT = re.compile(r"\ballerg|\bintoleran|\banaphyla|\bc(?:o)?eliac", re.IGNORECASE)
# the searches for facts always shown: the same words every time, so a store that keeps
# a repeated search's results (SQLite) answers them from those until the memories change
_NAME_QUERY: Final = "name named nickname called goes"
_CONSTRAINT_QUERY: Final = "allergic allergy intolerant intolerance anaphylaxis celiac coeliac"
_TOKEN = re.compile(r"\w+|[^\w\s]")
# a contraction's ending ("n't", "'s", "'re", ...), either apostrophe, and the negations
# whose first word it changes ("can't" is "can" not "ca")
_CONTRACTION = re.compile(r"n['\u2019]t\b|['\u2019](?:s|d|ll|m|re|ve)\b", re.IGNORECASE)
_IRREGULAR_NOT = re.compile(r"\b(can|won|ain)['\u2019]t\b", re.IGNORECASE)
_IRREGULAR: Final = {"can": "can", "won": "will", "ain": "is"}


def estimate_tokens(text: str) -> int:
    """An offline estimate of how many tokens ``text`` takes for a model's tokenizer: its
    words and punctuation marks, long words counted for more (about 4 characters a token)."""
    return sum(1 + len(piece) // 8 for piece in _TOKEN.findall(text))


def scoped(memories: Iterable[UserMemory], agent_id: str | None) -> list[UserMemory]:
    """The memories an agent scoped to ``agent_id`` sees: its own and those of no agent."""
    return [m for m in memories if agent_id is None or m.agent_id in (agent_id, None)]


def labelled(text: str) -> tuple[str | None, str]:
    """The label in brackets ``text`` starts with ("[8 May, 2023]", "[work]"; None when
    it has none) and the rest of the text."""
    label = _LABEL.match(text)
    return (None, text) if label is None else (label.group(0).rstrip(), text[label.end() :])


def episode(memory: UserMemory) -> tuple[str, str] | None:
    """Where a memory was learned, as far as it says: its session, else the label in
    brackets its text starts with (a date, a source: what the prompt lists memories
    under); None when it has neither."""
    if memory.session_id:
        return ("session", memory.session_id)
    label, _ = labelled(memory.memory)
    return None if label is None else ("label", label)


def lifted(results: Sequence[ScoredMemory]) -> list[ScoredMemory]:
    """The results, best first, once each memory of an episode of the ``EPISODE_TOP``
    best has gained ``EPISODE_LIFT`` of the best score: what was learned in the same
    conversation as the best matches often bears on the question too (the rest of an
    event, the other facts a question gathers), and shares no words with it. The scores
    are then divided by ``1 + EPISODE_LIFT``, so scores of 0..1 stay so and the best match
    keeps its own; results whose best matches have no episode are left as they are.

    An episode that holds more than ``EPISODE_SHARE`` of the results says nothing of
    them (an agent kept on one session writes all its memories there): it is not lifted,
    or the memories learned elsewhere would all fall behind it."""
    best = max((r.score for r in results), default=0.0)
    if best <= 0:
        return list(results)
    episodes = [episode(r.memory) for r in results]
    held = Counter(episodes)
    most = EPISODE_SHARE * len(results)
    near = {e for e in episodes[:EPISODE_TOP] if e is not None and held[e] <= most}
    if not near:
        return list(results)
    lift, scale = EPISODE_LIFT * best, 1 + EPISODE_LIFT
    rescored = [
        ScoredMemory(r.memory, (r.score + (lift if e in near else 0)) / scale)
        for r, e in zip(results, episodes, strict=True)
    ]
    return sorted(rescored, key=lambda r: -r.score)  # stable: ties keep their order


@dataclass(frozen=True, slots=True)
class RecentTurns:
    """What the session said just before the message: ``said``, its earlier user messages
    (searched by words and meaning), and ``replied``, the assistant's last reply (searched
    by its words only)."""

    said: str = ""
    replied: str = ""

    @classmethod
    def of(cls, turns: Sequence[tuple[str, str | None]]) -> RecentTurns:
        """From (user message, reply) pairs, oldest first: the messages newest first and
        the opening of the last reply, cut to ``RECENT_TURNS_CHARS`` and
        ``RECENT_REPLY_CHARS``."""
        said = "\n".join(message for message, _ in reversed(turns) if message.strip())
        replied = (turns[-1][1] or "").strip() if turns else ""
        return cls(_cut(said, RECENT_TURNS_CHARS), _cut(replied, RECENT_REPLY_CHARS))

    def __bool__(self) -> bool:
        return bool(self.said.strip() or self.replied.strip())


def _cut(text: str, chars: int) -> str:
    """``text`` within ``chars``, cut at a word's end where there is one."""
    if len(text) <= chars:
        return text
    head = text[:chars]
    space = head.rfind(" ")
    return head[:space] if space > 0 else head


def _search(
    store: MemoryStore,
    index: MemoryIndex | None,
    query: MemoryQuery,
    text: str,
    words: str | None = None,
    text_only: bool = False,
) -> list[ScoredMemory]:
    if index is not None and text.strip():
        return index.hybrid(
            query, text, semantic_weight=SEMANTIC_WEIGHT, words=words, centering=CENTERING
        )
    return store.keyword_search(query, text if words is None else words, text_only=text_only)


def search_memories(
    store: MemoryStore,
    query: MemoryQuery,
    text: str,
    *,
    index: MemoryIndex | None = None,
    agent_id: str | None = None,
    words: str | None = None,
    text_only: bool = False,
) -> list[ScoredMemory]:
    """The best matches for ``text`` among all the memories ``query`` selects (at most
    ``query.limit``): hybrid with an ``index``, keyword otherwise (by ``words`` instead of
    ``text``'s when given; in the memories' text alone with ``text_only``). With
    ``agent_id``, only that agent's memories and those written with no agent id: the
    agent's own are searched apart, so other agents' memories cannot crowd them out."""
    if not (text.strip() or (words or "").strip()):
        return []
    if agent_id is None:
        return _search(store, index, query, text, words, text_only)
    mine = dataclasses.replace(query, agent_id=agent_id)
    own = _search(store, index, mine, text, words, text_only)
    depth = None if query.limit is None else 3 * query.limit
    wide = dataclasses.replace(query, limit=depth)
    shared = [
        r for r in _search(store, index, wide, text, words, text_only) if r.memory.agent_id is None
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


def _pinned(store: MemoryStore, query: MemoryQuery, agent_id: str | None) -> list[UserMemory]:
    """Facts that matter whatever is asked: the user's own name, as far as the memories
    say it (the best match), then up to ``PINNED_CONSTRAINTS`` memories of what they are
    allergic or intolerant to (a search of their own: a user's memories name many things,
    and those would crowd out the user's name). Both search the memories' own text: the
    conversations memories came from can be full of the words (a friend's allergy,
    someone's nickname), and their matches would crowd out the facts."""

    def matching(words: str, pattern: re.Pattern[str], depth: int) -> list[UserMemory]:
        if depth <= 0:
            return []
        wanted = dataclasses.replace(query, limit=depth)
        found = search_memories(store, wanted, words, agent_id=agent_id, text_only=True)
        return [r.memory for r in found if pattern.search(r.memory.memory)]

    name = matching(_NAME_QUERY, _NAME, 5)[:1]
    constraints = matching(_CONSTRAINT_QUERY, _CONSTRAINT, 2 * PINNED_CONSTRAINTS)
    return [*name, *constraints[:PINNED_CONSTRAINTS]]


def select_memories(
    store: MemoryStore,
    query: MemoryQuery,
    text: str,
    limit: int,
    *,
    index: MemoryIndex | None = None,
    agent_id: str | None = None,
    recent: int = RECENT,
    pinned: bool = True,
    turns: RecentTurns | None = None,
) -> list[UserMemory]:
    """At most ``limit`` of the memories ``query`` selects (its user and filters) that
    matter for ``text`` (and, less, for the session's recent ``turns``), most relevant
    first (see the module's note). ``query.limit`` is how many of each search's best
    matches are read (``SEARCH_DEPTH`` when None)."""
    if limit <= 0:
        return []
    # SQLite answers the searches for the facts always shown from kept results, in
    # microseconds, until the user's memories change: then they take a millisecond or two,
    # read while the message is embedded where it is; the other stores wait on a server or
    # rank in Python, so those searches and the newest memories are read beside the
    # message's search
    if isinstance(store, HitSearch) and (index is None or not index.embeds_beside(text)):
        found = _found(store, query, text, limit, index, agent_id, turns)
        always, newest = _extras(store, query, agent_id, recent, pinned)
    else:
        early = beside(_extras, store, query, agent_id, recent, pinned)
        found, (always, newest) = alongside(
            early, _found, store, query, text, limit, index, agent_id, turns
        )
    candidates = [*always, *found, *newest]
    tracing.considered(len({m.memory_id for m in candidates}))
    return distinct(candidates, limit)


def _extras(
    store: MemoryStore, query: MemoryQuery, agent_id: str | None, recent: int, pinned: bool
) -> tuple[list[UserMemory], list[UserMemory]]:
    """What a selection shows whatever is asked: the pinned facts, and the newest."""
    always = _pinned(store, query, agent_id) if pinned else []
    return always, _newest(store, query, recent, agent_id)


def _found(
    store: MemoryStore,
    query: MemoryQuery,
    text: str,
    limit: int,
    index: MemoryIndex | None,
    agent_id: str | None,
    turns: RecentTurns | None,
) -> list[UserMemory]:
    """The search's results for the message, merged with the recent turns'."""
    reading = max(limit, query.limit or SEARCH_DEPTH)
    depth = dataclasses.replace(query, limit=reading, offset=0)
    # a message of function words alone ("and you?", "why is that?") has no words to
    # match: memories sharing "is" or "that" are no more relevant than any other
    words = "" if _function_words_only(text) else None
    found = [
        r.memory
        for r in lifted(
            search_memories(store, depth, text, index=index, agent_id=agent_id, words=words)
        )
    ]
    if turns:
        # at half the weight, its matches past the first half would rank below a full
        # list of the message's, so only those are read
        half = dataclasses.replace(depth, limit=max(1, reading // 2))
        said = f"{turns.said}\n{turns.replied}"
        earlier = search_memories(
            store,
            half,
            turns.said,
            index=index,
            agent_id=agent_id,
            words="" if _function_words_only(said) else said,
        )
        found = _merged(found, [r.memory for r in earlier], reading)
    return found


def _function_words_only(text: str) -> bool:
    """Whether ``text`` has words and all of them are common function words, its
    contractions read whole ("what's" as "what", "don't" as "do")."""
    words = fts_terms(_uncontracted(text))
    return bool(words) and all(w in STOPWORDS for w in words)


def _uncontracted(text: str) -> str:
    """``text`` with English contractions' endings left out: the pieces they leave as
    words ("s", "t", "re", "don", "isn") are in no list of function words."""
    text = _IRREGULAR_NOT.sub(lambda m: _IRREGULAR[m[1].casefold()], text)
    return _CONTRACTION.sub("", text)


def _merged(
    first: Sequence[UserMemory], second: Sequence[UserMemory], limit: int
) -> list[UserMemory]:
    """Two rankings as one by weighted reciprocal rank: ``second`` weighs
    ``RECENT_TURNS_WEIGHT``; a memory in both ranks above either alone."""
    scores: dict[str | None, float] = {}
    chosen: dict[str | None, UserMemory] = {}
    for weight, ranking in ((1.0, first), (RECENT_TURNS_WEIGHT, second)):
        for rank, memory in enumerate(ranking, start=1):
            key = memory.memory_id
            scores[key] = scores.get(key, 0.0) + weight / (_RANK_OFFSET + rank)
            chosen.setdefault(key, memory)
    order = sorted(chosen, key=lambda key: -scores[key])  # stable: the message's order first
    return [chosen[key] for key in order[:limit]]


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
