"""MemoryIndex: a store's memories searchable by meaning with one embedder.

Embeddings are made when memories are written (a batch for many), or with
``embed_on_write=False`` (the default embedder's way, which keeps writes fast) by the user's
next search; they are stored with each memory and tagged with the embedder's
``model_name``. A memory written without them (by another process, by a tool of an older
version, or before an embedder was configured) is embedded by the next search of its
user, up to ``embed_on_search`` of them (every one with ``embed_on_write=False``); more
than that waits for :meth:`MemoryIndex.reindex` (``noted memories reindex``), and searches
meanwhile use the memories that have embeddings (hybrid search still finds the others by
keyword). So does a search whose store cannot keep the vectors now (a full disk, a store
opened read-only): it logs a warning, and a later search embeds them.

What an embedder returns is checked where it comes back: vectors of another width than its
``dimensions``, or another number of them than of texts, are a ModelOutputError naming it,
and so is a query's vector that is not finite (NaN or infinity). A memory's vector that is
not finite is not stored: the others of the batch are, the memory is logged and searched by
keyword only (hybrid search), and this index's searches do not embed it again until its text
changes or :meth:`MemoryIndex.reindex` tries it again. So is a memory whose text a remote
embedder refuses (an HTTP 4xx other than 429, for a batch: its memories are then embedded
one by one to find it).
"""

from __future__ import annotations

import contextvars
import dataclasses
import inspect
import logging
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Final, ParamSpec, Protocol, TypeVar, runtime_checkable

import numpy as np

from noted.db.base import MemoryQuery, MemoryStore, QueryVector, ScoredMemory
from noted.db.core import Capabilities
from noted.errors import ModelError, ModelHTTPError, ModelOutputError, StoreError, UserError
from noted.retrieval.choice import DEFAULT_EMBEDDER, resolve_embedder
from noted.retrieval.embedders import (
    Embedder,
    Kind,
    NonFiniteVectorsError,
    checked_rows,
    finite_rows,
)
from noted.retrieval.fusion import SEMANTIC_WEIGHT, Hit, fuse, fuse_hits
from noted.retrieval.vectors import Vector, check_centering
from noted.schema import UserMemory
from noted.tracing import _hooks as tracing

__all__ = ["HYBRID_DEPTH", "HitSearch", "MemoryIndex", "alongside", "beside", "memory_index"]

log = logging.getLogger("noted.memory")

HYBRID_DEPTH: Final = 100  # results taken from each side before fusing
EMBED_ON_SEARCH: Final = 1000
REINDEX_BATCH: Final = 256
_QUERIES_KEPT: Final = 64
_CATCH_UP_ROUNDS: Final = 3  # a search's embeddings of pending memories, at most
_REFUSED_KEPT: Final = 1000  # memories remembered as not embeddable (see the module's note)

Progress = Callable[[int, int], None]
_OVERLAP = True  # the keyword side beside the query's embedding (SQLite) or beside the
# semantic search (the other stores); off: one after the other


class _Threads:
    """Threads for reads run beside others (see :func:`beside`), made on first use; a
    forked child makes its own (the parent's threads are not there)."""

    size: Final = 4

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pool: ThreadPoolExecutor | None = None
        self.free = threading.Semaphore(self.size)  # threads not running a read

    def get(self) -> ThreadPoolExecutor:
        with self.lock:
            if self.pool is None:
                self.pool = ThreadPoolExecutor(self.size, thread_name_prefix="noted-keywords")
            return self.pool

    def forget(self) -> None:
        self.lock = threading.Lock()
        self.pool = None
        self.free = threading.Semaphore(self.size)


_THREADS = _Threads()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_THREADS.forget)

_P = ParamSpec("_P")
_T = TypeVar("_T")
_U = TypeVar("_U")


