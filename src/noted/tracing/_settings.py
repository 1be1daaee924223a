"""What spans may show: the OpenInference privacy switches, and noted's own for memories."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

from noted.errors import UserError

__all__ = ["REDACTED", "TraceSettings"]

REDACTED = "__REDACTED__"


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True, slots=True)
class TraceSettings:
    """Which values spans leave out. Each field is read from its environment variable
    when not given: ``OPENINFERENCE_<FIELD>`` (the variables OpenInference instrumentors
    honour), and ``NOTED_TRACE_HIDE_MEMORIES`` for ``hide_memories``.

    - ``hide_inputs`` / ``hide_outputs``: every span's input / output value, and the
      model calls' input / output messages;
    - ``hide_input_messages`` / ``hide_output_messages``: the model calls' messages;
    - ``hide_input_text`` / ``hide_output_text``: only the text of those messages;
    - ``hide_llm_invocation_parameters``, ``hide_llm_tools``: the model settings and the
      tool definitions sent with each call;
    - ``hide_embeddings_text`` / ``hide_embeddings_vectors``: the texts and the vectors of
      the embedding spans (``OPENINFERENCE_HIDE_EMBEDDING_VECTORS``, the older name of the
      second variable, is read too); the texts are hidden by ``hide_inputs`` and
      ``hide_memories`` too, the vectors by ``hide_memories``;
    - ``hide_memories``: the text of memories (selected, written, searched, offered to the
      model as tool results), replaced by ``__REDACTED__``; ids, scores and counts stay.
      The memories the agent puts in its system prompt are part of the model's input
      messages: hide those with ``hide_input_messages`` or ``hide_input_text``.
    """

    hide_inputs: bool | None = None
    hide_outputs: bool | None = None
    hide_input_messages: bool | None = None
    hide_output_messages: bool | None = None
    hide_input_text: bool | None = None
    hide_output_text: bool | None = None
    hide_llm_invocation_parameters: bool | None = None
    hide_llm_tools: bool | None = None
    hide_embeddings_text: bool | None = None
    hide_embeddings_vectors: bool | None = None
    hide_memories: bool | None = None

    @classmethod
    def resolve(
        cls, given: TraceSettings | None = None, env: Mapping[str, str] | None = None
    ) -> TraceSettings:
        """``given`` with every unset switch read from the environment."""
        env = os.environ if env is None else env
        values: dict[str, bool] = {}
        for item in fields(cls):
            value = getattr(given, item.name) if given is not None else None
            if value is None:
                variable = (
                    "NOTED_TRACE_HIDE_MEMORIES"
                    if item.name == "hide_memories"
                    else "OPENINFERENCE_" + item.name.upper()
                )
                value = _flag(env, variable) or (
                    item.name == "hide_embeddings_vectors"
                    and _flag(env, "OPENINFERENCE_HIDE_EMBEDDING_VECTORS")
                )
            values[item.name] = bool(value)
        return cls(**values)

    @classmethod
    def from_config(cls, config: object, given: TraceSettings | None = None) -> TraceSettings:
        """``given`` with its unset switches taken from ``config``, an OpenInference
        ``TraceConfig`` (what ``instrument(config=...)`` of every OpenInference instrumentor
        takes), read by name: ``hide_inputs``, ``hide_outputs``, ..., ``hide_llm_tools``,
        ``hide_embeddings_text``, ``hide_embeddings_vectors`` (or its older name
        ``hide_embedding_vectors``). ``TraceConfig`` has no ``hide_memories``: that one
        still comes from ``given`` or the environment."""
        found = {
            item.name: value
            for item in fields(cls)
            if isinstance(value := getattr(config, item.name, None), bool)
        }
        if getattr(config, "hide_embedding_vectors", None) is True:
            found["hide_embeddings_vectors"] = True
        if not found:
            raise UserError(
                f"config must be an OpenInference TraceConfig (with hide_inputs, "
                f"hide_outputs, ...), not {type(config).__name__}"
            )
        given = cls() if given is None else given
        return replace(
            given, **{name: v for name, v in found.items() if getattr(given, name) is None}
        )

    def embedding_texts(self) -> bool:
        """Whether embedding spans show their texts: none with ``hide_embeddings_text``,
        nor with ``hide_inputs`` (a query is what was asked) or ``hide_memories`` (a
        memory's text is a memory), whichever kind the span embeds."""
        return not (self.hide_embeddings_text or self.hide_inputs or self.hide_memories)

    def embedding_vectors(self) -> bool:
        """Whether embedding spans show their vectors: not with ``hide_embeddings_vectors``,
        nor where the texts are hidden for the memories (a vector gives much of its text
        away)."""
        return not (self.hide_embeddings_vectors or self.hide_memories)

    def input_messages(self) -> bool:
        return not (self.hide_inputs or self.hide_input_messages)

    def output_messages(self) -> bool:
        return not (self.hide_outputs or self.hide_output_messages)
