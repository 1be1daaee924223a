"""Chat models: the protocol, the request and response types, providers and the registry."""

from noted.models.base import BaseChatModel, ChatModel, RetryPolicy
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
    "Message",
    "ModelDelta",
    "ModelRequest",
    "ModelResponse",
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
