"""Reads run side by side: a selection reads the pinned facts and the newest memories
beside the message's search on the stores that wait on a server or rank in Python, and
hybrid search on those stores searches the words beside the vectors. The answers must be
those of the reads one after the other; a failure must leave nothing of the search
running; a snapshot's keyword index is built once however many searches need it at once."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from noted import InMemoryDb, Memory, SqliteDb, UserMemory
from noted.db import _client_search as client_search
from noted.db.base import MemoryQuery, MemoryStore, ScoredMemory
from noted.errors import StoreError
from noted.memory import selection
from noted.memory.index import MemoryIndex
from noted.memory.selection import select_memories
from test_redis_snapshot_updates import read_once
from test_sqlite_vector_updates import HashEmbedder

FACTS = [
    "Ava is allergic to shellfish",
    "User's name is Ava Lindqvist",
    "Ava goes skiing in Norway every winter",
    "Ava works as a nurse in Oslo",
    "Ava has a cat called Miso",
    "Ava is learning Portuguese",
    "Ava drinks green tea in the morning",
    "Ava ran a marathon in Berlin",
]
QUESTION = "Where does Ava go skiing in winter?"


class ThreadNoting(InMemoryDb):
    """The in-process store, noting on which thread each search ran (and for which
    text); the message's search (``QUESTION``) fails when told to, after a short wait."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: dict[str, str] = {}
        self.fail = False
        self.finished: list[str] = []

    def keyword_search(
        self, query: MemoryQuery, text: str, *, text_only: bool = False
    ) -> list[ScoredMemory]:
        self.threads[text] = threading.current_thread().name
        if self.fail and text == QUESTION:
            raise StoreError("the message's search failed")
        if self.fail:
            time.sleep(0.3)  # the pinned facts' search: still running when the other fails
        found = super().keyword_search(query, text, text_only=text_only)
        self.finished.append(text)
        return found

    def semantic_search(self, *args: Any, **kwargs: Any) -> list[ScoredMemory]:
        self.threads["semantic"] = threading.current_thread().name
        if self.fail:
            raise StoreError("the vectors' search failed")
        return super().semantic_search(*args, **kwargs)


@pytest.fixture
def noting() -> ThreadNoting:
    store = ThreadNoting()
    Memory(db=store, embedder=None).add_user_memories([UserMemory(f) for f in FACTS], "ava")
    return store


def one_after_the_other(store: MemoryStore, query: MemoryQuery, text: str) -> list[str]:
    """What select_memories answers when its reads run one after the other."""
    found = selection._found(store, query, text, 5, None, None, None)
    always, newest = selection._extras(store, query, None, selection.RECENT, True)
    return [m.memory for m in selection.distinct([*always, *found, *newest], 5)]


def test_a_selection_reads_the_pinned_facts_beside_its_search(noting: ThreadNoting) -> None:
    query = MemoryQuery(user_id="ava", limit=20)
    chosen = select_memories(noting, query, QUESTION, 5)
    assert noting.threads[QUESTION] == threading.current_thread().name
    for pinned in (selection._NAME_QUERY, selection._CONSTRAINT_QUERY):
        assert noting.threads[pinned].startswith("noted-keywords")
    assert [m.memory for m in chosen] == one_after_the_other(noting, query, QUESTION)
    assert [m.memory for m in chosen][:3] == [FACTS[1], FACTS[0], FACTS[2]]  # pinned first


def note_keyword_threads(db: SqliteDb, seen: list[str]) -> None:
    """Have ``db`` note in ``seen`` the thread each keyword search runs on."""
    real = db.keyword_search

    def noted_thread(
        query: MemoryQuery, text: str, *, text_only: bool = False
    ) -> list[ScoredMemory]:
        seen.append(threading.current_thread().name)
        return real(query, text, text_only=text_only)

    db.keyword_search = noted_thread  # type: ignore[method-assign]


