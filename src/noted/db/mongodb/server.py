"""What MongoDb needs to know about its server and URL: the indexes it creates (and how
it copes with a server that cannot build them as asked), whether the server has a real
text index or an Atlas vector search index, and a client's servers as a URL."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from noted.db.base import MemoryQuery, QueryVector

if TYPE_CHECKING:
    from pymongo import MongoClient
    from pymongo.collection import Collection

logger = logging.getLogger("noted.db.mongodb")

Doc = dict[str, Any]

MAX_CANDIDATES: Final = 10_000  # Atlas's limit for numCandidates
NO_VECTOR: Final[Mapping[str, int]] = {"embedding": 0, "embedding_model": 0}  # a projection


# (name, keys, options) of each collection's indexes. A key list ending in "_id" breaks
# ties in the order the stores promise (newest first, then by id).
IndexSpec = tuple[str, list[tuple[str, int]], dict[str, Any]]
MEMORY_INDEXES: Final[list[IndexSpec]] = [
    ("noted_user_updated", [("user_id", 1), ("updated_at", -1), ("_id", -1)], {}),
    ("noted_user_created", [("user_id", 1), ("created_at", -1), ("_id", -1)], {}),
    # every user's memories still to embed, oldest first (see docs.unembedded_in_order)
    ("noted_created", [("created_at", 1), ("_id", 1)], {}),
]
EVENT_INDEXES: Final[list[IndexSpec]] = [
    ("noted_history", [("user_id", 1), ("memory_id", 1), ("created_at", 1), ("seq", 1)], {}),
]
SESSION_INDEXES: Final[list[IndexSpec]] = [
    ("noted_user_updated", [("user_id", 1), ("updated_at", -1), ("_id", 1)], {}),
]
RUN_INDEXES: Final[list[IndexSpec]] = [
    ("noted_session_run", [("session_id", 1), ("run_index", 1)], {"unique": True}),
]
RUN_ID_INDEX: Final[IndexSpec] = ("noted_run_id", [("run_id", 1)], {"unique": True})
TEXT_INDEX: Final = "noted_text"
TEXT_WEIGHTS: Final = {"memory": 2, "topics": 1, "input": 1}  # as SqliteDb's BM25 weights


@dataclass(frozen=True, slots=True)
class Collections:
    """A MongoDb's collections."""

    memories: Collection[Doc]
    events: Collection[Doc]
    generations: Collection[Doc]
    sessions: Collection[Doc]
    runs: Collection[Doc]


@dataclass(frozen=True, slots=True)
class VectorIndex:
    """An Atlas vector search index noted can query: its name and vector size."""

    name: str
    dimensions: int


def ensure_indexes(collection: Collection[Doc], indexes: list[IndexSpec]) -> None:
    """Create the indexes, one by one (a no-op for those that exist).

    A server that cannot put ``_id`` in a compound key gets the index without it, which
    then sorts in memory among equal times only. nx-27017 is such a server: it refuses the
    index on a collection that has documents, and on an empty one builds it without
    ``_id`` (then fails every insert), so that one is dropped first.
    """
    from pymongo.errors import OperationFailure

    for name, keys, options in indexes:
        fields = [field for field, _ in keys]
        if "_id" not in fields[1:]:
            collection.create_index(keys, name=name, **options)
            continue
        try:
            collection.create_index(keys, name=name, **options)
        except OperationFailure as exc:
            refused: OperationFailure | None = exc
        else:
            refused = None
            listed = list(collection.list_indexes())
            if any(list(index["key"]) == fields for index in listed):
                continue
        short = [(field, order) for field, order in keys if field != "_id"]
        logger.warning(
            "%s: the server cannot index _id with other fields (%s); index %s is built without it",
            collection.full_name,
            refused or "it left _id out",
            name,
        )
        if refused is None:  # drop what the server built in its place
            for index in listed:
                if list(index["key"]) == [field for field, _ in short]:
                    collection.drop_index(index["name"])
        collection.create_index(short, name=name, **options)


def _fields(keys: Iterable[str]) -> list[str]:
    """An index's fields, without the ``_id`` that breaks ties (a server that cannot index
    it builds the index without it: see :func:`ensure_indexes`)."""
    fields = list(keys)
    return fields[:1] + [field for field in fields[1:] if field != "_id"]


def lost_indexes(
    listed: Iterable[Mapping[str, Any]], indexes: list[IndexSpec], text: bool = False
) -> list[str]:
    """The names of ``indexes`` (and of the text index, when ``text``) that a collection's
    listed indexes do not hold, compared by their fields (servers may name them
    otherwise)."""
    held: list[list[str]] = []
    has_text = False
    for index in listed:
        held.append(_fields(index.get("key") or {}))
        has_text = has_text or is_text_index(index)
    lost = [name for name, keys, _ in indexes if _fields(f for f, _ in keys) not in held]
    return [*lost, TEXT_INDEX] if text and not has_text else lost


@dataclass(slots=True)
class SchemaWatch:
    """When a MongoDb checks that its collections still hold the indexes it created (the
    database may be dropped, or restored without them, under a running process, and
    MongoDB makes a collection again at its first write, with no index but ``_id``'s):
    at the first call at least ``recheck_s`` after a sign that they may be gone (a user's
    generation or a session created: a new one, or the data lost; $text refused), and at
    the first ``every_s`` after the last check whatever happens. Calls in between check
    nothing."""

    recheck_s: float = 1.0
    every_s: float = 300.0
    checked: float = 0.0  # time.monotonic() of the last check
    doubted: bool = False  # a sign since then

    def doubt(self) -> None:
        """Note a sign that the indexes may be gone."""
        self.doubted = True

    def due(self) -> bool:
        """Whether the next call checks the indexes."""
        since = time.monotonic() - self.checked
        return since >= self.every_s or (self.doubted and since >= self.recheck_s)

    def claim(self) -> bool:
        """Whether this caller checks them now (under the store's lock: one caller does)."""
        if not self.due():
            return False
        self.checked, self.doubted = time.monotonic(), False
        return True


