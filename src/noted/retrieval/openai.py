"""Embeddings from the OpenAI embeddings API, or any server speaking it (Ollama, vLLM, ...)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from noted.errors import ModelOutputError, UserError
from noted.models._provider import import_sdk
from noted.models.base import RetryPolicy
from noted.models.openai import OpenAIChat
from noted.retrieval.embedders import BaseEmbedder, Kind

__all__ = ["OpenAIEmbedder"]


class OpenAIEmbedder(BaseEmbedder):
    """``OpenAIEmbedder("text-embedding-3-small")``; for a compatible server pass
    ``base_url`` (for Ollama ``http://localhost:11434/v1`` with ``api_key="ollama"``) and
    the model's ``dimensions`` when it is not one of OpenAI's. ``dimensions`` given for an
    OpenAI ``text-embedding-3`` model shortens its vectors (sent as the API's
    ``dimensions``). Keys, timeouts, retries and errors work as for ``OpenAIChat``.
    """

    known_dimensions: ClassVar[dict[str, int]] = {
        "text-embedding-3-small": 1536,
        "text-embedding-3-large": 3072,
        "text-embedding-ada-002": 1536,
    }
    batch_size = 256

    def __init__(
        self,
        id: str = "text-embedding-3-small",
        *,
        dimensions: int | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        batch_size: int = 256,
        retry: RetryPolicy | None = None,
    ) -> None:
        import_sdk("openai", extra="openai", user=type(self).__name__)  # says what is missing
        # The chat model holds the client, the key, the retry policy and the error mapping.
        self._api = OpenAIChat(id, api_key=api_key, base_url=base_url, timeout=timeout, retry=retry)
        native = self.known_dimensions.get(id)
        if dimensions is not None and (type(dimensions) is not int or dimensions < 1):
            raise UserError(f"dimensions must be an integer >= 1, got {dimensions!r}")
        size = dimensions or native
        if size is None:
            raise UserError(
                f"say how long {id!r}'s vectors are: OpenAIEmbedder({id!r}, dimensions=...)"
            )
        if type(batch_size) is not int or batch_size < 1:
            raise UserError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.batch_size = batch_size
        self._shorten = dimensions is not None and native is not None and dimensions != native
        where = "" if base_url is None else f"@{base_url.strip()}"
        super().__init__(f"openai:{id}{where}/{size}", size)

    async def _attempt(self, texts: list[str]) -> npt.ArrayLike:
        params: dict[str, Any] = {"model": self._api.id, "input": texts}
        if self._shorten:
            params["dimensions"] = self._dimensions
        with self._api._mapped_errors():
            response = await self._api._clients.get().embeddings.create(**params)
        rows = sorted(response.data, key=lambda item: item.index)
        if len(rows) != len(texts):
            raise ModelOutputError(
                f"{self._api.id} returned {len(rows)} embeddings for {len(texts)} texts"
            )
        if [row.index for row in rows] != list(range(len(texts))):
            raise ModelOutputError(
                f"{self._api.id} returned embeddings that do not number its {len(texts)} "
                "texts once each"
            )
        return np.asarray([row.embedding for row in rows], dtype=np.float32)

    async def _aembed_batch(self, texts: list[str], kind: Kind) -> npt.ArrayLike:
        return await self._api.with_retries(lambda: self._attempt(texts))

    async def aclose(self) -> None:
        """Close the HTTP client held for the running event loop."""
        await self._api.aclose()

    def close(self) -> None:
        """Close the HTTP client held on noted's background loop."""
        self._api.close()