def test_sqlite_reads_the_pinned_facts_on_the_callers_thread(tmp_path: Path) -> None:
    """SQLite answers the pinned facts' searches from kept results: no thread for them."""
    seen: list[str] = []
    with SqliteDb(tmp_path / "m.db") as db:
        Memory(db=db, embedder=None).add_user_memories([UserMemory(f) for f in FACTS], "ava")
        note_keyword_threads(db, seen)
        chosen = select_memories(db, MemoryQuery(user_id="ava", limit=20), QUESTION, 5)
    assert len(seen) == 3 and set(seen) == {threading.current_thread().name}
    assert "Ava goes skiing in Norway every winter" in [m.memory for m in chosen]


def test_sqlite_reads_the_pinned_facts_while_the_message_embeds(tmp_path: Path) -> None:
    """After the user's memories change, SQLite searches for the pinned facts again: with
    a message to embed, they are read on a search thread while it embeds; asked again
    (the embedding kept), on the caller's thread. The answers are the same."""
    seen: list[str] = []
    with SqliteDb(tmp_path / "m.db") as db:
        memory = Memory(db=db, embedder=HashEmbedder())
        memory.add_user_memories([UserMemory(f) for f in FACTS], "ava")
        assert memory.index is not None
        note_keyword_threads(db, seen)
        query = MemoryQuery(user_id="ava", limit=20)
        chosen = select_memories(db, query, QUESTION, 5, index=memory.index)
        assert len(seen) == 2 and all(name.startswith("noted-keywords") for name in seen)
        seen.clear()
        assert select_memories(db, query, QUESTION, 5, index=memory.index) == chosen
        assert seen == [threading.current_thread().name] * 2
    assert "Ava goes skiing in Norway every winter" in [m.memory for m in chosen]
    assert chosen[0].memory == "User's name is Ava Lindqvist"  # pinned first


def test_a_failed_search_leaves_no_read_of_its_selection_running(noting: ThreadNoting) -> None:
    noting.fail = True
    with pytest.raises(StoreError, match="message's search"):
        select_memories(noting, MemoryQuery(user_id="ava", limit=20), QUESTION, 5)
    # the pinned facts' reads had finished when the error reached the caller
    assert selection._NAME_QUERY in noting.finished
    assert selection._CONSTRAINT_QUERY in noting.finished


@pytest.fixture
def embedded() -> Iterator[tuple[ThreadNoting, MemoryIndex]]:
    store = ThreadNoting()
    memory = Memory(db=store, embedder=HashEmbedder())
    memory.add_user_memories([UserMemory(f) for f in FACTS], "ava")
    assert memory.index is not None
    return store, memory.index


