"""The default model's integer graph, made from the packaged all-MiniLM-L6-v2 at load.

The packaged model stores each weight matrix as int8 with one float scale per output
column, and its graph turns them back into float32 before multiplying, so onnxruntime
runs float32 products over 42 MB of weights for every text. This module reads the same
int8 weights and writes a graph that keeps them int8 and multiplies in integers:

- the embeddings and their layer norm: one ``EmbedLayerNormalization`` (float, the same
  values as the packaged graph's);
- each of the 6 layers: the layer's input quantized to uint8 with one scale for the
  whole input (``DynamicQuantizeLinear``), the query/key/value products and the attention in one
  ``QAttention``; the output, intermediate and final products as
  ``DynamicQuantizeMatMul`` (int8 weights, the packaged per-column scales, the biases);
  ``SkipLayerNormalization`` for the residual sums and their norms; ``Gelu``.

52 nodes in all, against 279 after onnxruntime's optimisations of the packaged graph.
The weights are the packaged ones bit for bit; what changes the vectors slightly is the
quantization of each layer's input (about 0.99 cosine against the float graph's vectors).
One scale per input tensor means a text's vector would depend on the other texts of its
batch, so this graph is run one text at a time (see ``LocalEmbedder``).
"""

from __future__ import annotations

import re

import numpy as np
import numpy.typing as npt

from noted.errors import ModelError
from noted.retrieval.onnx_wire import Parsed, graph_model, node, parse_model

__all__ = ["HEADS", "integer_graph"]

HEADS = 12  # all-MiniLM-L6-v2's attention heads
_MS = "com.microsoft"
_BIAS = re.compile(r"inner\.encoder\.layer\.(\d+)\.(.+)\.bias")
_EMBEDDINGS = "inner.embeddings."
_LAYER = "inner.encoder.layer.{}."
_ROLES = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)

Array = npt.NDArray[np.generic]


class _Source:
    """The packaged graph's weights, found by what they feed."""

    def __init__(self, parsed: Parsed) -> None:
        self.weights = parsed.weights
        self.producer = {output: item for item in parsed.nodes for output in item.outputs}
        self.epsilon = next(
            (
                float(item.attributes["epsilon"])
                for item in parsed.nodes
                if item.op_type == "LayerNormalization" and "epsilon" in item.attributes
            ),
            None,
        )
        self.products: dict[tuple[int, str], tuple[Array, Array]] = {}
        for item in parsed.nodes:
            if item.op_type != "Add" or len(item.inputs) != 2:
                continue
            match = _BIAS.fullmatch(item.inputs[1])
            product = self.producer.get(item.inputs[0])
            if match is None or product is None or product.op_type != "MatMul":
                continue
            values, scales = self.quantized(product.inputs[1])
            self.products[(int(match.group(1)), match.group(2))] = values, scales.reshape(-1)

    def quantized(self, name: str) -> tuple[Array, Array]:
        """The int8 values and float scales that the graph turns into ``name``."""
        scaled = self.producer.get(name)
        cast = self.producer.get(scaled.inputs[0]) if scaled is not None else None
        if scaled is None or cast is None or scaled.op_type != "Mul" or cast.op_type != "Cast":
            raise ModelError(f"the packaged model's {name} is not an int8 weight with a scale")
        values, scales = self.array(cast.inputs[0]), self.array(scaled.inputs[1])
        if values.dtype != np.int8 or scales.dtype != np.float32:
            raise ModelError(f"the packaged model's {name} is not int8 with float scales")
        return values, scales

    def array(self, name: str) -> Array:
        found = self.weights.get(name)
        if found is None:
            raise ModelError(f"the packaged model has no weight {name}")
        return found

    def dequantized(self, name: str) -> Array:
        values, scales = self.quantized(name)
        result: Array = values.astype(np.float32) * scales.astype(np.float32)
        return result  # what the packaged graph computes


