"""What the routes' signatures cannot say in the OpenAPI schema, added to it once.

- ``user_id`` is required with the admin key on the routes about one memory (a user token
  implies its own user): declared required, with the 400 the admin gets without it.
- Text fields take no NUL character (no store keeps one), and names and texts that must
  not be empty must not be blank either: declared as patterns.
- The 415 of the routes that take a body, answered when it is not sent as JSON.
- Links from ``GET /sessions`` to a session, and from a created memory to the routes about
  it, so that a client (or a stateful test) can follow them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from fastapi import FastAPI

__all__ = ["NO_SPACE_AROUND", "amend_openapi"]

Schema = dict[str, Any]

NEEDS_USER: Final = (
    ("get", "/memories/{memory_id}"),
    ("get", "/memories/{memory_id}/history"),
    ("delete", "/memories/{memory_id}"),
    ("get", "/memory"),
    ("get", "/memory_history"),
    ("delete", "/memory"),
)
USER_REQUIRED: Final = (
    "Required with the admin key (the memory's user); with a user token it may be left "
    "out and must otherwise be the token's user"
)
NO_USER: Final = {
    "description": "user_id was left out with the admin key (or the request breaks another "
    "rule that the schema cannot express)",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
NOT_JSON: Final = {
    "description": "The body was not sent as JSON (Content-Type: application/json)",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
NO_NUL: Final = "^[^\\u0000]*$"
# what str.strip() removes: a name or a text made only of these is blank, and refused
_BLANK: Final = (
    "\\t\\n\\u000b\\f\\r\\u001c-\\u001f \\u0085\\u00a0\\u1680\\u2000-\\u200a"
    "\\u2028\\u2029\\u202f\\u205f\\u3000"
)
NOT_BLANK: Final = f"^[^\\u0000]*[^\\u0000{_BLANK}][^\\u0000]*$"
NO_SPACE_AROUND: Final = f"^[^\\u0000{_BLANK}]([^\\u0000]*[^\\u0000{_BLANK}])?$"
"""The pattern of a user id that new data is written under: no whitespace around it."""


def amend_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` answer the amended schema (built once, then cached)."""
    build: Callable[[], Schema] = app.openapi

    def openapi() -> Schema:
        if app.openapi_schema is None:
            schema = build()
            _amend(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _amend(schema: Schema) -> None:
    paths: dict[str, Schema] = schema["paths"]
    for method, path in NEEDS_USER:
        operation = paths[path][method]
        for parameter in operation["parameters"]:
            if parameter["name"] == "user_id":
                parameter["required"] = True
                parameter["schema"] = _not_null(parameter["schema"])
                parameter["description"] = USER_REQUIRED
        operation["responses"]["400"] = NO_USER
    bulk = schema["components"]["schemas"]["BulkDelete"]
    bulk["required"] = [*bulk.get("required", []), "user_id"]
    bulk["properties"]["user_id"] = _not_null(bulk["properties"]["user_id"])
    bulk["properties"]["user_id"]["description"] = USER_REQUIRED
    paths["/memories"]["delete"]["responses"]["400"] = NO_USER
    paths["/memories"]["get"]["responses"]["400"] = {
        **NO_USER,
        "description": "search_content was given without user_id, with the admin key",
    }
    for path in ("/memories/{memory_id}", "/memory"):
        paths[path]["patch"]["responses"]["400"] = {
            **NO_USER,
            "description": "Nothing to change, no user_id with the admin key, or one user_id "
            "in the query and another in the body",
        }
    _links(paths)
    components = schema["components"]["schemas"]
    for operations in paths.values():
        for operation in operations.values():
            _no_nul(operation.get("parameters", []))
            if "requestBody" in operation:
                operation["responses"]["415"] = NOT_JSON
            for content in operation.get("requestBody", {}).get("content", {}).values():
                ref = content["schema"].get("$ref", "")
                _no_nul(components[ref.rsplit("/", 1)[-1]] if ref else content["schema"])


def _not_null(schema: Schema) -> Schema:
    """``X | None`` as ``X``."""
    options = [s for s in schema.get("anyOf", ()) if s.get("type") != "null"]
    if len(options) == 1:
        return {**{k: v for k, v in schema.items() if k != "anyOf"}, **options[0]}
    return schema


def _operation_id(paths: dict[str, Schema], method: str, path: str) -> str:
    return str(paths[path][method]["operationId"])


def _links(paths: dict[str, Schema]) -> None:
    session = {
        "session_id": "$response.body#/data/0/session_id",
        "user_id": "$response.body#/data/0/user_id",
    }
    paths["/sessions"]["get"]["responses"]["200"]["links"] = {
        f"{verb.title()}Session": {
            "operationId": _operation_id(paths, verb, "/sessions/{session_id}"),
            "parameters": session,
        }
        for verb in ("get", "delete")
    }
    memory = {"memory_id": "$response.body#/memory_id", "user_id": "$response.body#/user_id"}
    paths["/memories"]["post"]["responses"]["201"]["links"] = {
        name: {"operationId": _operation_id(paths, verb, path), "parameters": memory}
        for name, verb, path in (
            ("GetMemory", "get", "/memories/{memory_id}"),
            ("ChangeMemory", "patch", "/memories/{memory_id}"),
            ("DeleteMemory", "delete", "/memories/{memory_id}"),
        )
    }


def _no_nul(node: Any) -> None:
    """Give every plain string schema of a request the pattern that keeps NUL characters
    (and, where it must not be empty, blank text) out."""
    if isinstance(node, dict):
        if node.get("type") == "string" and not node.keys() & {"pattern", "format", "enum"}:
            node["pattern"] = NOT_BLANK if node.get("minLength", 0) >= 1 else NO_NUL
        for value in node.values():
            _no_nul(value)
    elif isinstance(node, list):
        for value in node:
            _no_nul(value)
