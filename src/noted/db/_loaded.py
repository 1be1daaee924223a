"""One user's vectors as a search holds them in memory, and how they are brought up to date
(SQLite's, and PostgreSQL's held vectors).

:func:`loaded` builds them from the rows of a full read; :func:`patched` from the ones held
before and the rows of the memories written since (see :mod:`noted.db._journal`),
with the same result as a full read: the rows in key order (SQLite's rowid; PostgreSQL
numbers its rows as it reads them), and the same mean (its sum is made again whenever the
rows are copied, and kept in float64 while rows are appended).

Memories added at the end (the common write: a new memory, then its embedding) are
appended into spare rows kept after the matrix (:class:`_Room`), so the rows before are
not copied: at 100,000 memories a copy of the matrix alone takes tens of milliseconds. A
snapshot handed out earlier keeps its own length and never sees the rows appended after
it; the spare rows are used by the newest snapshot only (``used`` says whose they are).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from noted.db._journal import Written
from noted.retrieval.vectors import UserVectors, Vector, direction, from_blobs, row_sum

__all__ = ["VECTOR_COLUMNS", "LoadedVectors", "assembled", "loaded", "patched", "worth_patching"]

VECTOR_COLUMNS = "rowid, embedding, memory_id, updated_at"  # what the rows read must hold
PATCH_AT_MOST = 64  # see worth_patching
_SPARE = 16  # when the matrix is copied to append, a sixteenth more rows are made (64 at least)


class _Room:
    """Arrays with spare rows at their end; the first ``used`` rows belong to the newest
    snapshot made from them."""

    def __init__(self, vectors: LoadedVectors, capacity: int) -> None:
        size = vectors.keys.size
        self.keys = np.empty(capacity, dtype=np.int64)
        self.matrix = np.empty((capacity, vectors.matrix.shape[1]), dtype=np.float32)
        self.stamps = np.empty(capacity, dtype=np.float64)
        self.keys[:size], self.matrix[:size], self.stamps[:size] = (
            vectors.keys,
            vectors.matrix,
            vectors.stamps,
        )
        self.used = size

    @property
    def nbytes(self) -> int:
        return int(self.keys.nbytes + self.matrix.nbytes + self.stamps.nbytes)


@dataclass(frozen=True, slots=True)
class LoadedVectors(UserVectors):
    """A user's vectors with each row's memory id and time (seconds since the epoch), so
    hybrid search's hits need no read of the table."""

    ids: list[str]
    stamps: npt.NDArray[np.float64]
    total: npt.NDArray[np.float64]  # the sum of the rows (made in float32, kept in float64)
    mean: Vector  # the direction of that sum, length 1 (zeros when there is none)
    room: _Room | None = field(default=None, compare=False)

    @property
    def nbytes(self) -> int:
        if self.room is not None:
            arrays = self.room.nbytes
        else:
            arrays = int(self.keys.nbytes + self.matrix.nbytes + self.stamps.nbytes)
        return arrays + int(self.total.nbytes + self.mean.nbytes) + 80 * len(self.ids)


def loaded(generation: int, rows: Sequence[Any], dimensions: int) -> LoadedVectors:
    """The vectors of rows of ``VECTOR_COLUMNS``, in rowid order."""
    matrix = from_blobs([row[1] for row in rows], dimensions)
    keys = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    return assembled(generation, keys, matrix, [row[2] for row in rows], [row[3] for row in rows])


def assembled(
    generation: int,
    keys: npt.NDArray[np.int64],
    matrix: Vector,
    ids: list[str],
    micros: Sequence[int],
) -> LoadedVectors:
    """Vectors from their parts: each row's key, vector, memory id and time (integer
    microseconds since the epoch)."""
    total = row_sum(matrix).astype(np.float64)
    stamps = np.fromiter((m / 1e6 for m in micros), dtype=np.float64, count=len(micros))
    return LoadedVectors(generation, keys, matrix, ids, stamps, total, direction(total))


