"""Keyword search (BM25) on both stores: ranking, scoping, filters, the index kept in step
with every write, and hostile query text."""

from __future__ import annotations

import json
import math
import random
import re
from collections import Counter
from pathlib import Path

import apsw
import numpy as np
import pytest

from noted import InMemoryDb, Memory, MemoryStore, SqliteDb, UserError, UserMemory
from noted.db import MemoryQuery
from noted.db import memory as memory_store
from noted.db._client_search import SnapshotCache, UserSnapshot
from noted.retrieval.porter import porter_stem
from noted.retrieval.ranking import (
    STOPWORDS,
    KeywordIndex,
    PatchedIndex,
    _stem,
    bm25_scores,
    fts_terms,
    query_stems,
    words_of,
)
from noted.retrieval.vectors import UserVectors
from noted.testing import ScriptedModel


def search(store: MemoryStore, text: str, user: str = "ava", **filters: object) -> list[str]:
    query = MemoryQuery(user_id=user, limit=10, **filters)  # type: ignore[arg-type]
    return [r.memory.memory for r in store.keyword_search(query, text)]


def seed(memory: Memory) -> None:
    memory.add_user_memories(
        [
            UserMemory("User's name is Ava", topics=["name"]),
            UserMemory("User likes to ski in the Alps", topics=["hobbies"], agent_id="coach"),
            UserMemory("User lives in Lisbon", topics=["location"]),
            UserMemory("User is allergic to shellfish", topics=["health"]),
        ],
        user_id="ava",
    )
    memory.add_user_memory(UserMemory("User likes to ski in Norway"), user_id="bob")


def test_exact_names_are_found_and_best_matches_come_first(memory: Memory) -> None:
    seed(memory)
    assert search(memory.db, "Lisbon")[0] == "User lives in Lisbon"
    assert search(memory.db, "Where do I go skiing?")[0] == "User likes to ski in the Alps"
    found = memory.db.keyword_search(MemoryQuery(user_id="ava", limit=5), "shellfish allergy")
    assert found[0].memory.memory == "User is allergic to shellfish" and found[0].score >= 0
    assert search(memory.db, "health")[0] == "User is allergic to shellfish"  # topics count


FOODS = ["pizza", "pasta", "rice", "salad", "soup", "bread", "tacos", "curry", "noodles", "oats"]


def eating(count: int) -> list[UserMemory]:
    """Memories that each say "eat" twice, the word a question about food shares with all."""
    return [
        UserMemory(f"Eats {FOODS[i % 10]} and eats {FOODS[i // 10 % 10]}") for i in range(count)
    ]


def test_a_rare_word_outranks_a_word_many_memories_share(memory: Memory) -> None:
    """A word in one memory tells more than one in fifty: the allergy comes first, though
    the others say "eat" twice (a ranking without document frequencies puts them first)."""
    memory.add_user_memories([*eating(50), UserMemory("User is allergic to shellfish")], "ava")
    found = search(memory.db, "Can I eat shellfish?")
    assert found[0] == "User is allergic to shellfish"
    assert len(found) == 10 and all("eat" in text for text in found[1:])


def test_never_another_users_memories(memory: Memory) -> None:
    seed(memory)
    assert search(memory.db, "Norway") == []
    assert search(memory.db, "ski Norway", user="bob") == ["User likes to ski in Norway"]
    assert search(memory.db, "ski", user="nobody") == []
    with pytest.raises(UserError, match="one user"):
        memory.db.keyword_search(MemoryQuery(user_id=None), "ski")


def test_filters_apply_inside_the_search(memory: Memory) -> None:
    seed(memory)
    assert search(memory.db, "ski Lisbon", topics=("location",)) == ["User lives in Lisbon"]
    assert search(memory.db, "ski Lisbon", agent_id="coach") == ["User likes to ski in the Alps"]
    assert search(memory.db, "ski", team_id="other") == []