def test_hybrid_search_reads_the_words_beside_the_vectors(
    embedded: tuple[ThreadNoting, MemoryIndex], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, index = embedded
    query = MemoryQuery(user_id="ava", limit=4)
    found = index.hybrid(query, QUESTION)
    assert store.threads["semantic"] == threading.current_thread().name
    assert store.threads[QUESTION].startswith("noted-keywords")
    from noted.memory import index as index_module

    monkeypatch.setattr(index_module, "_OVERLAP", False)
    assert index.hybrid(query, QUESTION) == found  # the same, one after the other
    assert store.threads[QUESTION] == threading.current_thread().name


class SlowEmbedder(HashEmbedder):
    """Notes when each embedding ended, after a short wait."""

    def __init__(self) -> None:
        super().__init__()
        self.ended: list[float] = []

    def _embed_batch(self, texts: list[str], kind: Any) -> Any:
        time.sleep(0.2)
        rows = super()._embed_batch(texts, kind)
        self.ended.append(time.monotonic())
        return rows


class ServerWords(ThreadNoting):
    """A store whose keyword search runs on its server (a full-text index of its own),
    noting when each search began."""

    capabilities = dataclasses.replace(ThreadNoting.capabilities, native_fulltext=True)

    def __init__(self) -> None:
        super().__init__()
        self.began: dict[str, float] = {}

    def keyword_search(
        self, query: MemoryQuery, text: str, *, text_only: bool = False
    ) -> list[ScoredMemory]:
        self.began[text] = time.monotonic()
        return super().keyword_search(query, text, text_only=text_only)


@pytest.mark.parametrize("on_server", [True, False])
def test_a_server_searches_the_words_while_the_query_embeds(on_server: bool) -> None:
    """Where the store's server ranks the words, they are searched while the model embeds
    the question; where this process ranks them, after (the model runs alone)."""
    store = ServerWords()
    if not on_server:
        store.capabilities = ThreadNoting.capabilities
    embedder = SlowEmbedder()
    memory = Memory(db=store, embedder=embedder)
    memory.add_user_memories([UserMemory(f) for f in FACTS], "ava")
    assert memory.index is not None
    query = MemoryQuery(user_id="ava", limit=4)
    found = memory.index.hybrid(query, QUESTION)
    assert (store.began[QUESTION] < embedder.ended[-1]) is on_server
    assert store.threads[QUESTION].startswith("noted-keywords")
    assert memory.index.hybrid(query, QUESTION) == found  # asked again: embedded already
    assert "Ava goes skiing in Norway every winter" in [r.memory.memory for r in found]


def test_a_failed_vector_search_waits_for_the_words(
    embedded: tuple[ThreadNoting, MemoryIndex],
) -> None:
    store, index = embedded
    store.fail = True
    words = "skiing Norway"  # searched beside, slowly (see ThreadNoting)
    with pytest.raises(StoreError, match="vectors' search"):
        index.hybrid(MemoryQuery(user_id="ava", limit=4), QUESTION, words=words)
    assert words in store.finished


def test_a_snapshot_builds_its_keyword_index_once_for_searches_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = InMemoryDb()
    Memory(db=store, embedder=None).add_user_memories([UserMemory(f) for f in FACTS], "ava")
    query = MemoryQuery(user_id="ava", limit=2)
    found = read_once(
        monkeypatch, client_search, "KeywordIndex", lambda: store.keyword_search(query, "skiing")
    )
    assert found[0].memory.memory == "Ava goes skiing in Norway every winter"


def test_a_read_runs_on_the_callers_thread_when_every_search_thread_is_busy() -> None:
    """Many searches at a time: a read waits for no thread, it runs at once, as the reads
    one after the other did; once a thread is free again, reads go beside once more."""
    from noted.memory import index as index_module

    release = threading.Event()
    started = threading.Barrier(index_module._THREADS.size + 1)

    def busy() -> None:
        started.wait()
        release.wait(10)

    holding = [index_module.beside(busy) for _ in range(index_module._THREADS.size)]
    started.wait()  # every search thread runs one
    try:
        here = index_module.beside(lambda: threading.current_thread().name)
        assert here.done() and here.result() == threading.current_thread().name
        with pytest.raises(StoreError, match="refused"):
            index_module.beside(_refuse).result()
    finally:
        release.set()
    for held in holding:
        held.result()
    assert (
        index_module.beside(lambda: threading.current_thread().name)
        .result()
        .startswith("noted-keywords")
    )


def _refuse() -> None:
    raise StoreError("refused")


def test_a_snapshot_searched_by_text_while_it_is_patched() -> None:
    """Searches of the memories' own text add indexes to a snapshot while another thread
    patches it (a write's new snapshot) and sizes it: neither sees the other's change
    halfway."""
    memories = [
        UserMemory(f"Ava likes tea number {i}", memory_id=f"m{i:04d}", user_id="ava")
        for i in range(2_000)
    ]
    snapshot = client_search.UserSnapshot(1, memories)
    query = MemoryQuery(user_id="ava", limit=3)
    failed: list[BaseException] = []
    stop = time.monotonic() + 1.5

    def search() -> None:
        i = 0
        while time.monotonic() < stop and not failed:
            try:
                snapshot.keyword(query, f"tea number {i % 40}", text_only=True)
            except BaseException as exc:  # reported below
                failed.append(exc)
            i += 1

    searching = threading.Thread(target=search)
    searching.start()
    try:
        while time.monotonic() < stop and not failed:
            new = UserMemory("Ava likes tea at noon", memory_id="n", user_id="ava")
            snapshot.patched(2, {"m0001"}, [new], [None], lambda m: m.memory_id or "")
            assert snapshot.nbytes > 0
    finally:
        searching.join()
    assert not failed, failed