class _Graph:
    """The integer graph being written: its nodes and weights."""

    def __init__(self, source: _Source) -> None:
        self.source = source
        self.nodes: list[list[bytes]] = []  # each node's encoded parts
        self.weights: dict[str, Array] = {}

    def add(self, op_type: str, inputs: list[str], output: str, **attributes: float | int) -> str:
        domain = "" if op_type in ("Cast", "DynamicQuantizeLinear") else _MS
        self.nodes.append(node(op_type, inputs, [output], domain, **attributes))
        return output

    def keep(self, name: str, array: Array) -> str:
        self.weights[name] = array
        return name

    def packaged(self, name: str, source_name: str) -> str:
        return self.keep(name, self.source.array(source_name))

    def product(self, layer: int, role: str, given: str) -> str:
        """``given`` times a layer's int8 weight plus its bias, the input quantized here."""
        values, scales = self.source.products[(layer, role)]
        at = f"{layer}.{role}"
        bias = self.packaged(at + ".bias", _LAYER.format(layer) + role + ".bias")
        inputs = [given, self.keep(at + ".weight", values), self.keep(at + ".scale", scales)]
        return self.add("DynamicQuantizeMatMul", [*inputs, "", bias], at)

    def norm(self, layer: int, name: str, given: str, skip: str, output: str) -> str:
        """``SkipLayerNormalization`` of ``given + skip`` with the layer's norm ``name``."""
        prefix = _LAYER.format(layer) + name
        weight = self.packaged(f"{layer}.{name}.weight", prefix + ".weight")
        bias = self.packaged(f"{layer}.{name}.bias", prefix + ".bias")
        return self.add(
            "SkipLayerNormalization",
            [given, skip, weight, bias],
            output,
            epsilon=self.source.epsilon or 0.0,
        )

    def attention(self, layer: int, given: str) -> str:
        """Query, key and value products (one int8 weight) and the attention: one node."""
        at = f"{layer}."
        quantized = [at + "quantized", at + "quantized.scale", at + "quantized.zero"]
        self.nodes.append(node("DynamicQuantizeLinear", [given], quantized))
        parts = [self.source.products[(layer, role)] for role in _ROLES[:3]]
        biases = [self.source.array(_LAYER.format(layer) + role + ".bias") for role in _ROLES[:3]]
        inputs = [
            quantized[0],
            self.keep(at + "qkv.weight", np.concatenate([values for values, _ in parts], axis=1)),
            self.keep(at + "qkv.bias", np.concatenate(biases)),
            quantized[1],
            self.keep(at + "qkv.scale", np.concatenate([scales for _, scales in parts])),
            "mask",
            quantized[2],
        ]
        return self.add("QAttention", inputs, at + "attention", num_heads=HEADS)

    def layer(self, layer: int, given: str, output: str) -> str:
        attended = self.product(layer, "attention.output.dense", self.attention(layer, given))
        normed = self.norm(layer, "attention.output.LayerNorm", attended, given, f"{layer}.normed")
        inner = self.product(layer, "intermediate.dense", normed)
        out = self.product(layer, "output.dense", self.add("Gelu", [inner], f"{layer}.gelu"))
        return self.norm(layer, "output.LayerNorm", out, normed, output)


def integer_graph(model: bytes) -> bytes:
    """The integer graph's file bytes, made from the packaged model file's bytes."""
    source = _Source(parse_model(model))
    layers = 1 + max((layer for layer, _ in source.products), default=-1)
    missing = [
        f"layer {layer} {role}"
        for layer in range(layers)
        for role in _ROLES
        if (layer, role) not in source.products
    ]
    if layers == 0 or missing or source.epsilon is None:
        raise ModelError(
            "the packaged model is not the expected all-MiniLM-L6-v2 graph"
            + (f" (no {', '.join(missing)})" if missing else "")
        )
    graph = _Graph(source)
    word = source.dequantized(_EMBEDDINGS + "word_embeddings.weight")
    embedding = [
        "ids",
        "segments",
        graph.keep("word", word),
        graph.keep("position", source.dequantized(_EMBEDDINGS + "position_embeddings.weight")),
        graph.packaged("segment", _EMBEDDINGS + "token_type_embeddings.weight"),
        graph.packaged("norm.weight", _EMBEDDINGS + "LayerNorm.weight"),
        graph.packaged("norm.bias", _EMBEDDINGS + "LayerNorm.bias"),
    ]
    graph.add("Cast", ["input_ids"], "ids", to=6)  # int32, as the fused nodes take them
    graph.add("Cast", ["token_type_ids"], "segments", to=6)
    graph.add("Cast", ["attention_mask"], "mask", to=6)
    graph.nodes.append(
        node(
            "EmbedLayerNormalization",
            embedding,
            ["embedded", "mask_index"],
            _MS,
            epsilon=source.epsilon,
        )
    )
    hidden = "embedded"
    for layer in range(layers):
        last = layer == layers - 1
        hidden = graph.layer(layer, hidden, "last_hidden_state" if last else f"{layer}.output")
    text = ("batch", "sequence")
    names = ("input_ids", "attention_mask", "token_type_ids")
    return graph_model(
        "minilm-integer",
        graph.nodes,
        graph.weights,
        inputs={name: (np.int64, text) for name in names},
        outputs={"last_hidden_state": (np.float32, (*text, word.shape[1]))},
        opsets={"": 17, _MS: 1},
    )