def test_the_index_follows_updates_and_deletes(memory: Memory) -> None:
    seed(memory)
    [city] = memory.db.keyword_search(MemoryQuery(user_id="ava", limit=1), "Lisbon")
    city_id = city.memory.memory_id or ""
    memory.replace_user_memory(city_id, UserMemory("User lives in Seattle"), user_id="ava")
    assert search(memory.db, "Lisbon") == []
    assert search(memory.db, "Seattle") == ["User lives in Seattle"]
    memory.add_user_memories(  # an upsert of a stored id re-indexes it
        [UserMemory("User lives in Porto", memory_id=city_id)], user_id="ava"
    )
    assert search(memory.db, "Seattle") == [] and search(memory.db, "Porto")
    memory.delete_user_memory(city_id, user_id="ava")
    assert search(memory.db, "Porto") == []
    memory.clear(user_id="ava")
    assert search(memory.db, "ski") == [] and search(memory.db, "ski", user="bob")
    memory.clear()
    assert search(memory.db, "ski", user="bob") == []


def test_a_search_of_the_memories_text_alone(memory: Memory) -> None:
    """``text_only``: only the memories whose own text holds a word, ranked by the words'
    occurrences there, not in their topics or the conversation they came from; filters,
    users and writes as for any search."""
    seed(memory)
    said = "My cousin is allergic to peanuts and my friend Luna is allergic to cats"
    memory.add_user_memories(
        [
            UserMemory("User plays chess on Sundays", input=said),
            UserMemory("User plays tennis", topics=["allergic"]),
        ],
        user_id="ava",
    )
    memory.add_user_memory(UserMemory("User is allergic to cats"), user_id="bob")

    def only(text: str, user: str = "ava", **filters: object) -> list[str]:
        query = MemoryQuery(user_id=user, limit=10, **filters)  # type: ignore[arg-type]
        return [r.memory.memory for r in memory.db.keyword_search(query, text, text_only=True)]

    assert set(search(memory.db, "allergic")) == {
        "User is allergic to shellfish",
        "User plays chess on Sundays",
        "User plays tennis",
    }
    assert only("allergic") == ["User is allergic to shellfish"]
    assert only("allergic cats") == ["User is allergic to shellfish"]
    assert only("allergic", topics=("location",)) == []
    assert only("allergic", user="bob") == ["User is allergic to cats"]
    assert only("Lisbon shellfish")  # either word
    [chess] = memory.db.keyword_search(MemoryQuery(user_id="ava", limit=1), "chess")
    chess_id = chess.memory.memory_id or ""
    memory.replace_user_memory(
        chess_id, UserMemory("User is allergic to cats", input=said), user_id="ava"
    )
    assert only("cats") == ["User is allergic to cats"]
    memory.delete_user_memory(chess_id, user_id="ava")
    assert only("cats") == []
    assert only("allergic") == ["User is allergic to shellfish"]


@pytest.mark.parametrize(
    "text",
    [
        '"unbalanced quote',
        "ski AND NOT OR NEAR(",
        "ski* ^alps owner:bob {memory}: -x",
        "🎿⛷️ emoji only",
        "",
        "   ",
        "x" * 10_000,
        "word " * 3000,
        "ÁLPS café naïve",
        "DROP TABLE noted_memories; --",
    ],
)
def test_any_text_gives_results_or_nothing_never_an_sql_error(memory: Memory, text: str) -> None:
    seed(memory)
    results = search(memory.db, text)
    assert isinstance(results, list)
    assert memory.count_user_memories("ava") == 4


