"""Any text model the ``fastembed`` package knows, named ``"fastembed:<model>"``.

An optional extra (``pip install 'noted[fastembed]'``). fastembed fetches a model's files
from the Hugging Face Hub once, into its cache (``cache_dir``, or ``$FASTEMBED_CACHE_PATH``);
``path`` names a directory already on disk that holds them (the ONNX file under the name
fastembed's description gives, ``tokenizer.json``, ``config.json``,
``tokenizer_config.json`` and ``special_tokens_map.json``), and then nothing is fetched.
Questions are embedded with fastembed's ``query_embed`` and memories with
``passage_embed``, so models that mark the two apart (BGE's query instruction, e5's
"query: ") get what they expect.

Nothing is loaded until the first text is embedded. The vectors are tagged
``fastembed:<model>/<dimensions>``, so a change of model re-embeds, never mixes spaces.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from noted.errors import ModelError, UserError
from noted.retrieval.embedders import BaseEmbedder, Kind
from noted.retrieval.local import onnxruntime_errors

__all__ = ["FastEmbedEmbedder"]

_INSTALL = "pip install 'noted[fastembed]'"


def _text_embedding() -> Any:
    try:
        from fastembed import TextEmbedding  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        raise UserError(f"a fastembed embedder needs the fastembed package: {_INSTALL}") from None
    return TextEmbedding


class FastEmbedEmbedder(BaseEmbedder):
    """``FastEmbedEmbedder("BAAI/bge-small-en-v1.5")``: one of fastembed's text models, run
    on this machine. ``path``: a directory holding the model's files (no download);
    ``cache_dir``: where fastembed keeps what it downloads; ``threads``: onnxruntime's
    threads per batch (default: fastembed's)."""

    batch_size = 64

    def __init__(
        self,
        model: str,
        *,
        path: str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        threads: int | None = None,
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise UserError(
                "a fastembed embedder needs a model name: 'fastembed:BAAI/bge-small-en-v1.5'"
            )
        if path is not None and not Path(path).expanduser().is_dir():
            raise UserError(f"no model directory at {os.fspath(path)!r}")
        if threads is not None and (type(threads) is not int or threads < 1):
            raise UserError(f"threads must be an integer >= 1, got {threads!r}")
        text_embedding = _text_embedding()
        known = {item["model"].lower(): item for item in text_embedding.list_supported_models()}
        description = known.get(model.lower())
        if description is None:
            raise UserError(
                f"fastembed has no text model {model!r}; its models are listed by "
                "fastembed.TextEmbedding.list_supported_models()"
            )
        self._model_id: str = description["model"]
        self._path = None if path is None else str(Path(path).expanduser().resolve())
        self._cache_dir = None if cache_dir is None else os.fspath(cache_dir)
        self._threads = threads
        self._lock = threading.Lock()
        self._model: Any = None
        dimensions = int(description["dim"])
        super().__init__(f"fastembed:{self._model_id}/{dimensions}", dimensions)

    @property
    def loaded(self) -> bool:
        """Whether the model has been loaded (it is, from the first embedding on)."""
        return self._model is not None

    def _loaded(self) -> Any:
        if self._model is not None:
            return self._model
        failures: tuple[type[Exception], ...] = (ValueError, OSError, *onnxruntime_errors())
        with self._lock:
            if self._model is None:
                options: dict[str, Any] = {}
                if self._path is not None:
                    options["specific_model_path"] = self._path
                    options["local_files_only"] = True
                try:
                    self._model = _text_embedding()(
                        self._model_id,
                        cache_dir=self._cache_dir,
                        threads=self._threads,
                        **options,
                    )
                except failures as error:
                    where = f" from {self._path!r}" if self._path else ""
                    raise ModelError(
                        f"fastembed could not load {self._model_id!r}{where}: {error}"
                    ) from error
            return self._model

    def _embed_batch(self, texts: list[str], kind: Kind) -> npt.ArrayLike:
        model = self._loaded()
        embed = model.query_embed if kind == "query" else model.passage_embed
        vectors = list(embed(texts))
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)
