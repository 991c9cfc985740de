"""TensorFlow file formats read without TensorFlow: frozen ``GraphDef`` files and TF checkpoints.

Only what a converter needs: nodes with their op, inputs, attributes and constant tensors; and a
checkpoint's variables (name -> array). Both are decoded from the protobuf wire format directly
(field numbers from TensorFlow's ``graph.proto``, ``node_def.proto``, ``attr_value.proto``,
``tensor.proto``, ``tensor_shape.proto`` and ``tensor_bundle.proto``), and the checkpoint index
from its LevelDB table layout, so neither TensorFlow nor generated protobuf classes are needed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# TensorFlow DataType enum -> NumPy dtype (the types a float network's graph can hold).
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 6: np.int8, 9: np.int64, 10: np.bool_,
           19: np.float16}
_TABLE_MAGIC = 0xDB4775248B80FB57


class FormatError(ValueError):
    """The bytes are not a valid file of the expected format."""


# --- protobuf wire format ---------------------------------------------------------------------

def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise FormatError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def parse_message(buf: bytes) -> dict[int, list[Any]]:
    """Fields of one protobuf message: number -> values (ints for varints, bytes otherwise)."""
    fields: dict[int, list[Any]] = {}
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise FormatError(f"unsupported protobuf wire type {wire} (field {number})")
        if pos > len(buf):
            raise FormatError(f"truncated field {number}")
        fields.setdefault(number, []).append(value)
    return fields


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _packed_varints(values: list[Any]) -> list[int]:
    """A repeated varint field, packed (bytes) or not (ints)."""
    out: list[int] = []
    for value in values:
        if isinstance(value, int):
            out.append(_signed(value))
            continue
        pos = 0
        while pos < len(value):
            v, pos = _varint(value, pos)
            out.append(_signed(v))
    return out


def _first(fields: dict[int, list[Any]], number: int, default: Any = None) -> Any:
    return fields.get(number, [default])[-1]


def _shape(buf: bytes | None) -> tuple[int, ...]:
    fields = parse_message(buf or b"")
    return tuple(_signed(_first(parse_message(dim), 1, 0)) for dim in fields.get(2, []))


def _dtype(enum: int, where: str) -> np.dtype:
    if enum not in _DTYPES:
        raise FormatError(f"{where}: unsupported TensorFlow dtype {enum}")
    return np.dtype(_DTYPES[enum])


def parse_tensor(buf: bytes, where: str = "tensor") -> np.ndarray:
    """A ``TensorProto`` as an array (``tensor_content``, or typed values with TF's fill rule)."""
    fields = parse_message(buf)
    dtype = _dtype(_first(fields, 1, 0), where)
    shape = _shape(_first(fields, 2))
    count = int(np.prod(shape)) if shape else 1
    content = _first(fields, 4)
    if content is not None:
        values = np.frombuffer(content, dtype=dtype.newbyteorder("<"))
    elif dtype == np.float32:
        values = np.concatenate([np.frombuffer(v, "<f4") for v in fields.get(5, [])] or [np.zeros(0, np.float32)])
    elif dtype == np.float16:  # half_val: the raw 16-bit patterns as int32 varints
        values = np.array(_packed_varints(fields.get(13, [])), np.uint16).view(np.float16)
    elif dtype == np.float64:
        values = np.concatenate([np.frombuffer(v, "<f8") for v in fields.get(6, [])] or [np.zeros(0)])
    else:
        values = np.array(_packed_varints(fields.get(7, []) + fields.get(10, [])), dtype=dtype)
    if values.size == count:
        return values.reshape(shape).copy()
    if 0 < values.size < count:  # TensorFlow repeats the last value to fill the tensor
        return np.concatenate([values, np.full(count - values.size, values[-1], dtype)]).reshape(shape)
    raise FormatError(f"{where}: {values.size} values for shape {shape}")


# --- GraphDef ---------------------------------------------------------------------------------

@dataclass
class Node:
    """One ``NodeDef``: ``inputs`` are data inputs as ``(node_name, output_index)``."""

    name: str
    op: str
    inputs: list[tuple[str, int]]
    attrs: dict[str, dict[int, list[Any]]] = field(repr=False)

    def attr_int_list(self, key: str) -> list[int]:
        value = self.attrs.get(key, {})
        return _packed_varints(parse_message(_first(value, 1, b"")).get(3, [])) if 1 in value else []

    def attr_str(self, key: str) -> str:
        return bytes(_first(self.attrs.get(key, {}), 2, b"")).decode()

    def attr_float(self, key: str) -> float | None:
        raw = _first(self.attrs.get(key, {}), 4)
        return None if raw is None else struct.unpack("<f", raw)[0]

    def attr_bool(self, key: str) -> bool:
        return bool(_first(self.attrs.get(key, {}), 5, 0))

    def attr_tensor(self, key: str) -> np.ndarray:
        raw = _first(self.attrs.get(key, {}), 8)
        if raw is None:
            raise FormatError(f"node {self.name!r} has no tensor attribute {key!r}")
        return parse_tensor(raw, f"node {self.name!r}")


def _input_ref(ref: str) -> tuple[str, int] | None:
    if ref.startswith("^"):  # control dependency, not data
        return None
    name, _, index = ref.partition(":")
    return name, int(index or 0)


def read_graph_def(path: str | Path) -> dict[str, Node]:
    """Nodes of a binary ``GraphDef`` (frozen ``.pb``) by name, in file order."""
    data = Path(path).read_bytes()
    nodes: dict[str, Node] = {}
    for raw in parse_message(data).get(1, []):
        fields = parse_message(raw)
        attrs = {}
        for entry in fields.get(5, []):
            kv = parse_message(entry)
            attrs[bytes(_first(kv, 1, b"")).decode()] = parse_message(_first(kv, 2, b""))
        inputs = [r for r in (_input_ref(bytes(i).decode()) for i in fields.get(3, [])) if r is not None]
        name = bytes(_first(fields, 1, b"")).decode()
        nodes[name] = Node(name=name, op=bytes(_first(fields, 2, b"")).decode(), inputs=inputs, attrs=attrs)
    if not nodes:
        raise FormatError(f"{path}: no graph nodes (not a binary GraphDef?)")
    return nodes


def topological_order(nodes: dict[str, Node]) -> list[Node]:
    """Nodes ordered so that every node comes after its data inputs (iterative DFS, file order ties)."""
    order: list[Node] = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    for root in nodes:
        stack = [(root, 0)]
        while stack:
            name, i = stack.pop()
            if state.get(name) == 2:
                continue
            node = nodes.get(name)
            if node is None:
                raise FormatError(f"graph refers to a missing node {name!r}")
            state[name] = 1
            if i < len(node.inputs):
                stack.append((name, i + 1))
                child = node.inputs[i][0]
                if state.get(child) == 1:
                    raise FormatError(f"graph has a cycle through {child!r}")
                if state.get(child) != 2:
                    stack.append((child, 0))
            else:
                state[name] = 2
                order.append(node)
    return order


# --- TF checkpoints (tensor bundles) ----------------------------------------------------------

def _table_block(data: bytes, handle: bytes, where: str) -> list[tuple[bytes, bytes]]:
    """Entries of one LevelDB table block given its ``BlockHandle`` (offset, size varints)."""
    offset, pos = _varint(handle, 0)
    size, _ = _varint(handle, pos)
    block, kind = data[offset:offset + size], data[offset + size:offset + size + 1]
    if len(block) != size or kind not in (b"\x00",):
        raise FormatError(f"{where}: {'compressed' if kind else 'truncated'} index block is not supported")
    restarts = struct.unpack("<I", block[-4:])[0]
    end, pos, key = len(block) - 4 - 4 * restarts, 0, b""
    entries = []
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        length, pos = _varint(block, pos)
        key = key[:shared] + block[pos:pos + unshared]
        pos += unshared
        entries.append((key, block[pos:pos + length]))
        pos += length
    return entries


def checkpoint_prefix(path: str | Path) -> Path:
    """``model-100`` for ``model-100``, ``model-100.index`` or ``model-100.data-00000-of-00001``."""
    path = Path(path)
    if path.suffix == ".index" or path.suffix.startswith(".data-"):
        return path.with_suffix("")
    return path


def read_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """All tensors of a TF (V2, tensor-bundle) checkpoint: variable name -> array."""
    prefix = checkpoint_prefix(path)
    index = prefix.with_name(prefix.name + ".index")
    if not index.is_file():
        raise FormatError(f"{index}: checkpoint index not found (expected PREFIX.index next to PREFIX.data-*)")
    data = index.read_bytes()
    if len(data) < 48 or struct.unpack("<Q", data[-8:])[0] != _TABLE_MAGIC:
        raise FormatError(f"{index}: not a TensorFlow checkpoint index (bad table magic)")
    footer = data[-48:]
    _, pos = _varint(footer, 0)  # metaindex handle: offset, size
    _, pos = _varint(footer, pos)
    entries = []
    for _, handle in _table_block(data, footer[pos:], str(index)):
        entries.extend(_table_block(data, handle, str(index)))
    header = parse_message(dict(entries).get(b"", b""))
    shards = _first(header, 1, 1)
    if _first(header, 2, 0) != 0:
        raise FormatError(f"{index}: big-endian checkpoints are not supported")
    files: dict[int, bytes] = {}
    tensors = {}
    for key, value in entries:
        if not key:
            continue
        name = key.decode()
        entry = parse_message(value)
        if 7 in entry:
            raise FormatError(f"{index}: variable {name!r} is partitioned (slices), which is not supported")
        shard = _first(entry, 3, 0)
        if shard not in files:
            shard_path = prefix.with_name(f"{prefix.name}.data-{shard:05d}-of-{shards:05d}")
            if not shard_path.is_file():
                raise FormatError(f"{shard_path}: checkpoint data shard not found")
            files[shard] = shard_path.read_bytes()
        dtype_enum = _first(entry, 1, 0)
        if dtype_enum not in _DTYPES:
            continue  # strings, resources: never weights
        dtype = _dtype(dtype_enum, name)
        shape = _shape(_first(entry, 2))
        offset, size = _first(entry, 4, 0), _first(entry, 5, 0)
        raw = files[shard][offset:offset + size]
        if len(raw) != size or size != int(np.prod(shape)) * dtype.itemsize:
            raise FormatError(f"{index}: variable {name!r} has {len(raw)} bytes for shape {shape} {dtype}")
        tensors[name] = np.frombuffer(raw, dtype.newbyteorder("<")).reshape(shape).copy()
    return tensors
