"""Exact vector search pieces the stores share: vectors as bytes, the best k of a score
array, and a bounded cache of each user's vectors.

Search is exact: a user's vectors form one float32 matrix and a query costs one
matrix-vector product (about 1 ms per 25,000 memories of 384 dimensions on one core), which
stays fast at the sizes one user reaches. A store with an index of its own (pgvector's
HNSW) searches in the database instead.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from noted.errors import UserError

__all__ = [
    "UserVectors",
    "VectorCache",
    "check_vector",
    "cosine_scores",
    "from_blobs",
    "search_target",
    "to_blob",
    "top_indices",
]

Vector = npt.NDArray[np.float32]
_FLOAT32 = np.dtype("<f4")
# Rows scored per BLAS call: small enough that the BLAS library keeps to the calling
# thread. Its thread pool makes a product over 10,000 rows wait for a second core (on a
# busy machine, for tens of milliseconds) to save a millisecond at best.
_SCORE_ROWS = 1024


def check_vector(vector: object) -> Vector:
    """``vector`` as a 1-d float32 array of finite numbers, or UserError."""
    array = np.asarray(vector, dtype=np.float32)
    if array.ndim == 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 1 or array.size == 0:
        raise UserError(f"a search vector must be one row of numbers, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise UserError("a search vector must hold finite numbers only")
    return array


def search_target(user_id: str | None, vector: object) -> tuple[str, Vector]:
    """The user and the checked vector of a semantic search (which is for one user)."""
    if user_id is None:
        raise UserError("semantic search is for one user: give a user_id")
    return user_id, check_vector(vector)


def to_blob(vector: npt.ArrayLike) -> bytes:
    """Little-endian float32 bytes, as every store keeps a vector."""
    return np.asarray(vector, dtype=_FLOAT32).reshape(-1).tobytes()


def from_blobs(blobs: Sequence[bytes], dimensions: int) -> Vector:
    """Stored vectors as the rows of one float32 matrix (each blob holds ``dimensions``)."""
    if not blobs:
        return np.zeros((0, dimensions), dtype=np.float32)
    matrix = np.frombuffer(b"".join(blobs), dtype=_FLOAT32).reshape(len(blobs), dimensions)
    return matrix.astype(np.float32, copy=False)


def cosine_scores(matrix: Vector, target: Vector) -> Vector:
    """``matrix @ target`` (each row's dot product with ``target``), on the calling
    thread: the same numbers on every machine, whatever its number of cores (a product
    split between threads can differ in the last bit)."""
    scores = np.empty(matrix.shape[0], dtype=np.float32)
    for start in range(0, matrix.shape[0], _SCORE_ROWS):
        end = start + _SCORE_ROWS
        np.matmul(matrix[start:end], target, out=scores[start:end])
    return scores


def top_indices(scores: npt.NDArray[np.floating], count: int | None) -> npt.NDArray[np.intp]:
    """Positions of the ``count`` highest finite scores (all when None), highest first;
    equal scores keep their positions' order."""
    if count and count < scores.size:
        # the count-th highest score, found in place of sorting them all
        last = np.partition(scores, scores.size - count)[scores.size - count]
        above = np.flatnonzero(scores > last)
        if np.isfinite(last) and np.isfinite(scores[above]).all() and not np.isnan(scores).any():
            tied = np.flatnonzero(scores == last)[: count - above.size]
            picked = np.concatenate([above, tied])
            order = np.lexsort((picked, -scores[picked]))
            best: npt.NDArray[np.intp] = picked[order]
            return best
    finite = np.flatnonzero(np.isfinite(scores))
    if count is not None and count < finite.size:
        if count:
            values = scores[finite]
            last = np.partition(values, values.size - count)[values.size - count]
            above = finite[values > last]  # then the first positions holding the cut's score
            picked = np.concatenate([above, finite[values == last][: count - above.size]])
        else:
            picked = finite[:0]
    else:
        picked = finite
    order = np.lexsort((picked, -scores[picked]))
    result: npt.NDArray[np.intp] = picked[order]
    return result


@dataclass(frozen=True, slots=True)
class UserVectors:
    """One user's vectors made by one model, as loaded at a given generation of the user's
    rows: ``keys[i]`` names the row of ``matrix[i]`` (the store's own row key)."""

    generation: int
    keys: npt.NDArray[np.int64]
    matrix: Vector

    @property
    def nbytes(self) -> int:
        return int(self.keys.nbytes + self.matrix.nbytes)


class VectorCache:
    """The most recently used users' vectors, within ``max_bytes`` in all. Thread-safe.

    Each user is cached on its own: a change of one user's memories reloads that user's
    vectors only, so a large user never slows down a small one's search.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, UserVectors] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable, generation: int) -> UserVectors | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.generation != generation:
                return None
            self._entries.move_to_end(key)
            return entry

    def peek(self, key: Hashable) -> UserVectors | None:
        """The entry kept for ``key`` at whatever generation it was loaded, if any."""
        with self._lock:
            return self._entries.get(key)

    def put(self, key: Hashable, entry: UserVectors) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            if entry.nbytes > self.max_bytes:
                return
            self._entries[key] = entry
            self._bytes += entry.nbytes
            while self._bytes > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= dropped.nbytes

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        return self._bytes
