"""``create_server``: noted's memories as an MCP server (tools, a profile resource and prompt).

Each call's store work runs in a worker thread, over either transport, so that a call
waiting on the store (for another process's write lock, say, up to the store's busy
timeout) holds up no other call. Over stdio, where one client sends every call, its writes
are applied one at a time in the order it sent them; reads go on beside them.

Who a call is about is settled before any tool runs:

- without ``auth`` (stdio, one person's desktop client) every call is about ``user_id``
  and no tool takes a user argument;
- with ``auth`` (streamable HTTP) each call is checked against the ``Authorization``
  header of the HTTP request that carried it: a user token fixes the user, and only the
  admin key may name one with the tools' ``user_id`` argument.

Over HTTP a store's failure is told as the REST API tells it: where the store is and what
it said to the admin only (and to the log); a user token reads the kind of failure.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import anyio.to_thread
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError

from noted import __version__
from noted.db.base import MemoryStore
from noted.db.urls import open_store
from noted.errors import DamagedMemoryError, NotedError, StoreError, UserError
from noted.mcp.arguments import Arguments
from noted.mcp.tools import TOOLS, Tool
from noted.memory import DEFAULT_USER_ID, Memory
from noted.memory.door import told
from noted.retrieval.choice import DEFAULT_EMBEDDER
from noted.retrieval.embedders import Embedder
from noted.schema import require_id
from noted.server.auth import Auth, Unauthorized
from noted.server.failures import failure_detail
from noted.tracing import _hooks as tracing

__all__ = ["PROFILE_URI", "Scope", "create_server"]

PROFILE_URI: Final = "noted://profile"
PROFILE_SIZE: Final = 50
INSTRUCTIONS: Final = (
    "noted keeps long-term memories about the user. At the start of a conversation, "
    "list_memories (or read the profile) to recall what you know; search_memories before "
    "answering anything personal. When the user shares a lasting fact about themselves, "
    "save it with add_memory (one fact per memory); correct outdated ones with update_memory."
)
_USER_ID: Final = {
    "type": "string",
    "minLength": 1,
    "description": "Admin key only: whose memories (default: the server's user). A user "
    "token always reaches its own user's memories only.",
}

Context = ServerRequestContext[Any, Any]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a call comes from: the user it is about, and whether it may read where the
    store is and what it said when it fails (the admin, or the one person on stdio)."""

    user: str
    sees_store: bool


@dataclass(frozen=True, slots=True)
class Scope:
    """Which user a call is about: ``user_id`` (without ``auth``), or who its request's
    credentials name (with ``auth``; the admin's calls default to ``user_id``)."""

    user_id: str = DEFAULT_USER_ID
    auth: Auth | None = None

    async def caller(self, ctx: Context, named: str | None) -> Caller:
        """The call's caller; a user token's revocations are read in a worker thread (a
        locked or distant store holds up no other call)."""
        if self.auth is None:
            return Caller(self.user_id, sees_store=True)
        headers: Mapping[str, str] | None = getattr(ctx.request, "headers", None)
        principal = await self.auth.authenticate_async(
            None if headers is None else headers.get("authorization")
        )
        own = principal.user_id
        if own is None:  # the admin
            return Caller(named or self.user_id, sees_store=True)
        if named is not None and named != own:
            raise UserError(
                "user_id: a user token reaches only its own user's memories; leave user_id out"
            )
        return Caller(own, sees_store=False)

    def told(self, exc: NotedError, sees_store: bool, where: str) -> str:
        """What a caller (the admin or the one person on stdio when ``sees_store``) is
        told of ``exc``: the Memory API's words; over HTTP, a store's failure as the REST
        API tells it, and logged with ``where``. A memory of the caller's own that the
        store holds damaged is told as it is (it says nothing of the store)."""
        if (
            self.auth is None
            or not isinstance(exc, StoreError)
            or isinstance(exc, DamagedMemoryError)
        ):
            return told(exc)
        return failure_detail(exc, sees_store, where)


def _schema(tool: Tool, scoped: bool) -> dict[str, Any]:
    properties = dict(tool.properties)
    if scoped:
        properties["user_id"] = _USER_ID
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if tool.required:
        schema["required"] = list(tool.required)
    return schema


def _described(tool: Tool, scoped: bool) -> types.Tool:
    return types.Tool(
        name=tool.name,
        title=tool.title,
        description=tool.description,
        input_schema=_schema(tool, scoped),
        annotations=types.ToolAnnotations(
            title=tool.title,
            read_only_hint=tool.read_only,
            destructive_hint=tool.destructive,
            idempotent_hint=tool.read_only or tool.destructive,
            open_world_hint=False,
        ),
    )