def schema_lost(c: Collections, text: bool) -> list[str]:
    """The indexes the store creates that its collections no longer hold (the database
    dropped or restored without them, a collection dropped), as "collection.index"; the
    collections are listed one by one, and the listing stops at the first that lost any.
    ``text``: the store had the server's text index."""
    wanted = [  # (the unique run id index is left out: stored runs may hold off that one)
        (c.memories, MEMORY_INDEXES, text),
        (c.runs, RUN_INDEXES, False),
        (c.events, EVENT_INDEXES, False),
        (c.sessions, SESSION_INDEXES, False),
    ]
    for collection, indexes, with_text in wanted:
        lost = lost_indexes(collection.list_indexes(), indexes, with_text)
        if lost:
            return [f"{collection.name}.{name}" for name in lost]
    return []


def is_text_index(index: Mapping[str, Any]) -> bool:
    """Whether a listed index is noted's MongoDB text index (which $text queries use)."""
    return index.get("name") == TEXT_INDEX and "textIndexVersion" in index


def find_vector_index(listed: Iterable[Mapping[str, Any]]) -> VectorIndex | None:
    """The first queryable Atlas vector index over ``embedding`` (cosine or dot product:
    the vectors are unit length) that can filter by user and model, if any."""
    for index in listed:
        if index.get("type") != "vectorSearch" or index.get("queryable") is not True:
            continue
        definition = index.get("latestDefinition") or index.get("definition") or {}
        fields = [f for f in definition.get("fields") or () if isinstance(f, Mapping)]
        filters = {f.get("path") for f in fields if f.get("type") == "filter"}
        for field in fields:
            dimensions = field.get("numDimensions")
            if (
                field.get("type") == "vector"
                and field.get("path") == "embedding"
                and field.get("similarity") in ("cosine", "dotProduct")
                and isinstance(dimensions, int)
                and {"user_id", "embedding_model"} <= filters
            ):
                return VectorIndex(str(index["name"]), dimensions)
    return None


def atlas_can_answer(index: VectorIndex, query: MemoryQuery, dimensions: int) -> bool:
    """$vectorSearch filters by user and model only and needs a limit: other queries (and
    vectors of another size) are answered exactly in Python."""
    return (
        not query.filtered
        and query.limit is not None
        and query.offset + query.limit <= MAX_CANDIDATES
        and dimensions == index.dimensions
    )


def create_text_index(memories: Collection[Doc], where: str) -> bool:
    """Ask for the text index; whether the server reports one that $text can use. A server
    that refuses it (another text index exists, or text search is not offered) leaves
    keyword search to BM25 in Python."""
    from pymongo.errors import OperationFailure

    try:
        memories.create_index(
            [(field, "text") for field in TEXT_WEIGHTS],
            name=TEXT_INDEX,
            weights=TEXT_WEIGHTS,
            default_language="english",
        )
        listed = list(memories.list_indexes())
    except OperationFailure as exc:
        logger.warning(
            "MongoDB at %s did not create the text index (%s): keyword search runs BM25 in Python",
            where,
            exc,
        )
        return False
    usable = any(is_text_index(index) for index in listed)
    logger.info(
        "MongoDB at %s, %s: keyword search by %s",
        where,
        memories.full_name,
        "the server's $text index" if usable else "BM25 in Python (no $text index reported)",
    )
    return usable


def list_vector_index(memories: Collection[Doc], where: str) -> VectorIndex | None:
    """The collection's usable Atlas vector index: servers without Atlas Search refuse the
    listing, which means none."""
    from pymongo.errors import OperationFailure

    try:
        listed = list(memories.list_search_indexes())
    except OperationFailure:
        listed = []
    index = find_vector_index(listed)
    logger.info(
        "MongoDB at %s, %s: semantic search by %s",
        where,
        memories.full_name,
        "cosine in Python" if index is None else f"$vectorSearch on index {index.name}",
    )
    return index


def atlas_pipeline(
    index: VectorIndex, query: MemoryQuery, target: QueryVector, model: str
) -> list[Doc]:
    """The $vectorSearch aggregation for the best ``offset + limit`` of the user's memories
    by ``model``, each with its ``_score`` and without its vector."""
    assert query.limit is not None
    count = query.offset + query.limit
    return [
        {
            "$vectorSearch": {
                "index": index.name,
                "path": "embedding",
                "queryVector": target.tolist(),
                "numCandidates": min(MAX_CANDIDATES, max(100, 10 * count)),
                "limit": count,
                "filter": {"user_id": query.user_id, "embedding_model": model},
            }
        },
        {"$project": {**NO_VECTOR, "_score": {"$meta": "vectorSearchScore"}}},
    ]


# -- URLs -------------------------------------------------------------------------------------


def client_seeds(client: MongoClient[Doc]) -> str:
    """A client's servers as a URL without credentials, for messages and repr."""
    servers = client.topology_description.server_descriptions()
    hosts = ",".join(f"{host}:{port}" for host, port in servers)
    return f"mongodb://{hosts}"
