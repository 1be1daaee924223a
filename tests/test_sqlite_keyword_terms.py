"""SqliteDb's keyword index holds each word under its owner's tag (noted.db.sqlite.terms):
a user's keyword ranking and scores are BM25 over the user's own memories, whatever other
users the file holds; writes keep the index and its counts right; a file indexed by an
older noted is rebuilt and searches as a new one does."""

from __future__ import annotations

import json
import math
import random
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import apsw
import pytest

from noted import SqliteDb, UserMemory
from noted.db import MemoryQuery
from noted.db._rows import COLUMNS, memory_to_row
from noted.db.sqlite.migrations import (
    FTS_TOKENIZER,
    MIGRATIONS,
    owner_token,
    record_version,
)
from noted.db.sqlite.terms import tag, tagged
from noted.retrieval.ranking import WORD, content_terms, words_of

QUERIES = [
    "coffee",
    "Where does she drink coffee before work?",
    "shellfish allergy",
    "tram to the office on Mondays",
    "sister pasta weekends",
    "oat milk latte at the harbour",
    "Lisbon",
    "coffees and coffee on a Monday or Mondays",  # words that stem alike count once
]
PLACES = ["the station", "her office", "the harbour", "a bakery", "the library", "home"]
DAYS = ["Mondays", "Tuesdays", "Wednesdays", "Thursdays", "Fridays", "weekends"]
KINDS = ["black coffee", "an iced coffee", "oat milk latte", "green tea", "sweet coffee"]
START = datetime(2026, 1, 2, tzinfo=UTC)

Found = list[tuple[str | None, float]]


def memory(text: str, user: str, n: int, **fields: object) -> UserMemory:
    when = START + timedelta(seconds=n)
    return UserMemory(
        text,
        user_id=user,
        memory_id=f"{user}-{n:04d}",
        created_at=when,
        updated_at=when,
        **fields,  # type: ignore[arg-type]
    )


def avas() -> list[UserMemory]:
    """Ava's memories: her coffee habits, an allergy, her family; topics and input on some."""
    texts = [f"Ava drinks {k} at {p} on {d}" for k in KINDS for p in PLACES[:3] for d in DAYS[:2]]
    texts += [f"On {d} Ava takes the tram to {p} before work" for d in DAYS for p in PLACES[:2]]
    texts += [
        "Ava is allergic to shellfish",
        "Ava had a shellfish reaction at a wedding in Lisbon",
        "Ava's sister cooks pasta with her on weekends",
        "Ava moved to Lisbon in 2021 for a job at a bakery",
    ]
    return [
        memory(
            text,
            "ava",
            n,
            topics=["food"] if "coffee" in text else [],
            input="I love coffee, honestly" if n % 7 == 0 else None,
        )
        for n, text in enumerate(texts)
    ]


def others(count: int, seed: int = 3) -> list[UserMemory]:
    """Other users' memories, full of Ava's words (coffee above all), in other amounts."""
    rng = random.Random(seed)
    users = ["bob", "ava smith", "Ava", "carol"]
    return [
        memory(
            f"{rng.choice(['Bob', 'Carol'])} drinks coffee at {rng.choice(PLACES)} "
            f"on {rng.choice(DAYS)}" + (" with shellfish" if n % 5 == 0 else ""),
            users[n % len(users)],
            1000 + n,
            topics=["food"],
            input="coffee coffee coffee" if n % 3 == 0 else None,
        )
        for n in range(count)
    ]


def found(db: SqliteDb, text: str, user: str = "ava", limit: int = 10) -> Found:
    query = MemoryQuery(user_id=user, limit=limit)
    return [(r.memory.memory_id, r.score) for r in db.keyword_search(query, text)]


def every_search(db: SqliteDb, user: str = "ava") -> dict[str, Found]:
    return {text: found(db, text, user, limit=30) for text in QUERIES}


@pytest.fixture
def db(tmp_path: Path) -> SqliteDb:
    return SqliteDb(tmp_path / "memories.db")


def test_other_users_memories_change_no_score(db: SqliteDb, tmp_path: Path) -> None:
    db.upsert_memories(avas())
    alone = every_search(db)
    assert all(alone.values()) and len(alone["coffee"]) > 20
    db.upsert_memories(others(400))
    beside = every_search(db)
    assert beside == alone  # the same memories, in the same order, with the same scores
    db.upsert_memories(others(300, seed=9)[100:])  # and after more of them, indexed later
    assert every_search(db) == alone
    other = SqliteDb(tmp_path / "other.db")  # others first, then Ava
    other.upsert_memories(others(250, seed=5))
    other.upsert_memories(avas())
    assert every_search(other) == alone
    other.close()


