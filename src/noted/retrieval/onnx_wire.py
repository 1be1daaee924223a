"""Just enough of the ONNX file format (protocol buffers) to read a model's nodes and
weights and to write a new graph, with no dependency beyond numpy.

Only the fields noted reads or writes are known here (field numbers from the ONNX schema);
anything else in a file is skipped when reading.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from noted.errors import ModelError

__all__ = ["Node", "Parsed", "attribute", "graph_model", "node", "parse_model", "tensor"]

# ONNX tensor element types <-> numpy
_DTYPES: dict[int, type[np.generic]] = {
    1: np.float32,
    2: np.uint8,
    3: np.int8,
    6: np.int32,
    7: np.int64,
}
_CODES = {np.dtype(kind): code for code, kind in _DTYPES.items()}


def _fields(data: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """(field number, value) of each field of one message: an int for varints and fixed
    numbers, a view of the bytes for length-delimited fields."""
    at, end = 0, len(data)
    while at < end:
        key, at = _varint(data, at)
        number, kind = key >> 3, key & 7
        if kind == 0:
            value, at = _varint(data, at)
            yield number, value
        elif kind == 2:
            size, at = _varint(data, at)
            if at + size > end:
                raise ModelError("the ONNX file is cut short")
            yield number, data[at : at + size]
            at += size
        elif kind == 5:
            yield number, int.from_bytes(data[at : at + 4], "little")
            at += 4
        elif kind == 1:
            yield number, int.from_bytes(data[at : at + 8], "little")
            at += 8
        else:
            raise ModelError(f"the ONNX file has a field of unknown wire type {kind}")


def _varint(data: memoryview, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise ModelError("the ONNX file has a malformed number")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def _text(value: int | memoryview) -> str:
    if isinstance(value, int):
        raise ModelError("the ONNX file has a number where a name should be")
    return bytes(value).decode()


def _bytes(value: int | memoryview) -> memoryview:
    if isinstance(value, int):
        raise ModelError("the ONNX file has a number where a message should be")
    return value


@dataclass
class Node:
    """One node of a graph: its operator, inputs, outputs and float/int attributes."""

    op_type: str
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    attributes: dict[str, float | int] = field(default_factory=dict)


@dataclass
class Parsed:
    """A model file's nodes, in order, and its weights by name."""

    nodes: list[Node]
    weights: dict[str, npt.NDArray[np.generic]]


def _tensor(data: memoryview) -> tuple[str, npt.NDArray[np.generic] | None]:
    """A weight's name and values (None for a type noted does not read)."""
    name, code, dims, raw = "", 0, [], b""
    for number, value in _fields(data):
        if number == 1:  # dims: packed or one by one
            if isinstance(value, int):
                dims.append(value)
            else:
                at = 0
                while at < len(value):
                    dim, at = _varint(value, at)
                    dims.append(dim)
        elif number == 2 and isinstance(value, int):
            code = value
        elif number == 8:
            name = _text(value)
        elif number == 9:
            raw = bytes(_bytes(value))
        elif number in (4, 5, 7, 13):  # typed data fields or external data
            raise ModelError(f"the ONNX weight {name or '?'} is not stored as raw bytes")
    if code not in _DTYPES:
        return name, None
    array = np.frombuffer(raw, dtype=np.dtype(_DTYPES[code]).newbyteorder("<"))
    return name, array.reshape(dims).astype(_DTYPES[code], copy=False)


def _node(data: memoryview) -> Node:
    node = Node("")
    for number, value in _fields(data):
        if number == 1:
            node.inputs.append(_text(value))
        elif number == 2:
            node.outputs.append(_text(value))
        elif number == 4:
            node.op_type = _text(value)
        elif number == 5:
            name, number_value = "", None
            for inner, item in _fields(_bytes(value)):
                if inner == 1:
                    name = _text(item)
                elif inner == 2 and isinstance(item, int):
                    number_value = struct.unpack("<f", item.to_bytes(4, "little"))[0]
                elif inner == 3 and isinstance(item, int):
                    number_value = item - (1 << 64) if item >= 1 << 63 else item
            if number_value is not None:
                node.attributes[name] = number_value
    return node