def _text(value: str) -> list[types.ContentBlock]:
    return [types.TextContent(type="text", text=value)]


def _failed(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=_text(message), is_error=True)


def profile(memory: Memory, user: str) -> str:
    """The user's profile: their most recently updated memories, one per line."""
    found = memory.get_user_memories(user_id=user, limit=PROFILE_SIZE)
    if not found:
        return "No memories about this user yet."
    lines = [f"- {m.memory}" + (f" [{', '.join(m.topics)}]" if m.topics else "") for m in found]
    return "What is known about the user (most recent first):\n" + "\n".join(lines)


def _request_error(exc: Exception, said: str | None = None) -> MCPError:
    """A resource or prompt request that failed, answered as a JSON-RPC error that says
    why (``said``, else ``exc``'s message): an internal error when the store failed, else
    a bad request."""
    prefix = "unauthorized: " if isinstance(exc, Unauthorized) else ""
    code = types.INTERNAL_ERROR if isinstance(exc, StoreError) else types.INVALID_PARAMS
    return MCPError(code, f"{prefix}{said or exc}")


@dataclass(frozen=True, slots=True)
class Answer:
    """A tool call's answer (``result``), with what its span records: the user the call was
    about (None when it was refused before that was settled) and the exception it failed
    with (None when it did not fail)."""

    result: types.CallToolResult
    user: str | None = None
    error: BaseException | None = None


