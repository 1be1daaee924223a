"""Reading mem0's JSON: what ``Memory.get_all`` returns (``{"results": [...]}``, or a plain
list from older versions) and mem0's exports, as an ImportPlan of user memories.

Each item: ``id``, ``memory``, ``user_id`` (``agent_id``, ``run_id`` when set), ``metadata``
(a dict; its ``topics`` or ``categories`` list gives the topics), ``created_at`` and
``updated_at`` (ISO 8601, mem0 writes its local time with an offset).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from noted._json import decode_json
from noted.errors import UserError
from noted.importers.plan import ImportPlan
from noted.importers.values import RowError, timestamp
from noted.schema import UserMemory

__all__ = ["read_mem0"]


def _items(data: Any, name: str) -> list[Any]:
    if isinstance(data, dict):
        for key in ("results", "memories"):
            if isinstance(data.get(key), list):
                return list(data[key])
        raise UserError(f"{name}: expected a list of memories or {{'results': [...]}}")
    if isinstance(data, list):
        return data
    raise UserError(f"{name}: expected a list of memories or {{'results': [...]}}")


def _memory(item: Any, at: str) -> UserMemory:
    if not isinstance(item, dict):
        raise RowError(f"{at}: not a JSON object")
    if not isinstance(item.get("id"), str) or not isinstance(item.get("memory"), str):
        raise RowError(f"{at}: a memory needs a string 'id' and 'memory'")
    metadata = item.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise RowError(f"{at}: 'metadata' is not an object")
    topics = metadata.get("topics") or item.get("categories") or metadata.get("categories") or []
    updated = timestamp(item.get("updated_at"), at, "updated_at")
    created = timestamp(item.get("created_at"), at, "created_at")
    try:
        return UserMemory(
            item["memory"],
            memory_id=item["id"],
            user_id=item.get("user_id"),
            agent_id=item.get("agent_id"),
            session_id=item.get("run_id"),
            topics=topics,
            input=metadata.get("input") if isinstance(metadata.get("input"), str) else None,
            created_at=created,
            updated_at=updated or created,
        )
    except UserError as exc:
        raise RowError(f"{at}: {exc}") from None


def read_mem0(path: str | Path) -> ImportPlan:
    file = Path(path)
    try:
        data = decode_json(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"cannot read {file}: {exc}") from None
    except ValueError as exc:
        raise UserError(f"{file}: not valid JSON: {exc}") from None
    plan = ImportPlan(str(file))
    for n, item in enumerate(_items(data, str(file))):
        ident = item.get("id") if isinstance(item, dict) else None
        plan.memories.append(_memory(item, f"{file}, item {n} (id={ident!r})"))
    return plan