def reference(memories: list[UserMemory], text: str) -> dict[str | None, float]:
    """BM25 over ``memories`` alone, computed here: a word's occurrences per column from an
    FTS5 table of these memories only (tagged as the store tags them), the rest in Python."""
    conn = apsw.Connection(":memory:")
    conn.execute(
        f"CREATE VIRTUAL TABLE f USING fts5(memory, topics, input, tokenize='{FTS_TOKENIZER}')"
    )
    conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(f, instance)")
    user_tag = tag(1)
    rows = []
    for n, m in enumerate(memories, 1):
        topics = json.dumps(m.topics)
        rows.append((n, *(tagged(user_tag, t)[0] for t in (m.memory, topics, m.input or ""))))
    conn.executemany("INSERT INTO f (rowid, memory, topics, input) VALUES (?, ?, ?, ?)", rows)
    length: Counter[int] = Counter()
    tf: dict[str, Counter[int]] = defaultdict(Counter)
    for term, doc, col in conn.execute("SELECT term, doc, col FROM v"):
        length[doc] += 1
        tf[term][doc] += 1.0 if col == "memory" else 0.5
    # each query word's term, as the tokenizer makes it: read back from a row of it alone
    conn.execute("DELETE FROM f")
    words = content_terms(text)
    conn.executemany(
        "INSERT INTO f (rowid, memory) VALUES (?, ?)",
        [(k, user_tag + w) for k, w in enumerate(words)],
    )
    terms = dict.fromkeys(term for (term,) in conn.execute("SELECT term FROM v ORDER BY doc"))
    conn.close()
    n = len(memories)
    mean = sum(length.values()) / n
    scores: Counter[str | None] = Counter()
    for term in terms:
        df = len(tf[term])
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        for doc, f in tf[term].items():
            norm = 1.2 * (1 - 0.75 + 0.75 * length[doc] / mean)
            scores[memories[doc - 1].memory_id] += idf * f * 2.2 / (f + norm)
    return dict(scores)


def test_scores_are_bm25_over_the_users_own_memories(db: SqliteDb) -> None:
    mine = avas()
    db.upsert_memories([*others(200), *mine])
    for text in QUERIES:
        got = found(db, text, limit=100)
        want = reference(mine, text)
        assert dict(got) == pytest.approx(want, rel=1e-9), text
        assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)


def assert_counts(path: Path) -> None:
    """The index's counts per user are those of the memory table (each memory's words
    counted afresh here), and the index holds every memory once."""
    conn = apsw.Connection(str(path))
    want: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for user_id, *cells in conn.execute(
        "SELECT user_id, memory, topics, COALESCE(input, '') FROM noted_memories"
    ):
        want[user_id][0] += 1
        want[user_id][1] += sum(len(words_of(cell)) for cell in cells)
    got = {
        u: [n, words]
        for u, n, words in conn.execute(
            "SELECT user_id, memories, words FROM noted_memories_fts_users WHERE memories > 0"
        )
    }
    indexed = conn.execute("SELECT count(*) FROM noted_memories_fts").fetchone()[0]
    total = conn.execute("SELECT count(*) FROM noted_memories").fetchone()[0]
    conn.close()
    assert got == dict(want)
    assert indexed == total


def copy_of(db: SqliteDb, path: Path) -> SqliteDb:
    """A new file holding the memories ``db`` holds now, written at once."""
    fresh = SqliteDb(path)
    fresh.upsert_memories(
        db.list_memories(MemoryQuery(user_id=None, sort_by="created_at", sort_order="asc"))
    )
    return fresh


def ids_of(results: Found) -> set[str | None]:
    return {i for i, _ in results}