def worth_patching(kept: LoadedVectors, written: Written) -> bool:
    """Whether ``kept`` is brought up to date by reading the memories ``written`` since
    rather than every vector again: when they are at most ``PATCH_AT_MOST``, or a quarter
    of those kept if more."""
    return len(written.ids) <= max(PATCH_AT_MOST, len(kept.ids) // 4)


def patched(
    kept: LoadedVectors,
    written: Written,
    rows: Sequence[Any],
    generation: int,
    dimensions: int,
) -> LoadedVectors:
    """``kept`` at ``generation``: the memories ``written`` since taken out, and put back
    where they still have a vector, so the result is what a full read would give. ``rows``
    are the user's rows among them now, as ``VECTOR_COLUMNS`` in rowid order, with None for
    the embedding of a row that has none of the model's."""
    fresh = loaded(generation, [row for row in rows if row[1] is not None], dimensions)
    gone = _positions(kept, written, rows)
    if not gone and not fresh.keys.size:
        return dataclasses.replace(kept, generation=generation)
    if not gone and (not kept.keys.size or fresh.keys[0] > kept.keys[-1]):
        return _appended(kept, fresh, kept.total + fresh.total)
    keys, matrix, stamps, ids = kept.keys, kept.matrix, kept.stamps, kept.ids
    if gone:
        keys = np.delete(keys, gone)
        matrix = np.delete(matrix, gone, axis=0)
        stamps = np.delete(stamps, gone)
        dropped = set(gone)
        ids = [memory_id for at, memory_id in enumerate(ids) if at not in dropped]
    keys = np.concatenate([keys, fresh.keys])
    matrix = np.concatenate([matrix, fresh.matrix])
    stamps = np.concatenate([stamps, fresh.stamps])
    ids = ids + fresh.ids
    if keys.size > 1 and not bool(np.all(keys[:-1] < keys[1:])):
        order = np.argsort(keys, kind="stable")
        keys, matrix, stamps = keys[order], matrix[order], stamps[order]
        ids = [ids[at] for at in order.tolist()]
    # the matrix is copied here anyway: its sum is made again, as a full read makes it (a
    # sum kept through removals would keep their rounding)
    total = row_sum(matrix).astype(np.float64)
    return LoadedVectors(generation, keys, matrix, ids, stamps, total, direction(total))


def _positions(kept: LoadedVectors, written: Written, rows: Sequence[Any]) -> list[int]:
    """Where in ``kept`` the memories ``written`` are, in order. A memory keeps its rowid
    while it lives, so those of ``rows`` are found by rowid in ``kept``'s ordered keys;
    after a delete (whose memories ``rows`` lack, and which may have come back under
    another rowid) every id of ``kept`` is looked at."""
    if written.deleted:
        return [at for at, memory_id in enumerate(kept.ids) if memory_id in written.ids]
    keys = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    at = np.searchsorted(kept.keys, keys)
    inside = at < kept.keys.size
    found = at[inside][kept.keys[at[inside]] == keys[inside]]
    return sorted(found.tolist())


def _appended(
    kept: LoadedVectors, fresh: LoadedVectors, total: npt.NDArray[np.float64]
) -> LoadedVectors:
    """``kept`` with ``fresh``'s rows after its own (their rowids are all greater), in the
    spare rows of ``kept``'s arrays when it is their newest snapshot and they have room."""
    size, more = kept.keys.size, fresh.keys.size
    room = kept.room
    if room is None or room.used != size or room.keys.size < size + more:
        room = _Room(kept, size + more + max(64, (size + more) // _SPARE))
    end = size + more
    room.keys[size:end], room.matrix[size:end], room.stamps[size:end] = (
        fresh.keys,
        fresh.matrix,
        fresh.stamps,
    )
    room.used = end
    return LoadedVectors(
        fresh.generation,
        room.keys[:end],
        room.matrix[:end],
        kept.ids + fresh.ids,
        room.stamps[:end],
        total,
        direction(total),
        room,
    )
