"""``llm.system`` and ``llm.provider`` of a model call's span, as the OpenInference
semantic conventions define them: the API the model speaks, and who hosts it."""

from __future__ import annotations

import pytest
from openinference.semconv.trace import (
    OpenInferenceLLMProviderValues,
    OpenInferenceLLMSystemValues,
)

from noted.models import Claude, Gemini, Ollama, OpenAIChat
from noted.models.base import BaseChatModel
from noted.testing import ScriptedModel
from noted.tracing._attributes import llm_identity

SYSTEMS = {v.value for v in OpenInferenceLLMSystemValues}
PROVIDERS = {v.value for v in OpenInferenceLLMProviderValues}


def identity(model: BaseChatModel) -> tuple[object, object]:
    found = llm_identity(model)  # type: ignore[arg-type]
    return found.get("llm.system"), found.get("llm.provider")


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (lambda: OpenAIChat(api_key="k"), ("openai", "openai")),
        (
            lambda: OpenAIChat(base_url="https://api.openai.com/v1", api_key="k"),
            ("openai", "openai"),
        ),
        (
            lambda: OpenAIChat(base_url="https://api.groq.com/openai/v1", api_key="k"),
            ("openai", "groq"),
        ),
        (
            lambda: OpenAIChat(base_url="https://x.openai.azure.com/openai", api_key="k"),
            ("openai", "azure"),
        ),
        (lambda: OpenAIChat(base_url="http://localhost:8000/v1", api_key="k"), ("openai", None)),
        (Ollama, ("openai", "ollama")),
        (lambda: Claude(api_key="k"), ("anthropic", "anthropic")),
        (lambda: Gemini(api_key="k"), (None, "google")),
    ],
    ids=["openai", "openai-url", "groq", "azure", "vllm", "ollama", "claude", "gemini"],
)
def test_system_and_provider_follow_the_conventions(
    model: object, expected: tuple[str | None, str | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both were the same provider name: Ollama's span said ``llm.system="ollama"`` (no
    system of the conventions) and Gemini's ``llm.system="google"``."""
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    made = model()  # type: ignore[operator]
    system, provider = identity(made)
    assert (system, provider) == expected
    assert system is None or system in SYSTEMS
    assert provider is None or provider in PROVIDERS


def test_openai_base_url_from_the_environment_names_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1")  # a server of one's own
    assert identity(OpenAIChat(api_key="k")) == ("openai", None)


def test_a_model_of_its_own_keeps_its_provider_name_and_no_system() -> None:
    assert identity(ScriptedModel(["hi"])) == (None, "test")
