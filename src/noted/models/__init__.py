"""Chat models: the protocol, the request and response types, providers and the registry."""

from noted.models.anthropic import Claude
from noted.models.base import BaseChatModel, ChatModel, RetryPolicy
from noted.models.google import Gemini
from noted.models.llamacpp import LlamaCpp
from noted.models.openai import Ollama, OpenAIChat
from noted.models.registry import get_model, provider_names, register_provider
from noted.models.types import (
    Message,
    ModelDelta,
    ModelRequest,
    ModelResponse,
    ResponseBuilder,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolDefinition,
    Usage,
    UsageDelta,
)

__all__ = [
    "BaseChatModel",
    "ChatModel",
    "Claude",
    "Gemini",
    "LlamaCpp",
    "Message",
    "ModelDelta",
    "ModelRequest",
    "ModelResponse",
    "Ollama",
    "OpenAIChat",
    "ResponseBuilder",
    "RetryPolicy",
    "TextDelta",
    "ToolCall",
    "ToolCallDelta",
    "ToolDefinition",
    "Usage",
    "UsageDelta",
    "get_model",
    "provider_names",
    "register_provider",
]

# The built-in providers register like any other (the SDKs load on first use).
register_provider("openai", lambda model_id: OpenAIChat(id=model_id))
register_provider("ollama", lambda model_id: Ollama(id=model_id))
register_provider("anthropic", lambda model_id: Claude(id=model_id))
register_provider("google", lambda model_id: Gemini(id=model_id))
register_provider("llamacpp", lambda model_path: LlamaCpp(model_path=model_path))
