"""PostgresDb's keyword ranking: BM25 over the ``words`` column, computed in the database
with inverse document frequencies taken from the searching user's own memories.

One statement ranks a query of ``k`` words:

- each distinct word becomes one lexeme (``plainto_tsquery``; words that stem alike count
  once, English stop words none);
- the user's rows that hold any of the words (the query's filters applied; read through
  the GIN index on ``(user_id, words)`` where btree_gin is there, else by the user's
  btree indexes, see ``KEYWORD_MATCH``) are read once, each with its length (its distinct
  lexemes, the ``search_length`` column) and, per word, a term frequency: ``ts_rank`` of
  the word alone, without normalization, times pi^2/6, which is the weight of its
  section (memory text 1.0, topics and the conversation 0.5) for one occurrence and grows
  more slowly for more, to 1.64 times that (``ts_rank_cd`` would count them exactly, at
  five times the cost a row);
- the number and mean length of the rows the filters keep: for a search with the user's
  id alone as filter, the user's figures that the database keeps in
  ``<memory_table>_counts`` (see ``m006_user_counts`` in :mod:`noted.db.postgres.schema`),
  one indexed row read in the statement's own snapshot, so they are always those of the
  rows it ranks; with other filters, counted in a second pass over the user's rows (from
  the ``(user_id, embedding_model) INCLUDE (search_length)`` index where it can, 1.5 ms
  at 10,000);
- each word's document frequency is counted among the matches, and a memory scores
  ``sum(idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / mean length)))`` with
  ``idf = ln(1 + (n - df + 0.5) / (df + 0.5))``, k1 = 1.2, b = 0.75, as the stores
  without a full-text index score (:mod:`noted.retrieval.ranking`).

The frequencies are those of the memories the query's filters keep, counted at each
search, so another user's memories never change a user's ranking, and a write is seen by
the next search. The cost grows with the matches times the words (about 1 microsecond a
match for five words), and with the user's rows where they are counted (other filters) or
read to match (without the GIN index by user).

A query of function words alone (PostgreSQL's English stop words, or the stores' own:
:func:`function_words_only`) has no lexeme in ``words``, which leaves them out: it is
ranked by :func:`function_words_ranking` instead, which makes the words of the user's
newest rows again with the 'simple' configuration and ranks them by the same formula
(a bounded cost, about 35 microseconds a row read, see :data:`FUNCTION_WORDS_SCAN`).
"""

from __future__ import annotations

from typing import Any, Final

from noted.db.postgres.schema import TEXT_WORDS, WORDS, folded_vector
from noted.retrieval.ranking import STOPWORDS

__all__ = [
    "ENGLISH_STOP_WORDS",
    "FUNCTION_WORDS_SCAN",
    "function_words_only",
    "function_words_parameters",
    "function_words_ranking",
    "parameters",
    "ranking",
]

K1: Final = 1.2  # BM25's, as in noted.retrieval.ranking
B: Final = 0.75
# ts_rank's weights, D, C, B, A: the search vector's memory text is A, topics B, the
# conversation it came from C (as SQLite's BM25 weighs its columns); D is not used
WEIGHTS: Final = "'{0.1, 0.5, 0.5, 1.0}'"
TEXT_WEIGHTS: Final = "'{0, 0, 0, 1.0}'"  # the memory's text alone
# ts_rank of one word, without normalization, for one occurrence of weight w: w / (pi^2 / 6)
_ONE: Final = 1.6449340668482264

# The words the 'english' configuration leaves out of the ``words`` column and out of a
# query: PostgreSQL's ``english.stop`` (share/tsearch_data), Snowball's English list
_ENGLISH_STOP_TEXT: Final = """
i me my myself we our ours ourselves you your yours yourself yourselves he him his
himself she her hers herself it its itself they them their theirs themselves what
which who whom this that these those am is are was were be been being have has had
having do does did doing a an the and but if or because as until while of at by for
with about against between into through during before after above below to from up
down in out on off over under again further then once here there when where why how
all any both each few more most other some such no nor not only own same so than too
very s t can will just don should now
"""
ENGLISH_STOP_WORDS: Final = frozenset(_ENGLISH_STOP_TEXT.split())
# The most rows a search of function words alone reads (the user's newest the filters keep)
FUNCTION_WORDS_SCAN: Final = 1_000