def test_a_query_of_function_words_alone_finds_the_memories_that_hold_them(
    memory: Memory,
) -> None:
    """Words every store's list of stop words holds ("the", "was it") are searched when
    they are all a query has: the memories holding them are found, best first (the word in
    the shortest memory holding it, more of the words before fewer), never the others nor
    another user's. PostgreSQL's English
    configuration leaves them out of its index, and found nothing for them."""
    memory.add_user_memories(
        [
            UserMemory("The user is a nurse", memory_id="nurse"),
            UserMemory("User was born in Lyon and it was cold", memory_id="born"),
            UserMemory("User drinks green tea", memory_id="tea"),
            UserMemory("User likes jazz", topics=["the music"], memory_id="jazz"),
            UserMemory(
                "User plays chess", input="It was an evening at the club", memory_id="chess"
            ),
            UserMemory("User loves The Who", memory_id="band", agent_id="coach"),
        ],
        user_id="ava",
    )
    memory.add_user_memory(UserMemory("The cat is a tabby", memory_id="cat"), user_id="bob")

    def ids(text: str, user: str = "ava", **filters: object) -> list[str | None]:
        query = MemoryQuery(user_id=user, limit=10, **filters)  # type: ignore[arg-type]
        return [r.memory.memory_id for r in memory.db.keyword_search(query, text)]

    assert ids("the")[0] == "band" and set(ids("the")) == {"band", "nurse", "jazz", "chess"}
    assert ids("is") == ["nurse"]
    assert ids("was it") == ["born", "chess"]
    assert ids("The Who?")[0] == "band" and "tea" not in ids("The Who?")
    assert ids("themselves") == ids("or") == []
    assert ids("the nurse") == ["nurse"]  # beside another word, function words are left out
    assert ids("the", agent_id="coach") == ["band"]
    assert ids("the", user="bob") == ["cat"]
    found = memory.search_user_memories("who", "ava", retrieval_method="keyword")
    assert [m.memory_id for m in found] == ["band"]


def test_accents_and_word_forms_match_on_sqlite(tmp_path: Path) -> None:
    memory = Memory(db=SqliteDb(tmp_path / "m.db"))
    memory.add_user_memory(UserMemory("User enjoys skiing at the café"), user_id="ava")
    assert search(memory.db, "ski cafe") == ["User enjoys skiing at the café"]


# (stored, asked): forms Porter's stemmer joins and a light one did not
WORD_FORMS = [
    ("The user likes to hike", "hiking"),
    ("The user went hiking", "hike"),
    ("The user hiked Mont Blanc", "hike"),
    ("The user is a nurse", "nursing"),
    ("The user liked jazz", "likes"),
    ("The user loves to dance", "dancing"),
    ("The user will study law", "studies"),
    ("The user has lived in three cities", "city"),
    ("The user is baking bread", "bake"),
    ("The user is writing a novel", "write"),
    ("The user moved to Lyon", "move"),
]


@pytest.mark.parametrize(("stored", "asked"), WORD_FORMS)
def test_word_forms_meet_on_every_store(memory: Memory, stored: str, asked: str) -> None:
    memory.add_user_memories(
        [UserMemory(stored), UserMemory("The user drinks green tea")], user_id="ava"
    )
    assert search(memory.db, asked) == [stored]


def test_a_memory_is_found_by_its_words_whatever_the_length_of_its_input(memory: Memory) -> None:
    """Every word of a memory is indexed, however many its text, topics and input hold
    between them (not the 32 longest distinct ones, as a query keeps)."""
    said = (
        "Yesterday afternoon I wandered through several beautiful neighbourhoods downtown, "
        "visiting bookstores, galleries, bakeries, museums and gardens, chatting with "
        "friendly shopkeepers about everything imaginable, and honestly nothing compares "
        "with sitting quietly somewhere comfortable, listening to wonderful melodies, "
        "reading newspapers, watching strangers, remembering childhood summers"
    )
    memory.add_user_memory(UserMemory("The user likes tea", input=said), user_id="ava")
    memory.add_user_memory(UserMemory("The user plays the banjo", topics=["music"]), "ava")
    assert search(memory.db, "tea") == ["The user likes tea"]
    assert search(memory.db, "shopkeepers") == ["The user likes tea"]
    memory.add_user_memory(UserMemory("The user's banjo banjo banjo"), user_id="ava")
    # a word said three times outranks it said once, as SQLite's index counts it
    assert search(memory.db, "banjo") == [
        "The user's banjo banjo banjo",
        "The user plays the banjo",
    ]


