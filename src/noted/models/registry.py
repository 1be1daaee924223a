"""Model names as strings: ``"openai:gpt-4o-mini"`` -> a model object.

Built-in providers register here the same way a third party does, in code::

    register_provider("myvendor", lambda model_id: MyModel(id=model_id))

or from another package, by an entry point in the ``noted.models`` group (see
:mod:`noted._plugins`).
"""

from __future__ import annotations

from collections.abc import Callable

from noted._plugins import Registry
from noted.errors import UserError
from noted.models.base import ChatModel

__all__ = ["get_model", "provider_names", "register_provider"]

ModelFactory = Callable[[str], ChatModel]
PROVIDERS: Registry[ModelFactory] = Registry("noted.models", "model provider")


def register_provider(prefix: str, factory: ModelFactory) -> None:
    """Make ``"prefix:model-id"`` build ``factory("model-id")``."""
    PROVIDERS.register(prefix, factory)


def provider_names() -> list[str]:
    return PROVIDERS.names()


def get_model(model: ChatModel | str) -> ChatModel:
    """A model object as it is, or the model a ``"provider:model-id"`` string names."""
    if not isinstance(model, str):
        if not isinstance(model, ChatModel):
            raise UserError(f"expected a chat model or 'provider:model-id', got {model!r}")
        return model
    prefix, sep, model_id = model.partition(":")
    if not sep or not model_id.strip():
        raise UserError(
            f"a model string looks like 'provider:model-id' (providers: "
            f"{', '.join(provider_names())}), got {model!r}"
        )
    factory = PROVIDERS.get(prefix)
    if factory is None:
        raise UserError(
            f"unknown model provider {prefix!r} in {model!r}; known: {', '.join(provider_names())}"
        )
    return factory(model_id.strip())