def function_words_only(words: list[str]) -> bool:
    """Whether a query's ``words`` (folded, stop words already left out unless they are
    all it has) are all function words: PostgreSQL's English stop words, which the
    ``words`` column does not hold, or the stores' own (``STOPWORDS``: a query of those
    alone searches them all, as the other stores do, not only the few PostgreSQL
    keeps)."""
    return all(w in ENGLISH_STOP_WORDS or w in STOPWORDS for w in words)


def ranking(
    table: str,
    where: str,
    match: str,
    words: int,
    *,
    counts: str | None = None,
    text_only: bool = False,
) -> str:
    """The ranking of ``words`` words (``hit``, ``score``, best first, ties by id) among the
    rows ``where`` keeps (`` WHERE ...``: the query's filters, the user's id among them),
    ``match`` testing a row's ``search`` against ``q``, any of the words. With ``counts``
    (the users' kept figures' table; ``where`` the user's id alone), the count and
    mean length of the user's rows are read from there instead of counted. With
    ``text_only``, only the words' occurrences in the memory's text (the search vector's
    weight A) match and count. Its parameters are :func:`parameters`'."""
    weights = WEIGHTS
    if text_only:  # read through the GIN index of the text's words, where there is one
        match = f"{TEXT_WORDS} @@ q"
        weights = TEXT_WEIGHTS
    # the mean length as the kept figures give it: a sum divided by a count, in float8
    docs = (
        "SELECT count(*)::float8 AS n, "
        f"sum(search_length)::float8 / nullif(count(*), 0)::float8 AS mean FROM {table}{where}"
    )
    if counts is not None:  # a user without a row has no memories
        docs = (
            "SELECT coalesce(max(memories), 0)::float8 AS n, "
            f"max(words)::float8 / nullif(max(memories), 0)::float8 AS mean "
            f"FROM {counts} WHERE user_id = %s"
        )
    return (
        _lexemes("english", words)
        # the matches, read once, with their lengths and term frequencies
        + f"hits AS MATERIALIZED (SELECT memory_id, search_length AS len, "
        f"{_frequencies(weights, WORDS, words)} "
        f"FROM {table}, words, websearch_to_tsquery('english', %s) AS q{where} AND {match}), "
        # the count and mean length of the rows the filters keep, once (a generic plan could
        # put them inside a loop over the matches, and count them again for each)
        f"docs AS MATERIALIZED ({docs}), " + _bm25(words)
    )


def function_words_ranking(table: str, where: str, words: int, *, text_only: bool = False) -> str:
    """:func:`ranking` of ``words`` words that are all function words (see
    :func:`function_words_only`), which the ``words`` column leaves out: the words of the
    user's newest :data:`FUNCTION_WORDS_SCAN` rows ``where`` keeps are made again in the
    statement with the 'simple' configuration (folded alike, every word kept, none
    stemmed), matched against the words, and ranked by the same BM25 among those rows
    (their count, mean length and document frequencies; a row's length its distinct
    words, function words included). No index lists these words, so the rows are read
    in the order of the user's ``(user_id, updated_at, memory_id)`` index, at most
    :data:`FUNCTION_WORDS_SCAN` of them. Its parameters are
    :func:`function_words_parameters`'."""
    weights = TEXT_WEIGHTS if text_only else WEIGHTS
    vector = folded_vector("simple", text_only=text_only)
    return (
        _lexemes("simple", words)
        # the rows searched, each with its words once (the newest first, at most so many)
        + f"scanned AS MATERIALIZED (SELECT memory_id, v, length(v) AS len FROM "
        f"(SELECT memory_id, {vector} AS v FROM {table}{where} "
        f"ORDER BY updated_at DESC, memory_id DESC LIMIT {FUNCTION_WORDS_SCAN}) AS r), "
        # any of the words ("or" and "not" among them are words here, not operators)
        "q AS MATERIALIZED (SELECT array_to_string(t, ' | ')::tsquery AS q FROM lexemes), "
        f"hits AS MATERIALIZED (SELECT memory_id, len, {_frequencies(weights, 'v', words)} "
        "FROM scanned, words, q WHERE v @@ q), "
        "docs AS MATERIALIZED (SELECT count(*)::float8 AS n, "
        "sum(len)::float8 / nullif(count(*), 0)::float8 AS mean FROM scanned), " + _bm25(words)
    )