def test_accents_and_addresses_are_found_alike_on_every_store(memory: Memory) -> None:
    """Text typed as "u" and a combining diaeresis is the word "Zürich", found as "Zürich"
    and "Zurich"; "cafe" finds "café"; the words of an e-mail address, a file path and a
    URL are each found."""
    facts = [
        "The user lives in Zu\u0308rich",
        "The user's favourite café is Le Procope",
        "The user's e-mail address is ava@example.com",
        "The user keeps notes in /home/ava/notes.md",
        "The user reads https://docs.python.org/3/ every day",
        "The user drinks green tea",
        "The user studied in Việt Nam",
    ]
    memory.add_user_memories([UserMemory(f) for f in facts], user_id="ava")
    for asked, expected in (
        ("Zurich", facts[0]),
        ("Z\u00fcrich", facts[0]),
        ("Zu\u0308rich", facts[0]),
        ("cafe", facts[1]),
        ("CAFÉ", facts[1]),
        ("example", facts[2]),
        ("notes", facts[3]),
        ("python", facts[4]),
        ("viet", facts[6]),
        ("Vie\u0323\u0302t", facts[6]),
    ):
        assert search(memory.db, asked) == [expected], asked


def test_porter_stems_as_sqlites_porter_tokenizer() -> None:
    """Every word of noted's docs, stemmed by noted and by SQLite's own tokenizer."""
    docs = Path(__file__).parents[1] / "docs"
    words = set()
    for page in docs.glob("*.md"):
        words |= {w.casefold() for w in re.findall(r"[A-Za-z]+", page.read_text())}
    assert len(words) > 3_000
    conn = apsw.Connection(":memory:")
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize='porter ascii')")
    conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, instance)")
    conn.executemany("INSERT INTO t (rowid, x) VALUES (?, ?)", enumerate(sorted(words), 1))
    theirs = dict(conn.execute("SELECT doc, term FROM v"))
    ours = {k: porter_stem(w) for k, w in enumerate(sorted(words), 1)}
    assert {k: (ours[k], theirs[k]) for k in ours if ours[k] != theirs[k]} == {}


def test_bulk_import_is_indexed(tmp_path: Path) -> None:
    db = SqliteDb(tmp_path / "m.db")
    memory = Memory(db=db)
    memory.add_user_memories([UserMemory(f"User visited city {i}") for i in range(500)], "ava")
    memory.add_user_memories([UserMemory("User visited Kyoto")], "ava")
    assert search(db, "Kyoto") == ["User visited Kyoto"]
    conn = apsw.Connection(str(tmp_path / "m.db"))
    indexed = conn.execute("SELECT COUNT(*) FROM noted_memories_fts").fetchone()[0]
    assert indexed == 501


def test_memories_written_between_searches_are_all_found_as_they_are_now(memory: Memory) -> None:
    seed(memory)
    assert search(memory.db, "Lisbon")  # the index is current here
    a = memory.add_user_memory(UserMemory("User plays the cello"), user_id="ava")
    b = memory.add_user_memory(UserMemory("User owns a red bicycle"), user_id="ava")
    c = memory.add_user_memory(UserMemory("User collects stamps"), user_id="ava")
    memory.replace_user_memory(b, UserMemory("User owns a blue bicycle"), user_id="ava")
    memory.delete_user_memory(c, user_id="ava")
    d = memory.add_user_memory(UserMemory("User collects coins"), user_id="ava")
    assert search(memory.db, "cello") == ["User plays the cello"]
    assert search(memory.db, "bicycle") == ["User owns a blue bicycle"]
    assert search(memory.db, "red") == [] and search(memory.db, "stamps") == []
    assert search(memory.db, "collects") == ["User collects coins"]
    memory.replace_user_memory(d, UserMemory("User collects shells"), user_id="ava")
    assert search(memory.db, "coins") == [] and search(memory.db, "shells")
    assert a


