"""Exact vector search pieces the stores share: vectors as bytes, the best k of a score
array, a query centred on a user's memories, and a bounded cache of each user's vectors.

Search is exact: a user's vectors form one float32 matrix and a query costs one
matrix-vector product (about 1 ms per 25,000 memories of 384 dimensions on one core), which
stays fast at the sizes one user reaches. A store with an index of its own (pgvector's
HNSW) searches in the database instead.

A semantic search's query can be *centred* on the user's memories (:func:`centred`):
``centering`` (0 to 1) of its component along the direction of the user's mean vector is
taken away before the cosine (``q - c (q . m) m``, ``m`` that mean scaled to length 1).
Every memory of one user shares much of that direction (the same people, the same kind of
sentence), so it says little about which of them a query means; with less of it, what
sets a memory apart counts for more. Every store centres the same way; each keeps or
computes the mean over the user's vectors by the query's model and size.
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
    "centred",
    "check_centering",
    "check_vector",
    "cosine_scores",
    "direction",
    "from_blobs",
    "mean_direction",
    "row_sum",
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
_GROUP = 16  # rows BLAS scores alike: _SCORE_ROWS is a multiple of it


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
    split between threads can differ in the last bit).

    Equal rows score equal wherever they are: BLAS takes rows in groups and sums the
    last few, past the last whole group, in another order (the last row of 7 can differ
    from the same row placed first by one unit in the last place, enough to reorder
    memories of one text). So the rows past the last whole group are scored as a group
    of their own, padded with zeros."""
    rows = matrix.shape[0]
    scores = np.empty(rows, dtype=np.float32)
    whole = rows - rows % _GROUP
    for start in range(0, whole, _SCORE_ROWS):
        end = min(start + _SCORE_ROWS, whole)
        np.matmul(matrix[start:end], target, out=scores[start:end])
    if whole < rows:
        padded = np.zeros((_GROUP, matrix.shape[1]), dtype=np.float32)
        padded[: rows - whole] = matrix[whole:]
        scores[whole:] = (padded @ target)[: rows - whole]
    return scores


def check_centering(centering: object) -> float:
    """``centering`` as a float from 0 to 1, or UserError."""
    if isinstance(centering, bool) or not isinstance(centering, int | float):
        raise UserError(f"centering must be a number from 0 to 1, got {centering!r}")
    if not 0 <= centering <= 1:
        raise UserError(f"centering must be a number from 0 to 1, got {centering!r}")
    return float(centering)


def direction(total: npt.NDArray[np.floating]) -> Vector:
    """``total`` scaled to length 1, in float32 (zeros when it is zero)."""
    rounded = total.astype(np.float32)  # a sum of the rows at once is float32's
    length = float(np.linalg.norm(rounded))
    if not length > 0.0:
        return np.zeros(total.shape[0], dtype=np.float32)
    unit: Vector = (rounded / length).astype(np.float32)
    return unit


def row_sum(matrix: Vector) -> Vector:
    """The sum of ``matrix``'s rows, in float32 (a fifth of the time of float64's at
    10,000 rows): only the direction of the sum is used, and that of a float32 sum of unit
    vectors is good to 1e-4."""
    total: Vector = np.add.reduce(matrix, axis=0, dtype=np.float32)
    return total


def mean_direction(matrix: Vector) -> Vector:
    """The direction of the mean of ``matrix``'s rows, length 1 (zeros for no rows)."""
    return direction(row_sum(matrix))


def centred(target: Vector, mean: Vector, centering: float) -> Vector:
    """``target`` less ``centering`` of its component along ``mean`` (length 1 or zero),
    scaled back to ``target``'s length; ``target`` itself when nothing is left of it."""
    if not centering:
        return target
    along = float(np.dot(target, mean))
    moved = target - np.float32(centering * along) * mean
    length = float(np.linalg.norm(moved))
    if not length > 0.0:
        return target
    scaled: Vector = (moved * np.float32(float(np.linalg.norm(target)) / length)).astype(np.float32)
    return scaled


def top_indices(scores: npt.NDArray[np.floating], count: int | None) -> npt.NDArray[np.intp]:
    """Positions of the ``count`` highest finite scores (all when None), highest first;
    equal scores keep their positions' order. The scores that are not finite are set
    aside before the cut is found: numpy's partition slows twentyfold on a large block of
    equal values below the cut, which is what the -inf of memories left out make (those
    sharing no word with a keyword query, those a filter excludes)."""
    finite = np.isfinite(scores)
    positions = None if finite.all() else np.flatnonzero(finite)
    values = scores if positions is None else scores[positions]
    if count is not None and count < values.size:
        if count:
            # the count-th highest score, found in place of sorting them all
            last = np.partition(values, values.size - count)[values.size - count]
            above = np.flatnonzero(values > last)  # then the first places holding the cut's
            picked = np.concatenate([above, np.flatnonzero(values == last)[: count - above.size]])
        else:
            picked = np.zeros(0, dtype=np.intp)
    else:
        picked = np.arange(values.size)
    best: npt.NDArray[np.intp] = picked[np.lexsort((picked, -values[picked]))]
    return best if positions is None else positions[best]


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