def test_writes_keep_the_index_and_its_counts_right(db: SqliteDb, tmp_path: Path) -> None:
    mine = avas()
    db.upsert_memories([*mine, *others(120)])
    assert every_search(db)["coffee"]  # the index caught up
    assert_counts(db.db_file)
    allergy = mine[42]
    assert allergy.memory == "Ava is allergic to shellfish"
    # a changed memory: its old words find it no more, its new ones do
    changed = db.update_memory(memory("Ava is allergic to peanuts and almonds", "ava", 42))
    assert changed is not None
    assert allergy.memory_id not in ids_of(found(db, "shellfish"))
    assert ids_of(found(db, "peanuts")) == {allergy.memory_id}
    # changed by an upsert, text and topics, with a longer text
    db.upsert_memories(
        [
            memory(
                "Ava drinks matcha at the station every single morning",
                "ava",
                0,
                topics=["sencha"],
            )
        ]
    )
    assert mine[0].memory_id not in ids_of(found(db, "coffee", limit=100))
    assert ids_of(found(db, "matcha")) == ids_of(found(db, "sencha")) == {mine[0].memory_id}
    # deleted ones are gone
    db.delete_memories([mine[1].memory_id or "", mine[2].memory_id or ""], "ava")
    assert not ids_of(found(db, "coffee", limit=100)) & {mine[1].memory_id, mine[2].memory_id}
    # added, then changed and deleted before the next search (not yet in the index)
    late = [memory(f"Ava bought peanuts at a bakery, bag {n}", "ava", 600 + n) for n in range(3)]
    db.upsert_memories(late)
    db.update_memory(memory("Ava bought almonds at a bakery", "ava", 600))
    db.delete_memories([late[1].memory_id or ""], "ava")
    assert ids_of(found(db, "peanuts")) == {allergy.memory_id, late[2].memory_id}
    assert ids_of(found(db, "almonds")) == {allergy.memory_id, late[0].memory_id}
    # another user cleared, and every user's memories of a kind
    db.clear_memories("bob")
    assert found(db, "coffee", "bob") == []
    assert_counts(db.db_file)
    # scores: those of a file written at once with the memories there are now
    fresh = copy_of(db, tmp_path / "fresh.db")
    for user in ("ava", "carol", "Ava"):
        assert every_search(db, user) == every_search(fresh, user), user
    db.clear_all_memories()
    assert every_search(db) == {text: [] for text in QUERIES}
    assert_counts(db.db_file)
    fresh.close()


def old_file(path: Path, version: int, memories: list[UserMemory], owner: str) -> None:
    """A file as noted wrote it at schema ``version`` (5 or 6): its memories, and its index
    as the store wrote it then, with ``owner`` (SQL of the user_id column) as the owner."""
    conn = apsw.Connection(str(path))
    for step in MIGRATIONS[:version]:
        step(conn, "noted_memories")
    conn.executemany(
        f"INSERT INTO noted_memories ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
        [memory_to_row(m) for m in memories],
    )
    conn.execute(
        "INSERT INTO noted_memories_fts (rowid, owner, memory, topics, input) "
        f"SELECT rowid, {owner}, memory, topics, COALESCE(input, '') FROM noted_memories"
    )
    record_version(conn, "noted_memories", version, 1700000000000000)
    conn.close()


@pytest.mark.parametrize(("version", "owner"), [(6, owner_token("user_id")), (5, "user_id")])
def test_a_file_of_an_older_index_is_rebuilt_and_searches_as_a_new_one(
    tmp_path: Path, version: int, owner: str
) -> None:
    written = [*others(150), *avas()]
    old_file(tmp_path / "old.db", version, written, owner)
    new = SqliteDb(tmp_path / "new.db")
    new.upsert_memories(written)
    want = {user: every_search(new, user) for user in ("ava", "Ava", "ava smith", "bob")}
    new.close()

    db = SqliteDb(tmp_path / "old.db")
    assert db.schema_version() == len(MIGRATIONS) == 10
    db.close()
    assert_counts(tmp_path / "old.db")  # rebuilt by the upgrade, before any search
    reader = SqliteDb(tmp_path / "old.db", read_only=True)
    assert {user: every_search(reader, user) for user in want} == want
    reader.close()
    db = SqliteDb(tmp_path / "old.db")
    assert {user: every_search(db, user) for user in want} == want
    db.upsert_memories([memory("Ava drinks coffee with Bob", "ava", 900)])
    assert "ava-0900" in ids_of(found(db, "coffee Bob"))
    assert_counts(db.db_file)
    db.close()


# -- a word is one token of the index --------------------------------------------------------

SPLITTER = "\u19b0"  # a letter to Python, a mark that the index's tokenizer splits words at


def test_every_word_is_one_token_of_the_index() -> None:
    """Each letter or digit a word may hold keeps a tagged word whole in the index."""
    conn = apsw.Connection(":memory:")
    conn.execute(f"CREATE VIRTUAL TABLE f USING fts5(memory, tokenize='{FTS_TOKENIZER}')")
    letters = [
        c for c in map(chr, range(0x110000)) if not 0xD800 <= ord(c) < 0xE000 and WORD.fullmatch(c)
    ]
    assert len(letters) > 100_000 and SPLITTER not in letters
    with conn:
        conn.executemany("INSERT INTO f (memory) VALUES (?)", [(f"bxq{c}zz",) for c in letters])
    assert list(conn.execute("SELECT memory FROM f WHERE f MATCH 'zz'")) == []
    conn.close()


def users_entries(path: Path, user: str) -> dict[str, int]:
    """The index's entries under ``user``'s tag: each term (its tag kept) and the rows
    that hold it."""
    conn = apsw.Connection(str(path))
    (number,) = conn.execute(
        "SELECT number FROM noted_memories_fts_users WHERE user_id = ?", (user,)
    ).fetchone()
    conn.execute("CREATE VIRTUAL TABLE temp.v USING fts5vocab(main, noted_memories_fts, row)")
    entries = {
        term: docs
        for term, docs in conn.execute("SELECT term, doc FROM temp.v")
        if term.startswith(tag(number))
    }
    conn.close()
    return entries