def _lexemes(config: str, words: int) -> str:
    """The statement's first common table expressions: ``lexemes`` (``t``, the distinct
    lexemes of the words as ``config`` makes them) and ``words`` (the same in slots
    ``t1`` ... ``t<words>``, NULL past the last)."""
    terms = ", ".join(f"t[{j}] AS t{j}" for j in range(1, words + 1))
    return (
        # the distinct lexemes of the words, in slots t1 ... (NULL past the last)
        "WITH lexemes AS MATERIALIZED (SELECT ARRAY(SELECT DISTINCT x FROM "
        f"unnest(%s::text[]) AS w, plainto_tsquery('{config}', w) AS x WHERE numnode(x) > 0) "
        f"AS t), words AS MATERIALIZED (SELECT {terms} FROM lexemes), "
    )


def _frequencies(weights: str, vector: str, words: int) -> str:
    """The term frequencies ``tf1`` ... of a row whose words are ``vector``: ``ts_rank``
    of each word alone, without normalization, times pi^2/6."""
    return ", ".join(
        f"coalesce(ts_rank({weights}, {vector}, t{j}, 0), 0) * {_ONE}::float8 AS tf{j}"
        for j in range(1, words + 1)
    )


def _bm25(words: int) -> str:
    """The statement's end: the BM25 score (``hit``, ``score``, best first, ties by id) of
    each row of ``hits`` (``memory_id``, ``len``, ``tf1`` ...) with ``docs`` (``n``,
    ``mean``) and the words' document frequencies among the hits."""
    slots = range(1, words + 1)
    dfs = ", ".join(f"count(*) FILTER (WHERE tf{j} > 0)::float8 AS df{j}" for j in slots)
    idfs = ", ".join(
        f"ln(1 + (n - df{j} + 0.5::float8) / (df{j} + 0.5::float8)) * {K1 + 1}::float8 AS idf{j}"
        for j in slots
    )
    score = " + ".join(f"idf{j} * tf{j} / (tf{j} + norm)" for j in slots)
    return (
        f"stats AS (SELECT *, {idfs}, {K1 * (1 - B):.6g}::float8 AS norm0, "
        f"{K1 * B:.6g}::float8 / mean AS norm1 "
        f"FROM (SELECT n, mean, {dfs} FROM hits, docs GROUP BY n, mean) AS c) "
        f"SELECT memory_id AS hit, {score} AS score FROM stats, "
        "LATERAL (SELECT *, norm0 + norm1 * len AS norm FROM hits) AS h "
        "ORDER BY score DESC, memory_id"
    )


def parameters(words: list[str], where: list[Any], counts: bool = False) -> list[Any]:
    """The parameters of :func:`ranking`'s statement, before its page (``counts``: the
    statement was made with them)."""
    return [words, " or ".join(words), *where, *(where[:1] if counts else where)]


def function_words_parameters(words: list[str], where: list[Any]) -> list[Any]:
    """The parameters of :func:`function_words_ranking`'s statement, before its page."""
    return [words, *where]
