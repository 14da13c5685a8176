"""A minimal reader for frozen TensorFlow ``GraphDef`` files (``*.pb``), without TensorFlow.

Only what weight conversion needs: node names, ops, inputs, and the tensors held by ``Const``
nodes. The protobuf wire format is parsed by hand (the ``protobuf`` package has no TF schemas):

* a record is a sequence of ``key = (field_number << 3) | wire_type`` varints, each followed by
  a varint (type 0), 8 bytes (type 1), a varint length and that many bytes (type 2), or 4 bytes
  (type 5);
* ``GraphDef.node = 1``; ``NodeDef``: ``name = 1``, ``op = 2``, ``input = 3``,
  ``attr = 5`` (a map: entries with ``key = 1``, ``value = 2``);
* ``AttrValue.tensor = 8``, ``AttrValue.type = 6``;
* ``TensorProto``: ``dtype = 1``, ``tensor_shape = 2`` (``dim = 2``, each ``size = 1``),
  ``tensor_content = 4`` (raw little-endian), or the typed repeated fields ``float_val = 5``,
  ``double_val = 6``, ``int_val = 7``, ``int64_val = 10``, ``bool_val = 11`` (packed or not);
  a single typed value with a larger shape is broadcast, as TensorFlow does.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: TensorFlow ``DataType`` enum values we can decode -> numpy dtype.
_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    19: np.dtype("<f2"),  # DT_HALF
}
# TensorProto typed-value field number -> (packed element format, is varint)
_TYPED_FIELDS: dict[int, tuple[str, bool]] = {5: ("<f", False), 6: ("<d", False), 7: ("", True), 10: ("", True), 11: ("", True)}


@dataclass
class TFNode:
    """One ``NodeDef``: its op, input names, and (for ``Const``) the decoded tensor."""

    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    tensor: np.ndarray | None = None


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; return (value, new position)."""
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def iter_fields(buf: memoryview):
    """Yield ``(field_number, wire_type, value)``; value is an int or a memoryview slice."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, pos = _varint(buf, pos)
        elif wt == 1:
            val, pos = buf[pos : pos + 8], pos + 8
        elif wt == 2:
            n, pos = _varint(buf, pos)
            val, pos = buf[pos : pos + n], pos + n
        elif wt == 5:
            val, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wt} (field {num})")
        yield num, wt, val


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _typed_values(num: int, wt: int, val) -> list:
    fmt, is_varint = _TYPED_FIELDS[num]
    if is_varint:
        if wt == 0:
            return [_signed64(val)]
        out, pos = [], 0
        while pos < len(val):
            v, pos = _varint(val, pos)
            out.append(_signed64(v))
        return out
    data = bytes(val)
    return list(struct.unpack(f"<{len(data) // struct.calcsize(fmt)}{fmt[1]}", data))


def parse_shape(buf: memoryview) -> tuple[int, ...]:
    """``TensorShapeProto`` -> tuple of dimension sizes."""
    dims = []
    for num, _, val in iter_fields(buf):
        if num == 2:
            size = next((_signed64(v) for n, _, v in iter_fields(val) if n == 1), 0)
            dims.append(size)
    return tuple(dims)


def parse_tensor(buf: memoryview) -> np.ndarray:
    """``TensorProto`` -> numpy array (raw ``tensor_content`` or typed repeated values)."""
    dtype_id, shape, content, values = 0, (), None, []
    for num, wt, val in iter_fields(buf):
        if num == 1:
            dtype_id = val
        elif num == 2:
            shape = parse_shape(val)
        elif num == 4:
            content = bytes(val)
        elif num in _TYPED_FIELDS:
            values.extend(_typed_values(num, wt, val))
    if dtype_id not in _DTYPES:
        raise ValueError(f"unsupported TensorFlow dtype {dtype_id}")
    dtype = _DTYPES[dtype_id]
    count = int(np.prod(shape)) if shape else 1
    if content is not None:
        return np.frombuffer(content, dtype=dtype).reshape(shape).copy()
    arr = np.asarray(values, dtype=dtype)
    if arr.size == count:
        return arr.reshape(shape)
    if arr.size == 1:  # TF stores a constant-filled tensor as one value
        return np.full(shape, arr[0], dtype=dtype)
    if arr.size == 0:
        return np.zeros(shape, dtype=dtype)
    raise ValueError(f"tensor has {arr.size} values for shape {shape}")


def _parse_node(buf: memoryview) -> TFNode:
    node = TFNode(name="", op="")
    attrs: dict[str, memoryview] = {}
    for num, _, val in iter_fields(buf):
        if num == 1:
            node.name = bytes(val).decode()
        elif num == 2:
            node.op = bytes(val).decode()
        elif num == 3:
            node.inputs.append(bytes(val).decode())
        elif num == 5:
            entry = {n: v for n, _, v in iter_fields(val)}
            attrs[bytes(entry.get(1, b"")).decode()] = entry.get(2, memoryview(b""))
    if node.op == "Const" and "value" in attrs:
        tensor_buf = next((v for n, _, v in iter_fields(attrs["value"]) if n == 8), None)
        if tensor_buf is not None:
            node.tensor = parse_tensor(tensor_buf)
    return node


def read_graph_bytes(data: bytes) -> list[TFNode]:
    """All nodes of a serialised ``GraphDef``, in file order."""
    return [_parse_node(val) for num, _, val in iter_fields(memoryview(data)) if num == 1]


def read_graph(path: str | Path) -> list[TFNode]:
    """All nodes of a frozen ``GraphDef`` file (``*.pb``), in file order."""
    return read_graph_bytes(Path(path).read_bytes())


def const_tensors(nodes: list[TFNode]) -> dict[str, np.ndarray]:
    """Map each ``Const`` node name to its tensor."""
    return {n.name: n.tensor for n in nodes if n.op == "Const" and n.tensor is not None}