def beside(call: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> Future[_T]:
    """``call(*args, **kwargs)`` on one of the search threads, in a copy of the caller's
    context (its trace), while the caller goes on; run at once on the caller's thread
    when every one of them is busy (many searches at a time: then it would only wait its
    turn). What runs there must not wait on another such call: each is a store's read."""
    context = contextvars.copy_context()
    threads = _THREADS
    if not threads.free.acquire(blocking=False):
        done: Future[_T] = Future()
        try:
            done.set_result(context.run(call, *args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - the caller's result() raises it
            done.set_exception(exc)
        return done

    def run() -> _T:
        try:
            return context.run(call, *args, **kwargs)
        finally:
            threads.free.release()

    try:
        return threads.get().submit(run)
    except BaseException:
        threads.free.release()
        raise


def alongside(
    early: Future[_U], call: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs
) -> tuple[_T, _U]:
    """``call(*args, **kwargs)`` on this thread while ``early`` (from :func:`beside`) runs,
    and both answers. If the call fails, ``early`` is waited for before the error goes on,
    so nothing of the caller's work is left running."""
    try:
        here = call(*args, **kwargs)
    except BaseException:
        futures.wait([early])
        raise
    return here, early.result()


@runtime_checkable
class HitSearch(Protocol):
    """A store that can rank by words and by meaning without reading the memories, and
    then read the few that make the page: hybrid search fuses hits, not memories."""

    def keyword_hits(self, query: MemoryQuery, text: str) -> list[Hit]: ...

    def semantic_hits(
        self, query: MemoryQuery, vector: QueryVector, model: str, centering: float = 0.0
    ) -> list[Hit]: ...

    def memories_by_keys(
        self, user_id: str, keys: Sequence[Hashable]
    ) -> dict[Hashable, UserMemory]: ...


def _takes_centering(store: MemoryStore) -> bool:
    """Whether ``store.semantic_search`` takes ``centering`` (every store noted ships)."""
    try:
        parameters = list(inspect.signature(store.semantic_search).parameters.values())
    except (TypeError, ValueError):  # no signature to read: call it as the protocol says
        return True
    kind = inspect.Parameter
    positional = [
        p for p in parameters if p.kind in (kind.POSITIONAL_ONLY, kind.POSITIONAL_OR_KEYWORD)
    ]
    spread = (kind.VAR_POSITIONAL, kind.VAR_KEYWORD)
    return len(positional) >= 4 or any(
        p.name == "centering" or p.kind in spread for p in parameters
    )


class MemoryIndex:
    """Embeddings upkeep and semantic / hybrid search over ``store`` with ``embedder``."""

    def __init__(
        self,
        store: MemoryStore,
        embedder: Embedder,
        *,
        embed_on_search: int = EMBED_ON_SEARCH,
        semantic_weight: float = SEMANTIC_WEIGHT,
        embed_on_write: bool = True,
    ) -> None:
        if not isinstance(embedder, Embedder):
            raise UserError(f"embedder must be an Embedder such as LocalEmbedder, got {embedder!r}")
        self.store = store
        self.embedder = embedder
        self.embed_on_search = embed_on_search
        self.semantic_weight = semantic_weight
        self.embed_on_write = embed_on_write
        self._warned: set[str] = set()
        self._queries: OrderedDict[str, Vector] = OrderedDict()
        # (user, memory id, text) of memories whose vector came out not finite, oldest first
        self._refused: dict[tuple[str, str, str], None] = {}
        # a store written before ``centering`` takes three arguments: its searches stay plain
        self._centres = _takes_centering(store)
        self._lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return self.embedder.model_name

    def __repr__(self) -> str:
        return f"MemoryIndex({self.embedder!r})"

    # -- upkeep ---------------------------------------------------------------------------

    def embed(self, memories: Sequence[UserMemory]) -> int:
        """Embed stored memories and keep their vectors; return how many were kept (a
        memory changed meanwhile keeps none: its new text gets one later; nor does one
        whose vector is not finite, see the module's note)."""
        return self._embed(memories)[1]

    def _embed(self, memories: Sequence[UserMemory]) -> tuple[int, int]:
        """How many of the memories' vectors were given to the store, and how many it kept."""
        items = self._document_vectors(memories)
        return len(items), self.store.set_embeddings(self.model_name, items) if items else 0

    @tracing.traced("embedding")
    def _vectors(self, texts: list[str], kind: Kind) -> Vector:
        """The embedder's rows for ``texts``, their number and width checked (not yet
        whether they are finite)."""
        output = self.embedder.embed(texts, kind=kind)
        source = f"the embedder {self.model_name!r} ({type(self.embedder).__name__})"
        return checked_rows([output], len(texts), self.embedder.dimensions, source)

    def _document_vectors(self, memories: Sequence[UserMemory]) -> list[tuple[UserMemory, Vector]]:
        """Each memory with its vector, leaving out (and remembering) those whose vector is
        not finite."""
        if not memories:
            return []
        try:
            vectors = self._vectors([m.memory for m in memories], "document")
        except NonFiniteVectorsError as error:  # a BaseEmbedder's: the others are good
            vectors = error.vectors
        finite = finite_rows(vectors)
        if not finite.all():
            self._refuse([m for m, good in zip(memories, finite, strict=True) if not good])
        return [(m, v) for m, v, good in zip(memories, vectors, finite, strict=True) if good]

    def _embed_batch(self, memories: Sequence[UserMemory]) -> tuple[int, int]:
        """:meth:`_embed`, or :meth:`_embed_each` when the embedder refuses the batch for
        what it holds."""
        try:
            return self._embed(memories)
        except ModelHTTPError as exc:
            if not _refuses_the_text(exc):
                raise
            return self._embed_each(memories)

    def _embed_each(self, memories: Sequence[UserMemory]) -> tuple[int, int]:
        """:meth:`_embed` one memory at a time, after the embedder refused a batch for a
        text of it (HTTP 4xx): the memories it refuses alone are kept without a vector, as
        those whose vector is not finite are (see the module's note)."""
        offered = kept = 0
        for memory in memories:
            try:
                one = self._embed([memory])
            except ModelHTTPError as exc:
                if not _refuses_the_text(exc):
                    raise
                self._refuse([memory], f"the embedder refused its text ({exc})")
                continue
            offered, kept = offered + one[0], kept + one[1]
        return offered, kept

    def _refuse(self, memories: list[UserMemory], why: str | None = None) -> None:
        with self._lock:
            new = [m for m in memories if _refusal(m) not in self._refused]
            self._refused.update(dict.fromkeys(map(_refusal, new)))
            while len(self._refused) > _REFUSED_KEPT:
                del self._refused[next(iter(self._refused))]
        for memory in new:
            log.warning(
                "memory %s of user %r is stored without an embedding from %s: %s; searches "
                "find it by keyword only until its text changes or a reindex embeds it",
                memory.memory_id,
                memory.user_id,
                self.model_name,
                why or "it gave its text a vector that is not finite",
            )

    def _not_refused(self, memories: Sequence[UserMemory]) -> list[UserMemory]:
        with self._lock:
            return [m for m in memories if _refusal(m) not in self._refused]

    def _forget_refused(self, user_id: str | None) -> None:
        with self._lock:
            for key in [key for key in self._refused if user_id in (None, key[0])]:
                del self._refused[key]

    def embed_written(self, memories: Sequence[UserMemory]) -> None:
        """Embed memories just written (unless ``embed_on_write`` is off: then the user's
        next search embeds them). A failing remote embedder does not undo the write: the
        memories are embedded by a later search or reindex instead."""
        if not self.embed_on_write:
            return
        try:
            self.embed(memories)
        except ModelError as exc:
            log.warning("memories stored without embeddings for now: %s", exc)

    def catch_up(self, user_id: str) -> None:
        """Embed the user's memories that have no embedding from this embedder, when they
        are few enough to do it now (see the module's note)."""
        pending = self.store.count_memories_to_embed(user_id, self.model_name)
        if not pending:
            return
        if pending > self.embed_on_search:
            if user_id not in self._warned:
                self._warned.add(user_id)
                log.warning(
                    "user %r has %d memories without embeddings from %s; semantic search "
                    "uses the others until `noted memories reindex` (or Memory."
                    "reindex_user_memories) embeds them",
                    user_id,
                    pending,
                    self.model_name,
                )
            return
        # A vector the store refuses was made from a text another writer changed meanwhile:
        # the new text is embedded, so that the search does not miss the memory.
        for _ in range(_CATCH_UP_ROUNDS):
            waiting = self._not_refused(
                self.store.memories_to_embed(user_id, self.model_name, pending)
            )
            try:
                offered, kept = self._embed_batch(waiting)
            except StoreError as exc:
                # the store reads but cannot write now (a full disk, a file made read-only):
                # the search goes on, and finds these memories by keyword meanwhile
                log.warning("memories of user %r not embedded for now: %s", user_id, exc)
                return
            if kept == offered:
                break
        # counted again now: a store that keeps the count with the user's generation
        # (SQLite, Redis) has it ready for the next search
        self.store.count_memories_to_embed(user_id, self.model_name)

    def reindex(
        self,
        user_id: str | None = None,
        *,
        batch_size: int = REINDEX_BATCH,
        progress: Progress | None = None,
    ) -> int:
        """Embed every memory (of one user, or of all) that has no embedding from this
        embedder, ``batch_size`` at a time; ``progress(done, total)`` after each batch.
        Return how many were embedded. Memories whose vectors came out not finite are
        tried again, once each."""
        if type(batch_size) is not int or batch_size < 1:
            raise UserError(f"batch_size must be a positive integer, got {batch_size!r}")
        self._forget_refused(user_id)
        total = self.store.count_memories_to_embed(user_id, self.model_name)
        done = 0
        if progress is not None:
            progress(0, total)
        # each batch is the oldest still waiting, so memories changed meanwhile come round
        # again; the bound stops a store that keeps refusing from looping for ever
        for _ in range(3 * (total // batch_size + 1)):
            # those refused stay waiting: read past them
            with self._lock:
                limit = batch_size + len(self._refused)
            batch = self._not_refused(self.store.memories_to_embed(user_id, self.model_name, limit))
            if not batch:
                break
            done += self._embed_batch(batch)[1]
            if progress is not None:
                progress(min(done, total), total)
        if user_id is None:
            self._warned.clear()
        else:
            self._warned.discard(user_id)
        return done

    # -- search ---------------------------------------------------------------------------

    def semantic(
        self, query: MemoryQuery, text: str, *, centering: float = 0.0
    ) -> list[ScoredMemory]:
        """The memories closest in meaning to ``text`` (cosine similarity), its embedding
        centred on the user's vectors by ``centering`` (0 to 1; see
        :mod:`noted.retrieval.vectors`)."""
        centering = check_centering(centering)
        if query.user_id is None:
            raise UserError("semantic search is for one user: give a user_id")
        self.catch_up(query.user_id)
        return self._semantic_search(query, self._query_vector(text), centering)

    def _semantic_search(
        self, query: MemoryQuery, vector: Vector, centering: float
    ) -> list[ScoredMemory]:
        if centering and self._centres:
            return self.store.semantic_search(query, vector, self.model_name, centering)
        return self.store.semantic_search(query, vector, self.model_name)

    def embeds_beside(self, text: str) -> bool:
        """Whether a search for ``text`` embeds it (its embedding is not kept) while reads
        may run beside it: a wait that other reads can share."""
        return _OVERLAP and self._known_vector(text) is None

    def _known_vector(self, text: str) -> Vector | None:
        with self._lock:
            known = self._queries.get(text)
            if known is not None:
                self._queries.move_to_end(text)
            return known

    def _query_vector(self, text: str) -> Vector:
        """The query's embedding; the last few are kept, since an agent's turn searches
        with the same message for its context and for the memory manager."""
        known = self._known_vector(text)
        if known is not None:
            return known
        vector: Vector = self._vectors([text], "query")[0]
        if not np.isfinite(vector).all():
            raise ModelOutputError(
                f"the embedder {self.model_name!r} gave the query a vector that is not finite "
                "(NaN or infinity)"
            )
        with self._lock:
            self._queries[text] = vector
            while len(self._queries) > _QUERIES_KEPT:
                self._queries.popitem(last=False)
        return vector

    def hybrid(
        self,
        query: MemoryQuery,
        text: str,
        *,
        recency_weight: float = 0.0,
        half_life: timedelta = timedelta(days=30),
        semantic_weight: float | None = None,
        words: str | None = None,
        centering: float = 0.0,
    ) -> list[ScoredMemory]:
        """Keyword and semantic results fused (see :mod:`noted.retrieval.fusion`), with the
        index's ``semantic_weight`` unless another is given; the keyword side searches
        ``words`` when given, ``text`` otherwise; the semantic side's query is centred on
        the user's vectors by ``centering`` (0 to 1; see :mod:`noted.retrieval.vectors`).
        On a store that ranks hits (SQLite), a new query's words are searched on another
        thread while the query is embedded (both run outside the GIL); on the others, once
        it is embedded, beside the search by meaning (see :func:`beside`)."""
        centering = check_centering(centering)
        limit = query.limit
        weight = self.semantic_weight if semantic_weight is None else semantic_weight
        depth = None if limit is None else max(HYBRID_DEPTH, query.offset + limit)
        wide = dataclasses.replace(query, limit=depth, offset=0)
        end = None if limit is None else query.offset + limit
        words = text if words is None else words
        store = self.store
        if query.user_id is None:
            raise UserError("semantic search is for one user: give a user_id")
        self.catch_up(query.user_id)
        if isinstance(store, HitSearch):
            # the store ranks both ways without reading memories: only the page is read
            vector = self._known_vector(text)
            if vector is None and _OVERLAP:
                # the store searches the words (out of the GIL) while the model embeds
                searching = beside(store.keyword_hits, wide, words)
                vector = self._query_vector(text)
                keyword = searching.result()
            else:
                vector = self._query_vector(text) if vector is None else vector
                keyword = store.keyword_hits(wide, words)
            hits = fuse_hits(
                keyword,
                store.semantic_hits(wide, vector, self.model_name, centering),
                semantic_weight=weight,
                recency_weight=recency_weight,
                half_life=half_life,
                limit=end,
            )[query.offset :]
            found = store.memories_by_keys(query.user_id, [hit.key for hit, _ in hits])
            return [ScoredMemory(found[hit.key], score) for hit, score in hits if hit.key in found]
        # A store with a full-text index of its own searches the words on its server while
        # the model embeds. On the others the model runs first, alone: on two cores,
        # ranking words in this process while it runs slows it down by more than the
        # keyword search takes. Then the words are searched beside the vectors (a
        # server's work, or numpy's, mostly outside the GIL).
        matching = None
        if _OVERLAP and _ranks_words_itself(store) and self._known_vector(text) is None:
            matching = beside(store.keyword_search, wide, words)
        vector = self._query_vector(text)
        if _OVERLAP:
            matching = matching or beside(store.keyword_search, wide, words)
            by_meaning, by_words = alongside(
                matching, self._semantic_search, wide, vector, centering
            )
        else:
            by_meaning = self._semantic_search(wide, vector, centering)
            by_words = store.keyword_search(wide, words)
        fused = fuse(
            by_words,
            by_meaning,
            semantic_weight=weight,
            recency_weight=recency_weight,
            half_life=half_life,
            limit=end,
        )
        return fused[query.offset :]


def _refuses_the_text(exc: ModelHTTPError) -> bool:
    """Whether an embedder's HTTP error is about what it was sent (a 4xx other than a
    rate limit), not about the service (5xx, 429: those are raised, as they pass)."""
    return 400 <= exc.status_code < 500 and exc.status_code != 429


def _refusal(memory: UserMemory) -> tuple[str, str, str]:
    return memory.user_id or "", memory.memory_id or "", memory.memory


def _ranks_words_itself(store: MemoryStore) -> bool:
    """Whether the store's database has a full-text index of its own (its ``capabilities``
    say so; a store without them is taken to rank words in this process)."""
    capabilities = getattr(store, "capabilities", None)
    return isinstance(capabilities, Capabilities) and capabilities.native_fulltext


def memory_index(
    store: MemoryStore, embedder: Embedder | str | None, embed_on_write: bool | None = None
) -> MemoryIndex | None:
    """The index of ``store`` with the embedder ``embedder`` names (None for none, see
    :func:`~noted.retrieval.choice.resolve_embedder`). ``embed_on_write`` None: on for an
    embedder named, off for ``"default"``, whose memories are embedded by the next search,
    every one still without a vector, so writes stay fast and searches miss none."""
    resolved = resolve_embedder(embedder)
    if resolved is None:
        return None
    if embed_on_write is None:
        embed_on_write = embedder != DEFAULT_EMBEDDER
    if embed_on_write:
        return MemoryIndex(store, resolved)
    return MemoryIndex(store, resolved, embed_on_write=False, embed_on_search=sys.maxsize)