def parse_model(data: bytes) -> Parsed:
    """The nodes and weights of the main graph of an ONNX model file's bytes."""
    graph = next((v for n, v in _fields(memoryview(data)) if n == 7), None)
    if graph is None:
        raise ModelError("the ONNX file has no graph")
    nodes: list[Node] = []
    weights: dict[str, npt.NDArray[np.generic]] = {}
    for number, value in _fields(_bytes(graph)):
        if number == 1:
            nodes.append(_node(_bytes(value)))
        elif number == 5:
            name, array = _tensor(_bytes(value))
            if array is not None:
                weights[name] = array
    return Parsed(nodes, weights)


# -- writing ---------------------------------------------------------------------------
# A message is built as a list of byte strings, joined once at the end: a 50 MB model is
# then copied once, not once per level of nesting.

_Parts = list[bytes]


def _key(number: int, kind: int) -> bytes:
    return _encode_varint(number << 3 | kind)


def _encode_varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative numbers as two's complement, as protobuf does
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _number(number: int, value: int) -> bytes:
    return _key(number, 0) + _encode_varint(value)


def _chunk(number: int, payload: bytes | _Parts) -> _Parts:
    parts = [payload] if isinstance(payload, bytes) else payload
    return [_key(number, 2) + _encode_varint(sum(map(len, parts))), *parts]


def attribute(name: str, value: float | int) -> _Parts:
    """An attribute: a float (type FLOAT) or an int (type INT)."""
    if isinstance(value, float):
        return [*_chunk(1, name.encode()), _key(2, 5) + struct.pack("<f", value), _number(20, 1)]
    return [*_chunk(1, name.encode()), _number(3, value), _number(20, 2)]


def node(
    op_type: str,
    inputs: Sequence[str],
    outputs: Sequence[str],
    domain: str = "",
    **attributes: float | int,
) -> _Parts:
    """A node (an empty input name leaves an optional input out)."""
    parts: _Parts = []
    for name in inputs:
        parts += _chunk(1, name.encode())
    for name in outputs:
        parts += _chunk(2, name.encode())
    parts += _chunk(3, outputs[0].encode()) + _chunk(4, op_type.encode())
    for name, value in attributes.items():
        parts += _chunk(5, attribute(name, value))
    if domain:
        parts += _chunk(7, domain.encode())
    return parts


def tensor(name: str, array: npt.NDArray[np.generic]) -> _Parts:
    """A weight, its bytes stored raw (little-endian)."""
    code = _CODES.get(array.dtype)
    if code is None:
        raise ModelError(f"no ONNX type for {array.dtype}")
    parts = [_number(1, dim) for dim in array.shape] + [_number(2, code)]
    data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    return parts + _chunk(8, name.encode()) + _chunk(9, data)


def _value_info(name: str, code: int, dims: Sequence[int | str]) -> _Parts:
    shape: _Parts = []
    for dim in dims:
        shape += _chunk(1, _number(1, dim) if isinstance(dim, int) else _chunk(2, dim.encode()))
    tensor_type = [_number(1, code), *_chunk(2, shape)]
    return _chunk(1, name.encode()) + _chunk(2, _chunk(1, tensor_type))


Signature = Mapping[str, tuple[type[np.generic], Sequence[int | str]]]


def graph_model(
    name: str,
    nodes: Sequence[_Parts],
    weights: Mapping[str, npt.NDArray[np.generic]],
    inputs: Signature,
    outputs: Signature,
    opsets: Mapping[str, int],
) -> bytes:
    """A model file's bytes: one graph of ``nodes`` (from ``node``) over ``weights``."""
    graph: _Parts = []
    for item in nodes:
        graph += _chunk(1, item)
    graph += _chunk(2, name.encode())
    for key, array in weights.items():
        graph += _chunk(5, tensor(key, array))
    for number, entries in ((11, inputs), (12, outputs)):
        for key, (kind, dims) in entries.items():
            graph += _chunk(number, _value_info(key, _CODES[np.dtype(kind)], dims))
    model = [_number(1, 8), *_chunk(2, b"noted"), *_chunk(7, graph)]  # IR version 8
    for domain, version in opsets.items():
        model += _chunk(8, [*_chunk(1, domain.encode()), _number(2, version)])
    return b"".join(model)
