"""Embedders: texts in, unit-length float32 vectors out, in batches.

An embedder is written once: a local model computes in ``_embed_batch`` (sync, CPU bound;
the async method runs it in a worker thread), a remote one in ``_aembed_batch`` (async;
the sync method drives it on noted's background loop). ``kind`` tells models that embed
questions and passages differently (e5's "query: " / "passage: ") which one a text is.
What comes back is checked: rows of another number or width than asked for, or holding
numbers that are not finite, are a ModelOutputError.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from noted import _portal
from noted.errors import ModelOutputError, UserError

__all__ = [
    "BaseEmbedder",
    "Embedder",
    "Kind",
    "NonFiniteVectorsError",
    "Vectors",
    "checked_rows",
    "finite_rows",
    "normalize_rows",
]

Kind = Literal["query", "document"]
Vectors = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """What search needs from an embedding model."""

    @property
    def model_name(self) -> str:
        """Names the model (and its settings) that made a vector; stored with each one, so
        a change of embedder is noticed."""
        ...

    @property
    def dimensions(self) -> int: ...

    def embed(self, texts: Sequence[str], *, kind: Kind = "document") -> Vectors:
        """One unit-length row per text, in order."""
        ...

    async def aembed(self, texts: Sequence[str], *, kind: Kind = "document") -> Vectors: ...


def normalize_rows(vectors: npt.ArrayLike) -> Vectors:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2:
        raise ModelOutputError(f"expected a 2-d array of vectors, got shape {array.shape}")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    unit: Vectors = (array / norms).astype(np.float32, copy=False)
    return unit


class NonFiniteVectorsError(ModelOutputError):
    """An embedder returned numbers that are not finite (NaN or infinity) for some texts.
    ``vectors`` holds every row of the call, as it came for those texts (not finite) and
    unit length for the others, so a caller may keep the others."""

    def __init__(self, message: str, vectors: Vectors) -> None:
        super().__init__(message)
        self.vectors = vectors


def checked_rows(parts: Sequence[object], count: int, dimensions: int, source: str) -> Vectors:
    """An embedder's output (``parts``, one array of rows each) as one float32 array of
    ``count`` rows of ``dimensions`` numbers, or ModelOutputError naming ``source``.
    Whether the numbers are finite is the caller's to check."""
    try:
        with np.errstate(over="ignore"):  # beyond float32's range: infinity, refused later
            rows = np.concatenate([np.asarray(part, dtype=np.float32) for part in parts])
    except (TypeError, ValueError) as error:
        raise ModelOutputError(f"{source} returned no array of vectors: {error}") from error
    if rows.shape != (count, dimensions):
        raise ModelOutputError(
            f"{source} returned vectors of shape {rows.shape}, expected ({count}, {dimensions})"
        )
    return rows


def finite_rows(vectors: Vectors) -> npt.NDArray[np.bool_]:
    """Which rows of ``vectors`` hold finite numbers only."""
    return np.asarray(np.isfinite(vectors).all(axis=1), dtype=np.bool_)


def _checked(texts: object) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise UserError("texts must be a list of strings")
    if not all(isinstance(t, str) for t in texts):
        raise UserError("every text to embed must be a string")
    return list(texts)


class BaseEmbedder:
    """Batching, checks and the sync/async pair around one of the two primitives."""

    batch_size: int = 64

    def __init__(self, model_name: str, dimensions: int) -> None:
        self._model_name = model_name
        self._dimensions = dimensions

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def dimensions(self) -> int:
        return self._dimensions

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._model_name!r})"

    # -- what an embedder implements (one of the two) -------------------------------------

    def _embed_batch(self, texts: list[str], kind: Kind) -> npt.ArrayLike:
        raise NotImplementedError

    async def _aembed_batch(self, texts: list[str], kind: Kind) -> npt.ArrayLike:
        raise NotImplementedError

    def _is_async(self) -> bool:
        return type(self)._aembed_batch is not BaseEmbedder._aembed_batch

    # -- what callers use ---------------------------------------------------------------

    def _finish(self, parts: list[Any], count: int) -> Vectors:
        if count == 0:
            return np.zeros((0, self._dimensions), dtype=np.float32)
        rows = checked_rows(parts, count, self._dimensions, repr(self))
        finite = finite_rows(rows)
        if finite.all():
            return normalize_rows(rows)
        unit = normalize_rows(np.where(finite[:, None], rows, 0))
        vectors = np.where(finite[:, None], unit, rows)
        raise NonFiniteVectorsError(
            f"{self!r} returned numbers that are not finite (NaN or infinity) for "
            f"{count - int(finite.sum())} of {count} texts",
            vectors,
        )

    def _batches(self, texts: list[str]) -> list[list[str]]:
        return [texts[i : i + self.batch_size] for i in range(0, len(texts), self.batch_size)]

    def embed(self, texts: Sequence[str], *, kind: Kind = "document") -> Vectors:
        items = _checked(texts)
        if self._is_async():
            return _portal.run(self.aembed(items, kind=kind))
        parts = [self._embed_batch(batch, kind) for batch in self._batches(items)]
        return self._finish(parts, len(items))

    async def aembed(self, texts: Sequence[str], *, kind: Kind = "document") -> Vectors:
        items = _checked(texts)
        if not self._is_async():
            return await asyncio.to_thread(self.embed, items, kind=kind)
        parts = [await self._aembed_batch(batch, kind) for batch in self._batches(items)]
        return self._finish(parts, len(items))
