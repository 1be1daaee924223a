"""What an embedder gives back is checked where it comes back: vectors that are not finite,
of another width than its ``dimensions`` or another number than of texts. And a memory whose
text another writer changes while a search embeds it is still found by that search."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from noted import Memory, SqliteDb, UserMemory
from noted.errors import ModelHTTPError, ModelOutputError
from noted.memory import index
from noted.retrieval.embedders import BaseEmbedder, Embedder, Kind, NonFiniteVectorsError

DIMENSIONS = 16
BAD = "\u2620"  # a text holding it gets a vector the model botched


def words(text: str) -> np.ndarray:
    """A bag of the text's words, each hashed to one of the dimensions."""
    row = np.zeros(DIMENSIONS, dtype=np.float32)
    for word in text.lower().split():
        digest = hashlib.blake2b(word.strip("?.,!").encode(), digest_size=4).digest()
        row[int.from_bytes(digest, "little") % DIMENSIONS] += 1.0
    return row


class Words(BaseEmbedder):
    """Bags of words; a text holding BAD gets ``bad`` (NaN or infinity) in its vector."""

    def __init__(self, bad: float = np.nan) -> None:
        super().__init__("words/16", DIMENSIONS)
        self.bad = bad
        self.texts: list[str] = []  # every text it was given, in order

    def _embed_batch(self, texts: list[str], kind: Kind) -> Any:
        self.texts += texts
        rows = np.array([words(text) for text in texts])
        rows[[BAD in text for text in texts], 0] = self.bad
        return rows


class ProtocolWords:
    """The same through the Embedder protocol only (no BaseEmbedder, so no checks of its
    own), its vectors cut to ``width`` (``query_width`` for queries) and ``dropped`` of
    them left out."""

    model_name = "protocol-words/16"
    dimensions = DIMENSIONS

    def __init__(
        self,
        bad: float = np.nan,
        *,
        width: int = DIMENSIONS,
        query_width: int | None = None,
        dropped: int = 0,
    ) -> None:
        self.bad = bad
        self.width = width
        self.query_width = width if query_width is None else query_width
        self.dropped = dropped
        self.texts: list[str] = []

    def embed(self, texts: Sequence[str], *, kind: Kind = "document") -> Any:
        self.texts += texts
        rows = np.array([words(text) for text in texts]).reshape(len(texts), DIMENSIONS)
        lengths = np.linalg.norm(rows, axis=1, keepdims=True)
        rows = rows / np.where(lengths == 0, 1.0, lengths)
        rows[[BAD in text for text in texts], 0] = self.bad
        width = self.query_width if kind == "query" else self.width
        return rows[self.dropped :, :width]

    async def aembed(self, texts: Sequence[str], *, kind: Kind = "document") -> Any:
        return self.embed(texts, kind=kind)


EMBEDDERS: dict[str, Callable[[float], Words | ProtocolWords]] = {
    "base": Words,
    "protocol": ProtocolWords,
}


def memory_with(path: Path, embedder: Embedder, embed_on_write: bool = True) -> Memory:
    return Memory(db=SqliteDb(db_file=path), embedder=embedder, embed_on_write=embed_on_write)


# -- vectors that are not finite -------------------------------------------------------------


@pytest.mark.parametrize("on_write", [True, False], ids=["on-write", "on-search"])
@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("kind", list(EMBEDDERS))
def test_a_memory_whose_vector_is_not_finite_is_stored_once_and_found_by_its_words(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str, bad: float, on_write: bool
) -> None:
    embedder = EMBEDDERS[kind](bad)
    memory = memory_with(tmp_path / "m.db", embedder, on_write)
    memory.add_user_memory(UserMemory("Ava likes green apples"), user_id="ava")
    with caplog.at_level(logging.WARNING, logger="noted.memory"):
        botched = memory.add_user_memory(UserMemory(f"Ava's flag shows {BAD}"), user_id="ava")
        assert memory.count_user_memories(user_id="ava") == 2
        # the other memories are searched by meaning, the botched one by its words
        found = memory.search_user_memories("green apples", "ava", retrieval_method="semantic")
        assert [m.memory for m in found] == ["Ava likes green apples"]
        found = memory.search_user_memories("flag", "ava", retrieval_method="hybrid")
        assert botched in [m.memory_id for m in found]
    assert len([r for r in caplog.records if botched in r.getMessage()]) == 1
    asked = len(embedder.texts)
    memory.search_user_memories("apples", "ava", retrieval_method="semantic")
    assert embedder.texts[asked:] == ["apples"]  # the botched memory is not asked for again
    # a new text is embedded again
    memory.replace_user_memory(botched, UserMemory("Ava's flag is purple"), user_id="ava")
    found = memory.search_user_memories("purple flag", "ava", retrieval_method="semantic")
    assert found[0].memory_id == botched
    assert memory.db.count_memories_to_embed("ava", embedder.model_name) == 0


