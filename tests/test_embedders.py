"""OpenAIEmbedder against a local server speaking the embeddings wire format, and the
embedder base's checks."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator

import numpy as np
import pytest

from model_helpers import FAST
from noted.errors import MissingDependencyError, ModelHTTPError, ModelOutputError, UserError
from noted.retrieval.embedders import Embedder
from noted.retrieval.openai import OpenAIEmbedder
from wire import Reply, WireServer


def embeddings(*rows: list[float], shuffled: bool = False) -> Reply:
    data = [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)]
    if shuffled:
        data.reverse()
    return Reply(
        body={
            "object": "list",
            "data": data,
            "model": "m",
            "usage": {"prompt_tokens": 3, "total_tokens": 3},
        }
    )


@pytest.fixture
def opened() -> Iterator[list[OpenAIEmbedder]]:
    """Embedders to close after the test (their clients live on noted's loop)."""
    made: list[OpenAIEmbedder] = []
    yield made
    for model in made:
        model.close()


def embedder(wire: WireServer, **settings: object) -> OpenAIEmbedder:
    options: dict[str, object] = {
        "base_url": wire.url + "/v1",
        "api_key": "k",
        "retry": FAST,
        "dimensions": 2,
    }
    options.update(settings)
    return OpenAIEmbedder("nomic-embed-text", **options)  # type: ignore[arg-type]


def test_vectors_come_back_in_order_unit_length_and_batched(
    wire: WireServer, opened: list[OpenAIEmbedder]
) -> None:
    wire.add(embeddings([3, 4], [0, 2], shuffled=True), embeddings([5, 0]))
    model = embedder(wire, batch_size=2)
    opened.append(model)
    assert isinstance(model, Embedder)
    vectors = model.embed(["a", "b", "c"])
    assert vectors.dtype == np.float32 and vectors.shape == (3, 2)
    np.testing.assert_allclose(vectors, [[0.6, 0.8], [0, 1], [1, 0]], atol=1e-6)
    assert [r.body["input"] for r in wire.requests] == [["a", "b"], ["c"]]
    assert wire.requests[0].path == "/v1/embeddings"
    assert "dimensions" not in wire.requests[0].body  # not an OpenAI model: nothing to shorten
    assert model.model_name == f"openai:nomic-embed-text@{wire.url}/v1/2"
    assert model.embed([]).shape == (0, 2)
    assert len(wire.requests) == 2  # no request for no texts


def test_openai_models_know_their_size_and_can_be_shortened(
    wire: WireServer, opened: list[OpenAIEmbedder]
) -> None:
    wire.add(embeddings([1.0, 0.0]))
    model = OpenAIEmbedder("text-embedding-3-small", dimensions=2, base_url=wire.url, api_key="k")
    opened.append(model)
    model.embed(["hi"])
    assert wire.requests[0].body["dimensions"] == 2
    assert OpenAIEmbedder("text-embedding-3-large", api_key="k").dimensions == 3072
    with pytest.raises(UserError, match="dimensions"):
        OpenAIEmbedder("nomic-embed-text", api_key="k")
    with pytest.raises(UserError, match="batch_size"):
        OpenAIEmbedder("text-embedding-3-small", batch_size=0)


def test_failures_are_retried_or_raised_clearly(
    wire: WireServer, opened: list[OpenAIEmbedder]
) -> None:
    wire.add(
        Reply({"error": {"message": "slow down"}}, status=429), embeddings([1, 0]), embeddings([1])
    )
    model = embedder(wire)
    opened.append(model)
    np.testing.assert_allclose(model.embed(["a"]), [[1, 0]])
    with pytest.raises(ModelOutputError, match="shape"):
        model.embed(["a"])  # one number for a 2-d model
    wire.add(embeddings([1, 0], [0, 1]))
    with pytest.raises(ModelOutputError, match="2 embeddings for 1 texts"):
        model.embed(["a"])
    twice = embeddings([1, 0], [0, 1])
    twice.body["data"][1]["index"] = 0
    wire.add(twice)
    with pytest.raises(ModelOutputError, match="do not number its 2 texts once each"):
        model.embed(["a", "b"])  # two answers to the first text, none to the second
    wire.add(embeddings([float("nan"), 1]))
    with pytest.raises(ModelOutputError, match="not finite"):
        model.embed(["a"])
    wire.add(Reply({"error": {"message": "no such model"}}, status=404))
    with pytest.raises(ModelHTTPError, match="no such model"):
        model.embed(["a"])
    with pytest.raises(UserError, match="list of strings"):
        model.embed("a")
    with pytest.raises(UserError, match="must be a string"):
        model.embed(["a", 3])  # type: ignore[list-item]


def test_async_embedding(wire: WireServer) -> None:
    wire.add(embeddings([0, 3]))
    model = embedder(wire)

    async def go() -> np.ndarray:
        try:
            return await model.aembed(["q"], kind="query")
        finally:
            await model.aclose()

    np.testing.assert_allclose(asyncio.run(go()), [[0, 1]])


def test_a_missing_sdk_is_named_for_the_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)
    with pytest.raises(MissingDependencyError, match=r"^OpenAIEmbedder needs the 'openai'"):
        OpenAIEmbedder(api_key="sk-test")
