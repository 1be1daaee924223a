"""LlamaCpp without a model file: its settings, errors, registry name and translations.

All but the missing-extra test need llama-cpp-python (the ``local`` dependency group, built
from source), so they are marked ``local_model`` and run by ``make test-local`` with the
runs on a real GGUF model in test_local_model.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from noted.errors import MissingDependencyError, UserError
from noted.memory.operations import Permissions, operations_schema
from noted.memory.summary import SUMMARY_SCHEMA
from noted.memory.two_calls import FACTS_SCHEMA
from noted.models import LlamaCpp, get_model
from noted.models.llamacpp import _chat_messages, _read_tool_answer, _tools_schema
from noted.models.types import Message, ModelRequest, ToolCall, ToolDefinition
from noted.schema import UserMemory

WEATHER = ToolDefinition(
    "get_weather",
    "The weather in a city.",
    {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
)


@pytest.fixture
def gguf(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF")  # only its existence is checked before the first call
    return path


@pytest.mark.local_model
def test_settings_are_checked_and_the_name_defaults_to_the_file(gguf: Path) -> None:
    model = LlamaCpp(gguf)
    assert model.id == "tiny.gguf"
    assert model.temperature == 0.0
    assert LlamaCpp(str(gguf), id="mine").id == "mine"
    for bad in ({"n_ctx": 0}, {"max_tokens": "9"}, {"n_threads": 0}, {"temperature": "hot"}):
        with pytest.raises(UserError):
            LlamaCpp(gguf, **bad)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="path of a .gguf file"):
        LlamaCpp("  ")


@pytest.mark.local_model
def test_a_requests_max_tokens_lowers_the_models(gguf: Path) -> None:
    ask = [Message("user", "hi")]
    assert LlamaCpp(gguf)._params(ModelRequest(ask))["max_tokens"] == 1024
    assert LlamaCpp(gguf)._params(ModelRequest(ask, max_tokens=200))["max_tokens"] == 200
    assert (
        LlamaCpp(gguf, max_tokens=100)._params(ModelRequest(ask, max_tokens=200))["max_tokens"]
        == 100
    )


def test_a_missing_file_or_extra_is_a_clear_error(
    tmp_path: Path, gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(UserError, match="no GGUF model file at .*missing.gguf"):
        LlamaCpp(tmp_path / "missing.gguf")
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as if the extra were not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'noted\[local\]'"):
        LlamaCpp(gguf)


@pytest.mark.local_model
def test_a_model_string_names_the_file(gguf: Path) -> None:
    model = get_model(f"llamacpp:{gguf}")
    assert isinstance(model, LlamaCpp)
    assert model.model_path == gguf
    with pytest.raises(UserError, match="no GGUF model file"):
        get_model("llamacpp:/nowhere/model.gguf")


@pytest.mark.local_model
def test_the_manager_and_summarizer_schemas_compile_to_grammars() -> None:
    from llama_cpp.llama_grammar import LlamaGrammar

    shown = {1: UserMemory("User lives in Lisbon", memory_id="m1")}
    every = Permissions(add=True, update=True, delete=True, clear=True)
    for schema in (
        operations_schema({}, Permissions()),
        operations_schema(shown, Permissions()),
        operations_schema(shown, every),
        operations_schema({}, Permissions(add=False)),
        operations_schema(shown, Permissions(), ask_facts=False),
        FACTS_SCHEMA,
        SUMMARY_SCHEMA,
        _tools_schema([WEATHER]),
    ):
        LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)


@pytest.mark.local_model
def test_tool_turns_are_plain_chat_turns_and_answers_become_calls() -> None:
    call = ToolCall("get_weather", {"city": "Oslo"}, id="c1")
    turns = _chat_messages(
        [
            Message("system", "Be brief."),
            Message("user", "Weather in Oslo?"),
            Message("assistant", None, tool_calls=[call]),
            Message("tool", "4 C, rain", tool_call_id="c1", name="get_weather"),
        ]
    )
    assert [t["role"] for t in turns] == ["system", "user", "assistant", "user"]
    assert json.loads(turns[2]["content"]) == {"tool": "get_weather", "arguments": {"city": "Oslo"}}
    assert turns[3]["content"] == "Result of get_weather: 4 C, rain"

    text, calls = _read_tool_answer(
        '{"tool": "get_weather", "arguments": {"city": "Oslo"}}', [WEATHER]
    )
    assert text is None
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", {"city": "Oslo"})]
    assert _read_tool_answer('{"answer": "It rains."}', [WEATHER]) == ("It rains.", [])
    assert _read_tool_answer('{"answer": "cut sh', [WEATHER]) == ('{"answer": "cut sh', [])
    assert _read_tool_answer('{"tool": "rm_rf", "arguments": {}}', [WEATHER])[1] == []