def intruders(victim_tag: str, count: int) -> list[UserMemory]:
    """Another user's memories whose words, split at SPLITTER, would start with the tag."""
    return [
        memory(f"note {n} x{SPLITTER}{victim_tag}coffee {victim_tag}coffee", "mallory", 2000 + n)
        for n in range(count)
    ]


def test_no_word_reaches_another_users_tag(db: SqliteDb, tmp_path: Path) -> None:
    db.upsert_memories(avas())
    alone = every_search(db)
    entries = users_entries(db.db_file, "ava")
    ava_tag = next(iter(entries))[:2]
    db.upsert_memories(intruders(ava_tag, 40))
    again = SqliteDb(db.db_file)  # nothing kept from the searches before
    assert every_search(again) == alone
    assert users_entries(db.db_file, "ava") == entries
    again.close()
    assert_counts(db.db_file)


def test_a_file_indexed_with_the_split_words_is_mended_by_its_upgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import noted.db.sqlite.terms as terms

    path = tmp_path / "old.db"
    clean = SqliteDb(tmp_path / "clean.db")
    clean.upsert_memories(avas())
    want, entries = every_search(clean), users_entries(clean.db_file, "ava")
    ava_tag = next(iter(entries))[:2]
    clean.upsert_memories(intruders(ava_tag, 40))
    clean.close()
    # the file as the code before the upgrade wrote it: words split as Python splits them
    monkeypatch.setattr(terms, "words_of", re.compile(r"[^\W_]+").findall)
    old = SqliteDb(path)
    old.upsert_memories(avas())
    assert every_search(old) == want  # Ava indexed first: her tag is the same
    old.upsert_memories(intruders(ava_tag, 40))
    old.close()
    old = SqliteDb(path)  # nothing kept from the searches before
    assert every_search(old) != want  # the intruders' words counted as Ava's
    old.close()
    monkeypatch.undo()
    recorded_as(path, 8)

    db = SqliteDb(path)
    assert db.schema_version() == len(MIGRATIONS)
    assert every_search(db) == want
    assert users_entries(path, "ava") == entries
    db.close()
    assert_counts(path)


def test_a_file_indexed_with_decomposed_accents_split_is_mended_by_its_upgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file written before words were composed (NFC) has "Zu" + U+0308 + "rich" as the
    words "zu" and "rich": the upgrade indexes those memories again, and only those."""
    import noted.db.sqlite.terms as terms

    path = tmp_path / "old.db"
    decomposed = [
        UserMemory("The user lives in Zu\u0308rich", memory_id="z", user_id="ava"),
        UserMemory("The user likes cre\u0300me bru\u0302le\u0301e", memory_id="c", user_id="ava",
                   topics=["Sta\u0308dte"], input="I said cre\u0300me"),
        UserMemory("The user drinks tea", memory_id="t", user_id="ava"),
    ]  # fmt: skip
    now = datetime(2026, 1, 2, tzinfo=UTC)
    for m in decomposed:
        m.created_at = m.updated_at = now
    monkeypatch.setattr(terms, "words_of", re.compile(r"[^\W_]+").findall)  # as written before
    old = SqliteDb(path)
    old.upsert_memories(decomposed)
    assert found_ids(old, "Zurich") == [] and found_ids(old, "rich") == ["z"]
    old.close()
    monkeypatch.undo()
    recorded_as(path, 9)

    db = SqliteDb(path)
    assert db.schema_version() == len(MIGRATIONS)
    for asked, expected in (
        ("Zurich", ["z"]),
        ("Z\u00fcrich", ["z"]),
        ("Zu\u0308rich", ["z"]),
        ("rich", []),
        ("creme brulee", ["c"]),
        ("Stadte", ["c"]),
        ("tea", ["t"]),
    ):
        assert found_ids(db, asked) == expected, asked
    db.close()
    assert_counts(path)


def found_ids(db: SqliteDb, text: str) -> list[str]:
    hits = db.keyword_search(MemoryQuery(user_id="ava", limit=10), text)
    return sorted(str(h.memory.memory_id) for h in hits)


def recorded_as(path: Path, version: int) -> None:
    """Record the file's memory table at schema ``version``, as a noted of it wrote it."""
    conn = apsw.Connection(str(path))
    conn.execute("DELETE FROM noted_schema_versions WHERE table_name = 'noted_memories'")
    record_version(conn, "noted_memories", version, 1700000000000000)
    conn.close()
