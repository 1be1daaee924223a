"""Keyword search (BM25) on both stores: ranking, scoping, filters, the index kept in step
with every write, and hostile query text."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from noted import Memory, MemoryStore, SqliteDb, UserError, UserMemory
from noted.db import MemoryQuery


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


def test_accents_and_word_forms_match_on_sqlite(tmp_path: Path) -> None:
    memory = Memory(db=SqliteDb(tmp_path / "m.db"))
    memory.add_user_memory(UserMemory("User enjoys skiing at the café"), user_id="ava")
    assert search(memory.db, "ski cafe") == ["User enjoys skiing at the café"]


def test_bulk_import_is_indexed(tmp_path: Path) -> None:
    db = SqliteDb(tmp_path / "m.db")
    memory = Memory(db=db)
    memory.add_user_memories([UserMemory(f"User visited city {i}") for i in range(500)], "ava")
    memory.add_user_memories([UserMemory("User visited Kyoto")], "ava")
    assert search(db, "Kyoto") == ["User visited Kyoto"]
    conn = sqlite3.connect(tmp_path / "m.db")
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
