"""Plain Python functions as tools: a JSON schema from the signature and docstring, and
execution that turns every failure into text the model can read."""

from __future__ import annotations

import asyncio
import enum
import functools
import inspect
import json
import logging
import re
import time
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from noted.errors import ModelOutputError, StoreError, UserError
from noted.models.types import ModelResponse, ToolCall, ToolDefinition, valid_text
from noted.sessions import ToolExecution
from noted.tracing import _hooks as tracing

log = logging.getLogger("noted.agent")

__all__ = ["Tool", "ask_again", "execute_tool_calls", "to_tools"]

_SCALARS: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
}
# A tool's signature is read when it is defined and checked against every call.
_cached_signature = functools.lru_cache(maxsize=1024)(inspect.signature)


def _signature(fn: Callable[..., Any]) -> inspect.Signature:
    try:
        return _cached_signature(fn)
    except TypeError:  # an unhashable callable object: read it afresh
        return inspect.signature(fn)


_SECTION = re.compile(
    r"^\s*(Args|Arguments|Parameters|Params|Returns?|Raises|Yields|Examples?)\s*:\s*$"
)
_ARG_LINE = re.compile(r"^\s*\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_REST_PARAM = re.compile(r"^\s*:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")


def json_schema(annotation: Any) -> dict[str, Any]:
    """The JSON schema of a type annotation (what tools accept: scalars, lists, dicts,
    unions, Optional, Literal and Enum; anything else is left open)."""
    if annotation in _SCALARS:
        return dict(_SCALARS[annotation])
    if annotation is Any or annotation is inspect.Parameter.empty:
        return {}
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return {"enum": [member.value for member in annotation]}
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (Union, types.UnionType):
        options = [json_schema(a) for a in args if a is not type(None)]
        schema = options[0] if len(options) == 1 else {"anyOf": options}
        return {"anyOf": [schema, {"type": "null"}]} if type(None) in args else schema
    if origin in (list, tuple, set, frozenset, Sequence) or annotation in (list, tuple, set):
        items = json_schema(args[0]) if args else {}
        return {"type": "array", "items": items} if items else {"type": "array"}
    if origin in (dict, Mapping) or annotation is dict:
        values = json_schema(args[1]) if len(args) == 2 else {}
        return {"type": "object", "additionalProperties": values} if values else {"type": "object"}
    return {}


def _parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """The description (text before the first section) and per-argument descriptions
    (Google style ``Args:`` entries, or reST ``:param name:`` lines)."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    for line in lines:
        header = _SECTION.match(line)
        rest = _REST_PARAM.match(line)
        if header:
            section, current = header.group(1).lower(), None
        elif rest:
            current = rest.group(1)
            params[current] = rest.group(2).strip()
        elif section in ("args", "arguments", "parameters", "params"):
            entry = _ARG_LINE.match(line)
            if entry and len(line) - len(line.lstrip()) <= 4:
                current = entry.group(1)
                params[current] = entry.group(2).strip()
            elif current and line.strip():
                params[current] = f"{params[current]} {line.strip()}".strip()
        elif section is None and not line.lstrip().startswith(":"):
            summary.append(line)
    return "\n".join(summary).strip(), params


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call, with the schema it is shown."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    function: Callable[..., Any] = field(repr=False)

    @classmethod
    def from_function(
        cls, fn: Callable[..., Any], *, name: str | None = None, description: str | None = None
    ) -> Tool:
        if not callable(fn):
            raise UserError(f"a tool must be a function, got {fn!r}")
        tool_name: str = name if name is not None else str(getattr(fn, "__name__", ""))
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]{0,63}", tool_name):
            raise UserError(
                f"tool name must be 1-64 letters, digits, '_' or '-', got {tool_name!r}"
            )
        doc_text, doc_params = _parse_docstring(inspect.getdoc(fn))
        try:
            hints = get_type_hints(fn)
        except (NameError, TypeError):
            hints = {}
        properties: dict[str, Any] = {}
        required: list[str] = []
        for param in _signature(fn).parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            schema = json_schema(hints.get(param.name, param.annotation))
            if param.name in doc_params:
                schema["description"] = doc_params[param.name]
            if param.default is param.empty:
                required.append(param.name)
            elif param.default is None or isinstance(param.default, str | int | float | bool):
                schema["default"] = param.default
            properties[param.name] = schema
        parameters: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            parameters["required"] = required
        about: str = description if description is not None else (doc_text or tool_name)
        return cls(tool_name, about, parameters, fn)

    def definition(self) -> ToolDefinition:
        return ToolDefinition(self.name, self.description, self.parameters)


def to_tools(items: Sequence[Tool | Callable[..., Any]] | None) -> list[Tool]:
    tools = [i if isinstance(i, Tool) else Tool.from_function(i) for i in items or ()]
    names = [t.name for t in tools]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UserError(f"two tools share the name {', '.join(duplicates)}")
    return tools


def _as_text(value: object) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


@dataclass(frozen=True, slots=True)
class _Ran:
    """A tool call's execution, and the exception it failed with (None when it did not
    fail): the model reads the failure as text, its span records the exception."""

    execution: ToolExecution
    error: BaseException | None = None


@tracing.traced("tool")
async def _run(tools: Mapping[str, Tool], call: ToolCall) -> _Ran:
    started = time.perf_counter()

    def done(result: str, error: BaseException | None = None) -> _Ran:
        # as the model's own answer: a tool's text (a file name os.listdir decoded, an
        # exception's message) with an unpaired surrogate could not be stored with the run
        elapsed = time.perf_counter() - started
        failed = error is not None
        execution = ToolExecution(
            call.id, call.name, call.arguments, valid_text(result), failed, elapsed
        )
        return _Ran(execution, error)

    def refused(message: str) -> _Ran:  # the model's mistake: no exception was raised
        return done(f"Error: {message}", UserError(message))

    tool = tools.get(call.name)
    if tool is None:
        known = ", ".join(sorted(tools)) or "none"
        return refused(f"there is no tool named {call.name!r} (tools: {known})")
    if call.invalid_arguments is not None:
        return refused(f"the arguments must be a JSON object, got: {call.invalid_arguments[:500]}")
    try:
        _signature(tool.function).bind(**call.arguments)
    except TypeError as exc:
        return done(f"Error: wrong arguments for {call.name}: {exc}", exc)
    try:
        if inspect.iscoroutinefunction(tool.function):
            value = await tool.function(**call.arguments)
        else:
            value = await asyncio.to_thread(tool.function, **call.arguments)
            if inspect.isawaitable(value):
                value = await value
    except StoreError as exc:  # where the store is (a file path, a host) is for the log
        log.warning("tool %s failed: %s", call.name, exc)
        return done("Error: StoreError: the store cannot answer now (the log says why)", exc)
    except Exception as exc:  # noqa: BLE001 - a tool's failure is reported to the model
        return done(f"Error: {type(exc).__name__}: {exc}", exc)
    return done(_as_text(value))


async def _execute(tools: Mapping[str, Tool], call: ToolCall) -> ToolExecution:
    return (await _run(tools, call)).execution


async def execute_tool_calls(
    tools: Mapping[str, Tool], calls: Sequence[ToolCall]
) -> list[ToolExecution]:
    """Run the calls of one model answer concurrently; results in the calls' order."""
    if len(calls) == 1:
        return [await _execute(tools, calls[0])]
    return list(await asyncio.gather(*(_execute(tools, call) for call in calls)))


def ask_again(response: ModelResponse, asked_again: bool) -> bool:
    """Whether the model is to be asked again for an answer whose tool call its provider
    could not read (:attr:`~noted.models.types.ModelResponse.failed_call`): once, when
    the answer said nothing. Raises :class:`~noted.errors.ModelOutputError` when it was
    asked again already, or the answer said something (the caller has it)."""
    if not response.failed_call or response.tool_calls:
        return False
    if asked_again or response.content:
        times = "twice in a row" if asked_again else "after its text"
        raise ModelOutputError(
            f"the model made a tool call (or an answer) its provider could not read "
            f"({response.finish_reason}) {times}; no answer was given"
        )
    log.info("the model's tool call could not be read (%s): asking again", response.finish_reason)
    return True


def stop_reason(response: ModelResponse) -> str:
    """How a run whose last answer is ``response``, an answer without tool calls, ended
    (``RunResult.stop_reason``): ``max_tokens`` when it was cut off at the token limit,
    ``refused`` when its provider refused or withheld it, ``tool_limit`` when its provider
    stopped the model's tool calls, else ``end``."""
    if response.cut_short:
        return "max_tokens"
    if response.refused:
        return "refused"
    return "tool_limit" if response.tool_limited else "end"