def test_a_reindex_tries_a_botched_memory_again(tmp_path: Path) -> None:
    embedder = Words()
    memory = memory_with(tmp_path / "m.db", embedder, embed_on_write=False)
    memory.add_user_memory(UserMemory("Ava likes green apples"), user_id="ava")
    botched = memory.add_user_memory(UserMemory(f"Ava's flag shows {BAD}"), user_id="ava")
    assert len(memory.search_user_memories("flag", "ava", retrieval_method="semantic")) == 1
    embedder.bad = 1.0  # the model is mended: a search does not ask it again, a reindex does
    assert len(memory.search_user_memories("flag", "ava", retrieval_method="semantic")) == 1
    assert memory.reindex_user_memories(user_id="ava") == 1
    found = memory.search_user_memories("flag", "ava", retrieval_method="semantic")
    assert found[0].memory_id == botched


def test_a_reindex_reads_past_the_memories_it_cannot_embed(tmp_path: Path) -> None:
    embedder = Words()
    memory = memory_with(tmp_path / "m.db", embedder, embed_on_write=False)
    texts = [f"flag {i} {BAD}" for i in range(3)] + ["Ava likes apples"]  # the oldest first
    start = datetime(2025, 1, 1, tzinfo=UTC)
    memory.import_user_memories(
        UserMemory(text, user_id="ava", created_at=start + timedelta(minutes=i))
        for i, text in enumerate(texts)
    )
    assert memory.index is not None
    assert memory.index.reindex("ava", batch_size=2) == 1
    assert memory.db.count_memories_to_embed("ava", embedder.model_name) == 3


@pytest.mark.parametrize("method", ["semantic", "hybrid"])
@pytest.mark.parametrize("kind", list(EMBEDDERS))
def test_a_query_whose_vector_is_not_finite_is_a_model_output_error(
    tmp_path: Path, kind: str, method: str
) -> None:
    embedder = EMBEDDERS[kind](np.nan)
    memory = memory_with(tmp_path / "m.db", embedder)
    memory.add_user_memory(UserMemory("Ava likes green apples"), user_id="ava")
    with pytest.raises(ModelOutputError, match="not finite"):
        memory.search_user_memories(f"apples {BAD}", "ava", retrieval_method=method)
    assert memory.search_user_memories("apples", "ava", retrieval_method=method) != []


def test_a_base_embedder_refuses_vectors_that_are_not_finite() -> None:
    embedder = Words(np.inf)
    with pytest.raises(NonFiniteVectorsError, match=r"1 of 3 texts") as raised:
        embedder.embed(["green apples", f"flag {BAD}", "red truck"])
    assert isinstance(raised.value, ModelOutputError)
    vectors = raised.value.vectors
    assert vectors.shape == (3, DIMENSIONS)
    assert not np.isfinite(vectors[1]).all()
    np.testing.assert_allclose(np.linalg.norm(vectors[[0, 2]], axis=1), 1.0, atol=1e-6)


# -- vectors that do not fit -----------------------------------------------------------------


@pytest.mark.parametrize(
    "settings", [{"width": 5}, {"width": 5, "dropped": 1}, {"dropped": 1}], ids=str
)
def test_protocol_vectors_of_another_width_or_number_are_refused_by_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, settings: dict[str, int]
) -> None:
    embedder = ProtocolWords(**settings)
    memory = memory_with(tmp_path / "m.db", embedder)
    with caplog.at_level(logging.WARNING, logger="noted.memory"):
        memory.add_user_memories(
            [UserMemory("Ava likes green apples"), UserMemory("Bob drives a red truck")], "ava"
        )
    assert memory.count_user_memories(user_id="ava") == 2  # stored, without vectors
    assert memory.db.count_memories_to_embed("ava", embedder.model_name) == 2
    assert "protocol-words/16" in caplog.text
    for method in ("semantic", "hybrid"):
        with pytest.raises(ModelOutputError, match=r"'protocol-words/16' \(ProtocolWords\)"):
            memory.search_user_memories("apples", "ava", retrieval_method=method)


def test_a_protocol_query_vector_of_another_width_is_refused(tmp_path: Path) -> None:
    embedder = ProtocolWords(query_width=5)
    memory = memory_with(tmp_path / "m.db", embedder)
    memory.add_user_memory(UserMemory("Ava likes green apples"), user_id="ava")
    assert memory.db.count_memories_to_embed("ava", embedder.model_name) == 0
    with pytest.raises(ModelOutputError, match=r"shape \(1, 5\), expected \(1, 16\)"):
        memory.search_user_memories("apples", "ava", retrieval_method="semantic")