def test_a_search_sees_each_kind_of_write_at_once(memory: Memory) -> None:
    """Topics, input, a model's plan and a clear of all users, each written after a
    search (which the in-process store answers from a kept index until a write)."""
    seed(memory)
    [city] = memory.db.keyword_search(MemoryQuery(user_id="ava", limit=1), "Lisbon")
    city_id = city.memory.memory_id or ""
    assert search(memory.db, "harbour") == []
    memory.replace_user_memory(
        city_id, UserMemory("User lives in Lisbon", topics=["harbour"]), user_id="ava"
    )
    assert search(memory.db, "harbour") == ["User lives in Lisbon"]
    assert search(memory.db, "trams") == []
    memory.add_user_memories(
        [UserMemory("User lives in Lisbon", memory_id=city_id, input="we talked about trams")],
        user_id="ava",
    )
    assert search(memory.db, "trams") == ["User lives in Lisbon"]
    plan = json.dumps(
        {
            "operations": [
                {"op": "update", "id": 1, "memory": "User rows a kayak", "topics": []},
                {"op": "add", "id": None, "memory": "User owns a red canoe", "topics": []},
            ]
        }
    )
    manager = Memory(db=memory.db, model=ScriptedModel([plan]))
    update = manager.create_user_memories("Some news about my boats", user_id="ava")
    assert len(update.memory_ids) == 2, update.rejected
    assert search(memory.db, "kayak") == ["User rows a kayak"]
    assert search(memory.db, "canoe") == ["User owns a red canoe"]
    assert len(search(memory.db, "User")) == 5  # one replaced, one added
    assert search(memory.db, "ski", user="bob")
    memory.clear()
    assert search(memory.db, "canoe") == [] and search(memory.db, "ski", user="bob") == []


def test_the_in_process_store_keeps_a_users_keyword_index_until_their_memories_change() -> None:
    memory = Memory(db=InMemoryDb(), embedder=None)
    seed(memory)
    kept = memory.db._snapshots  # type: ignore[attr-defined]
    assert search(memory.db, "Lisbon") and search(memory.db, "ski")
    ava = kept.get("ava")
    assert ava is not None and kept.get("bob") is None  # built on a user's first search
    assert search(memory.db, "Alps") and kept.get("ava") is ava
    memory.add_user_memory(UserMemory("User plays chess"), user_id="bob")
    assert search(memory.db, "Alps") and kept.get("ava") is ava  # another user's write
    memory.add_user_memory(UserMemory("User plays chess"), user_id="ava")
    assert search(memory.db, "chess") == ["User plays chess"]
    assert kept.get("ava") is not ava


def test_a_very_large_in_process_user_is_ranked_afresh_with_the_same_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    memory = Memory(db=InMemoryDb(), embedder=None)
    seed(memory)
    memory.add_user_memory(UserMemory("User skis", input="ski ski Lisbon"), user_id="ava")
    texts = ["ski", "Lisbon", "User", "allergic shellfish"]

    def scored(text_only: bool) -> list[list[tuple[str, float]]]:
        query = MemoryQuery(user_id="ava", limit=10)
        return [
            [
                (r.memory.memory, r.score)
                for r in memory.db.keyword_search(q, t, text_only=text_only)
            ]
            for q, t in ((query, t) for t in texts)
        ]

    indexed = [search(memory.db, t) for t in texts]
    indexed_texts = scored(text_only=True)
    assert indexed_texts != scored(text_only=False)
    monkeypatch.setattr(memory_store, "_KEPT_UP_TO", 3)  # ava has 5, bob 1
    memory.db._snapshots.clear()  # type: ignore[attr-defined]
    assert [search(memory.db, t) for t in texts] == indexed
    assert scored(text_only=True) == indexed_texts  # the same scores, to the last bit
    assert memory.db._snapshots.get("ava") is None  # type: ignore[attr-defined]
    assert search(memory.db, "ski", user="bob")
    assert memory.db._snapshots.get("bob") is not None  # type: ignore[attr-defined]


