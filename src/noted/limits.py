"""The limits of what noted stores and reads, defined once."""

from __future__ import annotations

from typing import Final

__all__ = [
    "MAX_ID_LENGTH",
    "MAX_INPUT_CHARS",
    "MAX_MEMORY_LENGTH",
    "MAX_OPERATIONS",
    "MAX_PAGE",
    "MAX_PLAN_TOPICS",
    "MAX_QUERY_CHARS",
    "MAX_RUN_BYTES",
    "MAX_TOPICS",
    "MAX_TRACE_MESSAGES_CHARS",
    "MAX_TRACE_VALUE_CHARS",
    "MAX_TRACE_VECTOR_NUMBERS",
]

MAX_MEMORY_LENGTH: Final = 5000
"""The default longest memory text, in characters (``Memory(max_memory_length=...)``)."""

MAX_ID_LENGTH: Final = 255
"""The longest id (memory, user, agent, team, session, run) and topic, in characters."""

MAX_INPUT_CHARS: Final = 5000
"""How much of what the user said the memory manager keeps as a memory's ``input``."""

MAX_OPERATIONS: Final = 50
"""The default cap on operations in one model answer (``MemoryManager(max_operations=...)``);
the rest are dropped and logged once."""

MAX_PLAN_TOPICS: Final = 8
"""How many topics of one operation in a model answer are kept."""

MAX_TOPICS: Final = 50
"""The most topics a memory written through the REST API or an MCP tool may carry."""

MAX_QUERY_CHARS: Final = 1000
"""The longest search text the REST API and the MCP tools take, in characters."""

MAX_RUN_BYTES: Final = 4 * 2**20
"""The largest run a session store keeps, 4 MiB: the run as JSON (``RunResult.to_dict()``,
its text in UTF-8), the same on every store. A MongoDB document (16 MiB) holds a run this
large with the background jobs written beside it; a larger run is refused
(:class:`~noted.errors.RunTooLargeError`), and an agent keeps a run its tools' results made
larger with those results cut."""

MAX_TRACE_VALUE_CHARS: Final = 100_000
"""The longest text one attribute of a span holds, in characters (a run's input and output,
a tool's arguments and result, a message of a model call, an exception's message): a longer
text keeps its start and its end, a line between them saying how much was left out. A span
is sent whole or not at all, and a collector refuses a large one (Phoenix's OTLP over gRPC
takes at most 4 MiB a request) with every other span of its batch."""

MAX_TRACE_MESSAGES_CHARS: Final = 300_000
"""The most the texts of a model call's input messages hold together in its span (its
messages' contents and tool call arguments, each first bounded to
:data:`MAX_TRACE_VALUE_CHARS`), and apart from them those of its output message: a long
conversation's span keeps its system prompt and its newest messages whole, and cuts the
older ones or leaves their text out, so the span stays far under a collector's 4 MiB. The
same room is given to a retriever span's documents (their texts and metadata, in rank
order) and to an embedding span's texts (in order): those that do not fit are left out.
Counted in UTF-8 bytes, what a span's size is made of: characters for ASCII text, and
2 to 4 for each character beyond it (3 for Chinese, Japanese or Korean text)."""

MAX_TRACE_VECTOR_NUMBERS: Final = 65_536
"""The most numbers the vectors of an embedding span hold together (about 11 bytes each as
OTLP sends them: 0.7 MB): a batch's first vectors whole, the others left out (256 vectors of
1,536 numbers, a reindex batch of OpenAI's ``text-embedding-3-small``, made a 4.3 MB span)."""

MAX_PAGE: Final = 2**63 - 1
"""The largest page size, offset or count of runs a store is asked for: the largest
integer a database takes."""