# -- a memory replaced while a search embeds it ------------------------------------------------


class Replacing(Words):
    """Runs ``during`` while it embeds memories (once, or every time with ``always``):
    another writer's change made while a search embeds."""

    def __init__(self) -> None:
        super().__init__()
        self.during: Callable[[], object] | None = None
        self.always = False
        self.documents = 0  # calls that embedded memories

    def _embed_batch(self, texts: list[str], kind: Kind) -> Any:
        if kind == "document":
            self.documents += 1
            if self.during is not None:
                during = self.during
                self.during = during if self.always else None
                during()
        return super()._embed_batch(texts, kind)


def test_a_memory_replaced_while_a_search_embeds_it_is_found_by_its_new_text(
    tmp_path: Path,
) -> None:
    embedder = Replacing()
    memory = memory_with(tmp_path / "m.db", embedder, embed_on_write=False)
    other = Memory(db=SqliteDb(db_file=tmp_path / "m.db"), embedder=None)
    replaced = memory.add_user_memory(UserMemory("Ava likes green apples"), user_id="ava")
    memory.add_user_memory(UserMemory("Bob drives a red truck"), user_id="ava")
    new = UserMemory("Ava grows bananas")
    embedder.during = lambda: other.replace_user_memory(replaced, new, user_id="ava")
    found = memory.search_user_memories("Ava grows bananas", "ava", retrieval_method="semantic")
    assert embedder.during is None  # the other writer replaced it during the search
    assert (found[0].memory_id, found[0].memory) == (replaced, "Ava grows bananas")
    assert found[0].score == pytest.approx(1.0)
    assert embedder.texts[-2:] == ["Ava grows bananas", "Ava grows bananas"]  # memory, query
    assert memory.db.count_memories_to_embed("ava", embedder.model_name) == 0


def test_a_search_embeds_a_memory_changing_under_it_a_few_times_at_most(tmp_path: Path) -> None:
    embedder = Replacing()
    memory = memory_with(tmp_path / "m.db", embedder, embed_on_write=False)
    other = Memory(db=SqliteDb(db_file=tmp_path / "m.db"), embedder=None)
    changing = memory.add_user_memory(UserMemory("Ava likes green apples"), user_id="ava")
    memory.add_user_memory(UserMemory("Bob drives a red truck"), user_id="ava")
    texts = (f"Ava counts to {i}" for i in range(100))
    embedder.always = True
    embedder.during = lambda: other.replace_user_memory(
        changing, UserMemory(next(texts)), user_id="ava"
    )
    found = memory.search_user_memories("red truck", "ava", retrieval_method="semantic")
    assert [m.memory for m in found] == ["Bob drives a red truck"]
    assert embedder.documents == index._CATCH_UP_ROUNDS


class Refusing(Words):
    """Refuses, as a remote API does, a batch that holds a text with ``LONG`` (HTTP
    ``status``); embeds the others."""

    def __init__(self, status: int = 400) -> None:
        super().__init__()
        self.status = status

    def _embed_batch(self, texts: list[str], kind: Kind) -> Any:
        if any("LONG" in text for text in texts):
            raise ModelHTTPError("words", self.status, "the input is too long")
        return super()._embed_batch(texts, kind)


def test_a_memory_whose_text_the_embedder_refuses_does_not_fail_every_search(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    embedder = Refusing()
    memory = memory_with(tmp_path / "m.db", embedder, embed_on_write=False)
    memory.add_user_memory(UserMemory("Ava likes green apples"), user_id="ava")
    refused = memory.add_user_memory(UserMemory("Ava's flag is LONG"), user_id="ava")
    memory.add_user_memory(UserMemory("Ava keeps a flag in her garden"), user_id="ava")
    with caplog.at_level(logging.WARNING, logger="noted.memory"):
        hybrid = memory.search_user_memories("flag", "ava")
    assert refused in [m.memory_id for m in hybrid]  # by its words
    assert "refused its text" in caplog.text
    semantic = memory.search_user_memories("flag", "ava", retrieval_method="semantic")
    assert refused not in [m.memory_id for m in semantic] and len(semantic) == 2
    asked = len(embedder.texts)
    memory.search_user_memories("apples", "ava")  # not asked about the refused text again
    assert not any("LONG" in text for text in embedder.texts[asked:])
    assert memory.reindex_user_memories(user_id="ava") == 0


def test_an_embedder_that_fails_as_a_service_fails_the_search(tmp_path: Path) -> None:
    memory = memory_with(tmp_path / "m.db", Refusing(status=503), embed_on_write=False)
    memory.add_user_memory(UserMemory("Ava's flag is LONG"), user_id="ava")
    with pytest.raises(ModelHTTPError):
        memory.search_user_memories("flag", "ava")