def test_memory_api_and_cli_keyword_search(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    path = tmp_path / "m.db"
    memory = Memory(db=SqliteDb(path))
    seed(memory)
    found = memory.search_user_memories("ski trips", user_id="ava", retrieval_method="keyword")
    assert [m.memory for m in found] == ["User likes to ski in the Alps"]
    with pytest.raises(UserError, match="needs a query"):
        memory.search_user_memories(user_id="ava", retrieval_method="keyword")
    env = {"PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    args = ["memories", "search", "Lisbon trip", "--db", str(path), "--user", "ava", "--json"]
    args += ["--method", "keyword"]
    done = subprocess.run(
        [sys.executable, "-m", "noted.cli", *args],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    [hit] = json.loads(done.stdout)
    assert hit["memory"] == "User lives in Lisbon" and hit["score"] >= 0


# -- BM25 in Python: the keyword index ------------------------------------------------------


def reference_bm25(
    documents: list[str], text: str, k1: float = 1.2, b: float = 0.75
) -> list[float]:
    """BM25 computed document by document, as bm25_scores did before KeywordIndex."""
    words = fts_terms(text)
    wanted = {_stem(w) for w in ([w for w in words if w not in STOPWORDS] or words)}
    # every word of a document, each time it occurs (only the query's are deduplicated)
    bags = [Counter(_stem(w.casefold()) for w in words_of(document)) for document in documents]
    if not wanted or not bags:
        return [0.0] * len(bags)
    average = sum(sum(bag.values()) for bag in bags) / len(bags) or 1.0
    holding = {w: sum(1 for bag in bags if w in bag) for w in wanted}
    idf = {w: math.log(1 + (len(bags) - n + 0.5) / (n + 0.5)) for w, n in holding.items() if n}
    scores = []
    for bag in bags:
        size, score = sum(bag.values()), 0.0
        for word, weight in idf.items():
            count = bag.get(word)
            if count:
                score += weight * count * (k1 + 1) / (count + k1 * (1 - b + b * size / average))
        scores.append(score)
    return scores


# words and forms of them, accents, stopwords and a number: what random documents are made of
WORDS = [
    "tea",
    "teas",
    "green",
    "ski",
    "skis",
    "skiing",
    "skied",
    "Lisbon",
    "café",
    "cafe",
    "Alps",
    "the",
    "a",
    "of",
    "is",
    "42",
]


def test_the_keyword_index_scores_a_subset_as_bm25_of_that_subset_alone() -> None:
    rng = random.Random(5)
    for _ in range(300):
        documents = [
            " ".join(rng.choices(WORDS, k=rng.randint(0, 15))) for _ in range(rng.randint(0, 30))
        ]
        index = KeywordIndex(documents)
        for _ in range(4):
            text = " ".join(rng.choices(WORDS, k=rng.randint(0, 4)))
            share = rng.choice([0.0, 0.3, 0.8, 1.0])
            subset = np.array([rng.random() < share for _ in documents], dtype=bool)
            chosen = [d for d, keep in zip(documents, subset, strict=True) if keep]
            scores = index.scores(text, subset)
            assert scores[subset].tolist() == reference_bm25(chosen, text), (documents, text)
            assert not scores[~subset].any()
            assert index.scores(text).tolist() == reference_bm25(documents, text)
            assert bm25_scores(documents, text) == reference_bm25(documents, text)
        tuned = index.scores(text, subset, k1=2.0, b=0.3)[subset].tolist()
        assert tuned == reference_bm25(chosen, text, k1=2.0, b=0.3)


def test_a_patched_index_scores_as_one_made_afresh() -> None:
    """Documents taken out, moved and added, patch after patch, the small parts merged as
    one past eight: the scores equal those of an index of the documents as they are now,
    to the last bit, until it is made whole."""
    rng = random.Random(7)

    def document() -> str:
        return " ".join(rng.choices(WORDS, k=rng.randint(0, 12)))

    patched_at_least = merged = 0
    for round_ in range(80):
        documents = [document() for _ in range(rng.randint(1, 40 if round_ < 40 else 200))]
        index: KeywordIndex | PatchedIndex | None = KeywordIndex(documents)
        # the later rounds: few taken out, and the documents as they are given, so that
        # the parts beside the largest are merged rather than the index made whole
        taken_out, every = (0.1, False) if round_ < 40 else (0.005, True)
        for _ in range(12 if round_ < 40 else 30):
            assert index is not None
            parts = 1 if isinstance(index, KeywordIndex) else len(index._parts)
            kept = [k for k in range(len(documents)) if rng.random() > taken_out]
            rng.shuffle(kept)  # any new order
            added = [document() for _ in range(rng.choice((0, 1, 3)))]
            moved = np.full(len(documents), -1, dtype=np.intp)
            moved[kept] = np.arange(len(kept))
            placed = np.arange(len(kept), len(kept) + len(added), dtype=np.intp)
            documents = [documents[k] for k in kept] + added
            index = PatchedIndex.patch(
                index, moved, added, placed, len(documents), every=documents if every else None
            )
            if index is None:
                index = KeywordIndex(documents)
            else:
                patched_at_least += 1
                merged += isinstance(index, PatchedIndex) and len(index._parts) < parts
            for _ in range(3):
                text = " ".join(rng.choices(WORDS, k=rng.randint(1, 4)))
                assert index.scores(text).tolist() == reference_bm25(documents, text)
                subset = np.array([rng.random() < 0.6 for _ in documents], dtype=bool)
                chosen = [d for d, keep in zip(documents, subset, strict=True) if keep]
                assert index.scores(text, subset)[subset].tolist() == reference_bm25(chosen, text)
    assert patched_at_least > 100 and merged > 20, merged


def test_an_index_of_a_few_words_is_patched_and_made_one_from_its_postings() -> None:
    """An index of one query's words only (a search of the memories' own text keeps one),
    patched patch after patch: it scores that query as an index of every word of the
    documents as they are now, and is never dropped, made one again from its postings
    where a whole index would be read again."""
    rng = random.Random(11)

    def document() -> str:
        return " ".join(rng.choices(WORDS, k=rng.randint(0, 12)))

    made_one = 0
    for _ in range(30):
        text = " ".join(rng.choices(WORDS, k=rng.randint(1, 3)))
        words = frozenset(query_stems(text))
        documents = [document() for _ in range(rng.randint(1, 40))]
        index: KeywordIndex | PatchedIndex | None = KeywordIndex(documents, words=words)
        for _ in range(14):
            kept = [k for k in range(len(documents)) if rng.random() > 0.15]
            rng.shuffle(kept)
            added = [document() for _ in range(rng.choice((0, 1, 3)))]
            moved = np.full(len(documents), -1, dtype=np.intp)
            moved[kept] = np.arange(len(kept))
            placed = np.arange(len(kept), len(kept) + len(added), dtype=np.intp)
            documents = [documents[k] for k in kept] + added
            assert index is not None
            index = PatchedIndex.patch(index, moved, added, placed, len(documents), words)
            assert index is not None
            made_one += isinstance(index, KeywordIndex)
            assert index.scores(text).tolist() == reference_bm25(documents, text)
            subset = np.array([rng.random() < 0.6 for _ in documents], dtype=bool)
            chosen = [d for d, keep in zip(documents, subset, strict=True) if keep]
            assert index.scores(text, subset)[subset].tolist() == reference_bm25(chosen, text)
    assert made_one > 10


def test_an_index_is_charged_about_100_bytes_and_its_length_for_each_word() -> None:
    """What a cache charges for an index (counted when the index is made, as caches ask on
    every read): its arrays, and each of its words; the same for an index made from
    another's postings, and a patched index is charged for its parts."""
    documents = ["tea with milk", "green tea", "milk and jam", ""]

    def arrays(index: KeywordIndex) -> int:
        return sum(a.nbytes for a in (index._start, index._positions, index._counts))

    def charged(index: KeywordIndex) -> int:
        return index.nbytes - arrays(index) - index._sizes.nbytes

    whole = KeywordIndex(documents)
    stems = list(whole._words)
    assert len(stems) >= 4 and charged(whole) == sum(100 + len(w) for w in stems)
    few = KeywordIndex.of_postings(whole, ["tea", "jam"])
    assert sorted(few._words) == ["jam", "tea"] and charged(few) == 200 + len("jamtea")
    moved = np.arange(len(documents), dtype=np.intp)
    patched = PatchedIndex.patch(whole, moved, ["black tea"], np.array([4]), 5)
    assert isinstance(patched, PatchedIndex)
    part = patched._parts[1][0]
    assert charged(part) == sum(100 + len(w) for w in part._words)
    assert patched.nbytes == patched._sizes.nbytes + sum(
        index.nbytes + where.nbytes for index, where in patched._parts
    )


def test_a_snapshot_is_charged_for_its_keyword_index_once_built() -> None:
    memories = [UserMemory(f"likes tea {i}", memory_id=f"m{i:02d}") for i in range(50)]
    query = MemoryQuery("ava", limit=3)
    snapshot = UserSnapshot(7, memories)
    cache = SnapshotCache(10**6)
    cache.put("ava", snapshot)
    unindexed = cache.nbytes
    assert unindexed == snapshot.nbytes > 0
    assert [r.memory.memory_id for r in snapshot.keyword(query, "tea 12")] == ["m12", "m00", "m01"]
    assert snapshot.nbytes > unindexed == cache.nbytes  # built after it was put
    assert cache.get("ava", 8) is None
    assert cache.get("ava", 7) is snapshot and cache.nbytes == snapshot.nbytes
    # a cache with room for the memories but not their index too lets the user go
    fresh = UserSnapshot(7, memories)
    small = SnapshotCache(unindexed)
    small.put("ava", fresh)
    assert fresh.keyword(query, "tea 12")[0].memory.memory_id == "m12"
    assert small.get("ava") is fresh and small.get("ava") is None and small.nbytes == 0
    # vectors come as a new snapshot, sharing the index
    vectors = UserVectors(7, np.array([3, 1]), np.eye(2, dtype=np.float32))
    twin = snapshot.with_vectors(("model", 2), vectors)
    assert snapshot.vectors is None and twin.nbytes == snapshot.nbytes + vectors.nbytes
    target = np.array([0.6, 0.8], dtype=np.float32)
    assert [r.memory.memory_id for r in twin.semantic(query, target, "model")] == ["m01", "m03"]
    assert twin.semantic(query, target, "other") == snapshot.semantic(query, target, "model") == []


def test_a_page_is_the_head_of_the_whole_ranking_ties_included(memory: Memory) -> None:
    texts = ["User drinks tea"] * 12 + ["User drinks tea and coffee"] * 5 + ["User likes tea"] * 3
    memory.add_user_memories([UserMemory(t) for t in texts], user_id="ava")

    def page(limit: int | None) -> list[str | None]:
        found = memory.search_user_memories("tea", "ava", limit, retrieval_method="keyword")
        return [m.memory_id for m in found]

    whole = page(None)
    assert len(whole) == 20
    for limit in (1, 2, 5, 11, 12, 13, 19, 20):
        assert page(limit) == whole[:limit], limit