class _Handlers:
    """The request handlers of one server: its Memory, its scope, its tools."""

    def __init__(self, memory: Memory, scope: Scope) -> None:
        self.memory = memory
        self.scope = scope
        # one client (no auth: stdio) sends every call: its writes go in the order sent
        self.writes: anyio.Lock | None = anyio.Lock() if scope.auth is None else None
        scoped = scope.auth is not None
        self.tools = {tool.name: tool for tool in TOOLS}
        self.described = {tool.name: _described(tool, scoped) for tool in TOOLS}
        self.listed = types.ListToolsResult(tools=list(self.described.values()))

    async def list_tools(
        self, ctx: Context, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return self.listed

    async def call_tool(
        self, ctx: Context, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        name = params.name
        answer = await self._answer(ctx, name, params.arguments, self.described.get(name))
        return answer.result

    @tracing.traced("mcp tool")
    async def _answer(
        self,
        ctx: Context,
        name: str,
        arguments: dict[str, Any] | None,
        described: types.Tool | None,
    ) -> Answer:
        """One tool call (a TOOL span while tracing is on; ``described``: the tool as
        listed, None for a name that is no tool's)."""
        tool = self.tools.get(name)
        if tool is None:
            refusal = f"unknown tool {name!r}; the tools are {', '.join(self.tools)}"
            return Answer(_failed(refusal), error=UserError(refusal))
        scoped = self.scope.auth is not None
        user: str | None = None
        sees_store = False  # until the credentials are read
        try:
            args = Arguments(tool.name, arguments, (*tool.takes, *(("user_id",) if scoped else ())))
            named = args.text("user_id", required=False) if scoped else None
            caller = await self.scope.caller(
                ctx, None if named is None else require_id("user_id", named)
            )
            user, sees_store = caller.user, caller.sees_store
            result = await self._run(tool.run, user, args, writes=not tool.read_only)
        except Unauthorized as exc:
            return Answer(_failed(f"unauthorized: {exc}"), user, exc)
        except NotedError as exc:  # the Memory API's own words, after the tool's name
            said = self.scope.told(exc, sees_store, f"MCP tool {tool.name}")
            prefix = f"{tool.name}: "
            return Answer(_failed(said if said.startswith(prefix) else prefix + said), user, exc)
        text = json.dumps(result, ensure_ascii=False, separators=(",", ":"))
        return Answer(types.CallToolResult(content=_text(text), structured_content=result), user)

    async def _run(
        self, run: Callable[[Memory, str, Any], Any], user: str, args: Any, *, writes: bool
    ) -> Any:
        """A call's store work, in a worker thread: the event loop answers other calls
        meanwhile. A call that ``writes``, on a server of one client, first waits for the
        writes that client sent before it (the lock hands itself on in the order asked),
        and holds the lock until its work has ended, even when the call is cancelled.
        Any other call cancelled (its client gone, or the server stopping after its
        shutdown timeout) stops waiting for its thread: the store call ends there unheard,
        within the store's own timeout, and holds up no stop."""
        if writes and self.writes is not None:
            async with self.writes:
                return await anyio.to_thread.run_sync(run, self.memory, user, args)
        return await anyio.to_thread.run_sync(run, self.memory, user, args, abandon_on_cancel=True)

    async def _profile(self, ctx: Context, where: str) -> str:
        """The caller's profile, for the resource or the prompt (``where``, as logged)."""
        sees_store = False  # until the credentials are read
        try:
            caller = await self.scope.caller(ctx, None)
            sees_store = caller.sees_store
            read = await self._run(
                lambda memory, who, _: profile(memory, who), caller.user, None, writes=False
            )
            return str(read)
        except Unauthorized as exc:
            raise _request_error(exc) from None
        except NotedError as exc:
            raise _request_error(exc, self.scope.told(exc, sees_store, where)) from None

    async def list_resources(
        self, ctx: Context, params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        resource = types.Resource(
            name="profile",
            title="The user's profile",
            uri=PROFILE_URI,
            description="What noted remembers about the user: their most recent memories.",
            mime_type="text/plain",
        )
        return types.ListResourcesResult(resources=[resource])

    async def read_resource(
        self, ctx: Context, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        if str(params.uri) != PROFILE_URI:
            raise _request_error(UserError(f"unknown resource {params.uri!r}; it is {PROFILE_URI}"))
        text = await self._profile(ctx, f"MCP resource {PROFILE_URI}")
        contents = types.TextResourceContents(uri=PROFILE_URI, mime_type="text/plain", text=text)
        return types.ReadResourceResult(contents=[contents])

    async def list_prompts(
        self, ctx: Context, params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        prompt = types.Prompt(
            name="profile",
            title="Recall what you know about me",
            description="Start a conversation with what noted remembers about the user.",
        )
        return types.ListPromptsResult(prompts=[prompt])

    async def get_prompt(
        self, ctx: Context, params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        if params.name != "profile":
            raise _request_error(UserError(f"unknown prompt {params.name!r}; it is 'profile'"))
        text = await self._profile(ctx, "MCP prompt profile")
        message = types.PromptMessage(
            role="user", content=types.TextContent(type="text", text=text)
        )
        return types.GetPromptResult(description="What noted remembers", messages=[message])


def _mcp_memory(
    db: MemoryStore | str | None, memory: Memory | None, embedder: Embedder | str | None
) -> Memory:
    """A Memory whose writes are recorded as the actor ``mcp``."""
    if memory is None:
        store = open_store(db or "noted.db") if db is None or isinstance(db, str) else db
        return Memory(store, embedder=embedder, actor="mcp")
    if db is not None or embedder != DEFAULT_EMBEDDER:
        raise UserError("give either memory=... or db=... (and embedder=...), not both")
    return memory.acting_as("mcp")  # its index as it is: searches embed what it would


def create_server(
    db: MemoryStore | str | None = None,
    *,
    memory: Memory | None = None,
    embedder: Embedder | str | None = DEFAULT_EMBEDDER,
    user_id: str | None = None,
    auth: Auth | None = None,
) -> Server[Any]:
    """An MCP server over a store (a store object, a URL or SQLite path for
    :func:`~noted.open_store`) or over ``memory``'s store. Writes are recorded with the
    actor ``"mcp"``. ``embedder`` (the local model by default, as for :class:`Memory`;
    ``None`` for keyword search only) makes semantic and hybrid search available.

    Without ``auth`` every call is about ``user_id`` (``"default"`` when omitted). With
    ``auth`` (for streamable HTTP) each call's ``Authorization`` header decides: a user
    token reaches its own user only (and not once the store has it revoked), and the admin
    key may name a user (``user_id`` then being the admin's default).

    Each call's store work runs in a worker thread, so that a call waiting on the store
    holds up no other. Without ``auth`` (one client: stdio) the client's writes are
    applied one at a time, in the order it sent them; with ``auth`` every request stands
    alone, as HTTP requests do.
    """
    if auth is not None and not isinstance(auth, Auth):
        raise UserError(f"auth must be an Auth, got {type(auth).__name__}")
    served = _mcp_memory(db, memory, embedder)
    if auth is not None:  # tokens revoked on the store are refused here too
        auth = auth.checking_revocations_of(served.db)
    scope = Scope(require_id("user_id", user_id or DEFAULT_USER_ID), auth)
    handlers = _Handlers(served, scope)
    return Server(
        "noted",
        version=__version__,
        title="noted memories",
        instructions=INSTRUCTIONS,
        on_list_tools=handlers.list_tools,
        on_call_tool=handlers.call_tool,
        on_list_resources=handlers.list_resources,
        on_read_resource=handlers.read_resource,
        on_list_prompts=handlers.list_prompts,
        on_get_prompt=handlers.get_prompt,
    )
