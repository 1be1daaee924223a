"""How much a model that thinks may think in a call whose answer noted caps.

Gemini 2.5 and 3 models think by default, and OpenAI's reasoning models (o1 to gpt-5)
reason, before they answer; the thinking counts against the answer's output limit. A
request's own ``max_tokens`` (the memory manager's 256, for example) is meant for the
answer: a model that thought through all of it would answer nothing. So for such a
request a model named in the tables here is asked to think little (Gemini's
``thinkingBudget`` or ``thinkingLevel``, OpenAI's ``reasoning_effort``) and its output
limit is raised by an allowance for that thinking. The model's own ``max_tokens`` stays
the ceiling, and a thinking setting of the model's own (its ``thinking_budget``,
``thinking_level`` or ``reasoning_effort``) is always the one sent.

A model not named here (another vendor's, or one too new to be known) is sent nothing
more: its own thinking setting is the way to bound it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from noted.errors import UserError
from noted.models.types import ModelResponse, Usage, UsageDelta

__all__ = [
    "Thinking",
    "checked_level",
    "effort_allowance",
    "gemini_thinking",
    "openai_effort",
    "openai_reasoning",
    "output_limit",
    "warn_if_thought_out",
]

log = logging.getLogger("noted.models")


@dataclass(frozen=True, slots=True)
class Thinking:
    """How a capped request bounds a model's thinking: Gemini's thinking ``budget`` in
    tokens, or a ``level`` (Gemini's ``thinkingLevel``, OpenAI's ``reasoning_effort``),
    or neither (the model takes no setting); and ``allowance``, the tokens added to the
    request's cap for the thinking."""

    budget: int | None = None
    level: str | None = None
    allowance: int = 0


# Tokens allowed for thinking at a level (or an effort), and for thinking whose amount
# no budget bounds (a level not listed, Gemini's dynamic budget -1, a model whose effort
# cannot be set).
_LEVEL_ALLOWANCE: Final = {"none": 0, "minimal": 1024, "low": 2048}
UNBOUNDED_ALLOWANCE: Final = 4096


def effort_allowance(level: str) -> int:
    """The tokens allowed for thinking at ``level`` (a Gemini level or an OpenAI effort)."""
    return _LEVEL_ALLOWANCE.get(level.casefold(), UNBOUNDED_ALLOWANCE)


def _low(level: str) -> Thinking:
    return Thinking(level=level, allowance=effort_allowance(level))


# Gemini, by model-name prefix (the first that names the model counts). 2.5 Flash and
# Flash-Lite can think not at all (budget 0); 2.5 Pro's least budget is 128; Gemini 3
# sets its thinking by level.
_GEMINI: Final[tuple[tuple[str, Thinking], ...]] = (
    ("gemini-2.5-pro", Thinking(budget=128, allowance=128)),
    ("gemini-2.5-flash", Thinking(budget=0)),
    ("gemini-3", _low("low")),
)
# Models of those families that are no text models (image, speech and live-audio ones)
_GEMINI_OTHERS: Final = ("image", "tts", "audio", "live")

# OpenAI's reasoning models, by model-name prefix (the first that names the model
# counts). o1-mini and o1-preview take no reasoning_effort; the first gpt-5 models go
# down to "minimal", gpt-5.1 on and the codex models to "low" at least.
_OPENAI: Final[tuple[tuple[str, Thinking], ...]] = (
    ("o1-mini", Thinking(allowance=UNBOUNDED_ALLOWANCE)),
    ("o1-preview", Thinking(allowance=UNBOUNDED_ALLOWANCE)),
    ("o1", _low("low")),
    ("o3", _low("low")),
    ("o4", _low("low")),
    ("gpt-5-codex", _low("low")),
    ("gpt-5.", _low("low")),
    ("gpt-5", _low("minimal")),
)
# gpt-5 models whose effort is fixed or narrower (the chat models, the pro models): no
# effort is sent, the allowance is kept.
_OPENAI_FIXED: Final = ("-chat", "-pro")


def _named(model_id: str, prefix: str) -> bool:
    """Whether ``model_id`` is the model ``prefix`` names or one of its versions
    (``prefix`` followed by ``-``; a prefix ending in ``.`` names every minor version)."""
    if prefix.endswith("."):
        return model_id.startswith(prefix)
    return model_id == prefix or model_id.startswith(prefix + "-")


def _found(model_id: str, table: tuple[tuple[str, Thinking], ...]) -> Thinking | None:
    name = model_id.strip().casefold()
    return next((thinking for prefix, thinking in table if _named(name, prefix)), None)


def gemini_thinking(model_id: str) -> Thinking | None:
    """How a capped request bounds this Gemini model's thinking (None: not known to
    think, or not known)."""
    name = model_id.strip().casefold().removeprefix("models/")
    if any(other in name for other in _GEMINI_OTHERS):
        return None
    return _found(name, _GEMINI)


def openai_reasoning(model_id: str) -> Thinking | None:
    """How a capped request bounds this OpenAI model's reasoning (None: not known as a
    reasoning model)."""
    found = _found(model_id, _OPENAI)
    name = model_id.casefold()
    if found is not None and name.startswith("gpt-5") and any(m in name for m in _OPENAI_FIXED):
        return Thinking(allowance=found.allowance)
    return found


def openai_effort(effort: str | None, model_id: str, capped: bool) -> tuple[str | None, int]:
    """The ``reasoning_effort`` to send (None: none) and the tokens a request's cap allows
    for reasoning: the model's own ``effort`` when set, else, for a request that caps its
    answer (``capped``), what :func:`openai_reasoning` knows of the model."""
    if effort is not None:
        return effort, effort_allowance(effort)
    known = openai_reasoning(model_id) if capped else None
    return (None, 0) if known is None else (known.level, known.allowance)


def checked_level(name: str, value: object) -> str | None:
    """The setting ``name`` (a thinking level, a reasoning effort) as it is sent: its text
    stripped, or None; UserError when it is neither text nor None."""
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise UserError(f"{name} must be a level such as 'low', got {value!r}")
    return value.strip() if value is not None else None


def output_limit(model_cap: int | None, request_cap: int | None, allowance: int) -> int | None:
    """The output limit to send: the lower of the model's own cap and the request's cap
    with ``allowance`` tokens of thinking added (None: no limit)."""
    limits = [model_cap, None if request_cap is None else request_cap + allowance]
    known = [n for n in limits if n is not None]
    return min(known) if known else None


def warn_if_thought_out(
    provider: str,
    model_id: str,
    usage: Usage | UsageDelta,
    finish_reason: str | None,
    setting: str,
) -> None:
    """Log a warning for an answer cut off at its token limit after thinking took most
    of its output (at least half), naming ``setting``, the model's setting that bounds
    its thinking."""
    if not ModelResponse(finish_reason=finish_reason).cut_short:
        return
    thinking, output = usage.reasoning_tokens, usage.output_tokens
    if thinking <= 0 or output is None or thinking * 2 < output:
        return
    log.warning(
        "%s %s was cut off at its token limit after thinking for %d of its %d output "
        "tokens: lower its thinking (%s) or raise max_tokens",
        provider,
        model_id,
        thinking,
        output,
        setting,
    )
