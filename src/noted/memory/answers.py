"""Reading a model's JSON answer: the JSON itself, inside a markdown code fence, or among
the words small models put around it.

Models asked for JSON only often add to it: a sentence before ("Here is the JSON:"), a
code fence with a remark after it, an explanation after the object, or the answer in
Python's spelling (single quotes, ``True``/``None``, a trailing comma). The JSON is read
from where it is; what cannot be read as one is still a :class:`ValueError`.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from noted._json import decode_json

__all__ = ["fold_keys", "json_values", "load_json_answer", "pick", "shown_number"]

_FENCE = re.compile(r"```[ \t]*(?:[A-Za-z0-9]+)?[ \t]*\n?(.*?)```", re.DOTALL)
_OPEN = "{["
_BETWEEN = " \t\r\n,"
_NAMES = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
_NUMBER = re.compile(r"(?:memory|mem|id|no\.?|number)?\s*[#\[(]?\s*(\d{1,9})\s*[\])]?\.?")


def load_json_answer(answer: str | None) -> Any:
    """The answer's JSON value (the first, when it holds several); ValueError when it
    holds none, or JSON nested too deeply."""
    return json_values(answer)[0]


def json_values(answer: str | None) -> list[Any]:
    """The JSON values a model answer holds, in order: the whole answer, else the first
    code fence's body, else those that follow one another from its first ``{`` or ``[``
    (words before and after them are left out). A value written as a Python literal
    counts. ValueError when it holds none."""
    text = (answer or "").strip()
    if not text:
        raise ValueError("the answer is empty")
    try:
        return [decode_json(text)]
    except ValueError:
        pass
    fenced = _FENCE.search(text)
    for candidate in ([fenced.group(1).strip()] if fenced else []) + [text]:
        values = _values(candidate)
        if values:
            return values
    raise ValueError("the answer holds no JSON")


def _values(text: str) -> list[Any]:
    """The JSON values written one after another (apart by spaces, line breaks or
    commas) from the first opening bracket of ``text``; [] when there is none, or when
    one of them is not whole JSON (the answer was cut off or is broken: none of it is
    read)."""
    starts = [i for i in (text.find(c) for c in _OPEN) if i >= 0]
    if not starts:
        return []
    decoder = json.JSONDecoder()
    values: list[Any] = []
    position = min(starts)
    while position < len(text) and text[position] in _OPEN:
        try:
            value, position = decoder.raw_decode(text, position)
        except (ValueError, RecursionError):
            return _literal(text, position) if not values else []
        values.append(value)
        while position < len(text) and text[position] in _BETWEEN:
            position += 1
    return values


def _literal(text: str, start: int) -> list[Any]:
    """The value at ``start`` written as a Python literal (up to the last bracket that
    closes what ``start`` opens), where JSON names (true, null) may stand for Python's."""
    end = text.rfind("}" if text[start] == "{" else "]") + 1
    try:
        tree = ast.parse(text[start:end], mode="eval")
        return [_evaluate(tree.body)]
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []


def _evaluate(node: ast.expr) -> Any:
    """A literal's value: dicts with text keys, lists, tuples (as lists), texts, numbers
    and the names of true, false and null; ValueError for anything else."""
    if isinstance(node, ast.Dict):
        keys = [_evaluate(k) if k is not None else None for k in node.keys]
        if not all(isinstance(k, str) for k in keys):
            raise ValueError("not a JSON object key")
        return dict(zip(keys, (_evaluate(v) for v in node.values), strict=True))
    if isinstance(node, ast.List | ast.Tuple):
        return [_evaluate(e) for e in node.elts]
    if isinstance(node, ast.Constant) and isinstance(node.value, str | int | float | None):
        return node.value
    if isinstance(node, ast.Name) and node.id in _NAMES:
        return _NAMES[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _evaluate(node.operand)
        if type(value) in (int, float):
            return -value
    raise ValueError("not a JSON literal")


def shown_number(raw: object) -> int | None:
    """The memory number an answer's id names: an integer, or a text that is one as small
    models write it ("1", "#1", "[1]", "memory 1"); None when it names none."""
    if type(raw) is int:
        return raw
    if type(raw) is float and raw.is_integer():
        return int(raw)
    if isinstance(raw, str) and (found := _NUMBER.fullmatch(raw.strip().casefold())):
        return int(found.group(1))
    return None


def fold_keys(item: Mapping[Any, Any]) -> dict[str, Any]:
    """``item`` with its keys in lower case (the first of two that differ only in case)."""
    folded: dict[str, Any] = {}
    for key, value in item.items():
        if isinstance(key, str):
            folded.setdefault(key.casefold(), value)
    return folded


def pick(fields: Mapping[str, Any], names: Sequence[str]) -> Any:
    """The value of the first of ``names`` that ``fields`` has (None when none)."""
    return next((fields[n] for n in names if n in fields), None)
