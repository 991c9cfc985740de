"""Read a TFLite flatbuffer into a :class:`~portrait_stylize.models.tflite_graph.TFLiteGraph`: its
operators and their options as a JSON description, its constants as float32 tensors.

It covers exactly the operators of MediaPipe's face and selfie models (:data:`READERS`): ``CONV_2D``,
``DEPTHWISE_CONV_2D``, ``MAX_POOL_2D``, ``AVERAGE_POOL_2D``, ``PAD``, ``ADD``, ``MUL``, ``RELU``,
``PRELU``, ``HARD_SWISH``, ``LOGISTIC``, ``RESIZE_BILINEAR``, ``DEPTH_TO_SPACE``, ``RESHAPE``,
``CONCATENATION``, ``STRIDED_SLICE``, ``MEAN`` and MediaPipe's custom ``Landmarks2TransformMatrix``,
``TransformTensorBilinear``, ``TransformLandmarks`` and ``Convolution2DTransposeBias``; ``DEQUANTIZE``
(float16 constants) and ``DENSIFY`` (sparse constants, :func:`densify`) are folded into float32
constants here. Any other operator, option value or tensor type stops the conversion with a
:class:`~portrait_stylize.errors.ConversionError` naming it and the file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import ConversionError
from ..models.tflite_graph import SPEC_FORMAT, SPEC_VERSION, TFLiteGraph
from ..models.tflite_ops import ACTIVATIONS

_PADDING = {0: "SAME", 1: "VALID"}  # tflite.Padding


# --- reading operator options ---------------------------------------------------------------------


class _OperatorReader:
    """One operator of the flatbuffer as the option readers of :data:`READERS` see it."""

    def __init__(self, op: Any, tflite_module: Any):
        self._op, self._tflite = op, tflite_module

    def builtin(self, name: str) -> Any:
        """The operator's builtin options table as ``tflite.<name>``, or None when the file has none (or
        another kind of table)."""
        table = self._op.BuiltinOptions()
        if table is None or self._op.BuiltinOptionsType() != getattr(self._tflite.BuiltinOptions, name):
            return None
        options = getattr(self._tflite, name)()
        options.Init(table.Bytes, table.Pos)
        return options

    def required(self, name: str) -> Any:
        """:meth:`builtin`, which must be there."""
        options = self.builtin(name)
        if options is None:
            raise ValueError(f"its {name} are missing")
        return options

    def custom(self) -> bytes:
        """The custom options, raw (a flexbuffer for most MediaPipe operators)."""
        raw = self._op.CustomOptionsAsNumpy()
        return b"" if isinstance(raw, int) else raw.tobytes()

    def flexbuffer(self, *keys: str) -> dict[str, Any]:
        """``keys`` of the flexbuffer map in the custom options; a missing key is an error."""
        from flatbuffers import flexbuffers

        try:
            mapping = flexbuffers.Loads(self.custom())
        except Exception as exc:  # the decoder raises assorted errors on malformed bytes
            raise ValueError(f"its custom options are not a flexbuffer map ({exc})") from None
        missing = [key for key in keys if not isinstance(mapping, dict) or key not in mapping]
        if missing:
            raise ValueError(f"its custom options lack {missing}")
        return {key: mapping[key] for key in keys}


def _activation(code: int) -> str:
    if code not in ACTIVATIONS:
        raise ValueError(f"fused activation {code} is not supported (supported: "
                         f"{', '.join(name for name, _ in ACTIVATIONS.values())})")
    return ACTIVATIONS[code][0]


def _padding(code: int) -> str:
    if code not in _PADDING:
        raise ValueError(f"padding {code} is not supported")
    return _PADDING[code]


def _conv_options(op: _OperatorReader, name: str = "Conv2DOptions") -> dict[str, Any]:
    o = op.required(name)
    return {"padding": _padding(o.Padding()), "stride": [o.StrideH(), o.StrideW()],
            "dilation": [o.DilationHFactor(), o.DilationWFactor()],
            "activation": _activation(o.FusedActivationFunction())}


def _pool_options(op: _OperatorReader) -> dict[str, Any]:
    o = op.required("Pool2DOptions")
    return {"padding": _padding(o.Padding()), "stride": [o.StrideH(), o.StrideW()],
            "filter": [o.FilterHeight(), o.FilterWidth()], "activation": _activation(o.FusedActivationFunction())}


def _activation_options(name: str) -> Callable[[_OperatorReader], dict[str, Any]]:
    return lambda op: {"activation": _activation(op.required(name).FusedActivationFunction())}


def _reshape_options(op: _OperatorReader) -> dict[str, Any]:
    o = op.builtin("ReshapeOptions")
    return {"shape": o.NewShapeAsNumpy().tolist()} if o is not None and o.NewShapeLength() else {}


def _strided_slice_options(op: _OperatorReader) -> dict[str, Any]:
    o = op.required("StridedSliceOptions")
    if o.EllipsisMask() or o.NewAxisMask() or o.Offset():
        raise ValueError("ellipsis_mask, new_axis_mask and offset are not supported")
    return {"begin_mask": o.BeginMask(), "end_mask": o.EndMask(), "shrink_axis_mask": o.ShrinkAxisMask()}


def _check_strided_slice(options: dict[str, Any]) -> None:
    if min(options["strides"]) < 1:
        raise ValueError(f"strides {options['strides']}: only positive strides are supported")


def _check_reshape(options: dict[str, Any]) -> None:
    if "shape" not in options:
        raise ValueError("the new shape is neither an option nor a constant input")


def _transpose_conv_bias_options(op: _OperatorReader) -> dict[str, Any]:
    # Not a flexbuffer: MediaPipe reads the bytes as the C struct TfLiteTransposeConvParams
    # {TfLitePadding padding (1 = SAME, 2 = VALID); int stride_width; int stride_height; ...}.
    raw = op.custom()
    if len(raw) < 12:
        raise ValueError(f"its custom options have {len(raw)} bytes, not a TfLiteTransposeConvParams")
    padding, stride_w, stride_h = np.frombuffer(raw[:12], "<i4").tolist()
    if padding not in (1, 2):
        raise ValueError(f"padding {padding} is not supported")
    return {"padding": "SAME" if padding == 1 else "VALID", "stride": [stride_h, stride_w]}


def _l2tm_options(op: _OperatorReader) -> dict[str, Any]:
    o = op.flexbuffer("subset_idxs", "left_rotation_idx", "right_rotation_idx", "target_rotation_radians",
                      "output_height", "output_width", "scale_x", "scale_y")
    return {"subset_idxs": [int(i) for i in o["subset_idxs"]],
            **{k: int(o[k]) for k in ("left_rotation_idx", "right_rotation_idx", "output_height", "output_width")},
            **{k: float(o[k]) for k in ("target_rotation_radians", "scale_x", "scale_y")}}


def _ttb_options(op: _OperatorReader) -> dict[str, Any]:
    o = op.flexbuffer("output_height", "output_width")
    return {"output_height": int(o["output_height"]), "output_width": int(o["output_width"])}


# --- the operator table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OpReading:
    """How one TFLite operator kind is read from the flatbuffer (it runs as
    :data:`~portrait_stylize.models.tflite_graph.KERNELS` says).

    Attributes:
        read_options: the operator's options from the flatbuffer, as JSON values.
        static_inputs: input position -> option name for inputs that must be int32 constants (a pad
            table, a shape ...): read into the options here, so they are no tensors.
        check: validates the options once the static inputs are in (raises ValueError).
        versions: the custom operator versions whose semantics the kernel implements (None: any).
    """

    read_options: Callable[[_OperatorReader], dict[str, Any]] = lambda op: {}
    static_inputs: dict[int, str] = field(default_factory=dict)
    check: Callable[[dict[str, Any]], None] = lambda options: None
    versions: tuple[int, ...] | None = None


#: Operator name (builtin name, or the custom operator's name) -> how it is read; one entry per kernel.
READERS: dict[str, OpReading] = {
    "CONV_2D": OpReading(_conv_options),
    "DEPTHWISE_CONV_2D": OpReading(lambda op: _conv_options(op, "DepthwiseConv2DOptions")),
    "MAX_POOL_2D": OpReading(_pool_options),
    "AVERAGE_POOL_2D": OpReading(_pool_options),
    "PAD": OpReading(static_inputs={1: "paddings"}),
    "ADD": OpReading(_activation_options("AddOptions")),
    "MUL": OpReading(_activation_options("MulOptions")),
    "RELU": OpReading(),
    "PRELU": OpReading(),
    "HARD_SWISH": OpReading(),
    "LOGISTIC": OpReading(),
    "RESIZE_BILINEAR": OpReading(lambda op: {
        "align_corners": bool(op.required("ResizeBilinearOptions").AlignCorners()),
        "half_pixel_centers": bool(op.required("ResizeBilinearOptions").HalfPixelCenters())},
        static_inputs={1: "size"}),
    "DEPTH_TO_SPACE": OpReading(lambda op: {"block_size": op.required("DepthToSpaceOptions").BlockSize()}),
    "RESHAPE": OpReading(_reshape_options, static_inputs={1: "shape"}, check=_check_reshape),
    "CONCATENATION": OpReading(lambda op: {
        "axis": op.required("ConcatenationOptions").Axis(),
        **_activation_options("ConcatenationOptions")(op)}),
    "STRIDED_SLICE": OpReading(_strided_slice_options, static_inputs={1: "begin", 2: "end", 3: "strides"},
                               check=_check_strided_slice),
    "MEAN": OpReading(lambda op: {"keep_dims": bool(op.required("ReducerOptions").KeepDims())},
                      static_inputs={1: "axes"}),
    "Landmarks2TransformMatrix": OpReading(_l2tm_options, versions=(2,)),
    "TransformTensorBilinear": OpReading(_ttb_options, versions=(2,)),
    "TransformLandmarks": OpReading(versions=(2,)),
    "Convolution2DTransposeBias": OpReading(_transpose_conv_bias_options, versions=(1,)),
}

#: Operators applied to constants when the file is read (their outputs become constants).
FOLDED = ("DEQUANTIZE", "DENSIFY")


# --- sparse constants -----------------------------------------------------------------------------


def densify(values: np.ndarray, shape: Sequence[int], traversal_order: Sequence[int], block_map: Sequence[int],
            dim_metadata: Sequence[dict[str, Any]]) -> np.ndarray:
    """A TFLite sparse tensor (``DENSIFY``'s input) as a dense array of ``shape``.

    The stored tensor has ``len(traversal_order)`` levels: the ``rank`` dimensions of ``shape`` (block
    rows when blocked) in the order ``traversal_order[:rank]``, then one level per block dimension
    (``traversal_order`` value ``rank + k`` is block dimension ``k``, inside ``shape`` dimension
    ``block_map[k]``). ``dim_metadata`` has one entry per level, outermost first:
    ``{"format": "DENSE", "dense_size": n}`` or ``{"format": "SPARSE_CSR", "segments": s, "indices": i}``,
    where the children of the level's parent entry ``p`` are entries ``s[p]`` to ``s[p + 1] - 1`` with
    coordinates ``i[...]``. ``values`` are the stored non-zeros in that traversal order; the rest is 0.
    """
    rank = len(shape)
    # Walk the levels outermost first, vectorised over all paths: `position` is each path's entry
    # in the current level (a dense level's is parent * size + i, a sparse level's its CSR index),
    # `coords` its coordinate on every level so far.
    position = np.zeros(1, np.int64)
    coords: list[np.ndarray] = []
    for meta in dim_metadata:
        if meta["format"] == "DENSE":
            size = int(meta["dense_size"])
            coords = [np.repeat(c, size) for c in coords] + [np.tile(np.arange(size), len(position))]
            position = (position[:, None] * size + np.arange(size)).ravel()
        else:
            segments, indices = np.asarray(meta["segments"], np.int64), np.asarray(meta["indices"], np.int64)
            starts, counts = segments[position], segments[position + 1] - segments[position]
            position = np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(counts.sum())
            coords = [np.repeat(c, counts) for c in coords] + [indices[position]]
    if len(position) != values.size:
        raise ValueError(f"the sparsity parameters address {len(position)} values, the buffer has {values.size}")
    dense_index = [np.zeros(0, np.int64)] * rank
    for level in range(rank):
        dense_index[traversal_order[level]] = coords[level]
    for level in range(rank, len(dim_metadata)):
        dim = block_map[traversal_order[level] - rank]
        dense_index[dim] = dense_index[dim] * int(dim_metadata[level]["dense_size"]) + coords[level]
    dense = np.zeros(shape, values.dtype)
    dense[tuple(dense_index)] = values.ravel()
    return dense


def _sparsity(sparsity: Any, tflite: Any) -> tuple[list[int], list[int], list[dict[str, Any]]]:
    """``(traversal_order, block_map, dim_metadata)`` of a tensor's ``SparsityParameters`` for :func:`densify`."""
    vectors = {tflite.SparseIndexVector.Int32Vector: tflite.Int32Vector,
               tflite.SparseIndexVector.Uint16Vector: tflite.Uint16Vector,
               tflite.SparseIndexVector.Uint8Vector: tflite.Uint8Vector}

    def array(kind: int, table: Any) -> np.ndarray:
        if kind not in vectors:
            raise ValueError(f"sparse index vector type {kind} is not supported")
        vector = vectors[kind]()
        vector.Init(table.Bytes, table.Pos)
        return vector.ValuesAsNumpy()

    metadata = []
    for level in range(sparsity.DimMetadataLength()):
        meta = sparsity.DimMetadata(level)
        if meta.Format() == tflite.DimensionType.DENSE:
            metadata.append({"format": "DENSE", "dense_size": meta.DenseSize()})
        else:
            metadata.append({"format": "SPARSE_CSR",
                             "segments": array(meta.ArraySegmentsType(), meta.ArraySegments()),
                             "indices": array(meta.ArrayIndicesType(), meta.ArrayIndices())})
    block_map = sparsity.BlockMapAsNumpy().tolist() if sparsity.BlockMapLength() else []
    return sparsity.TraversalOrderAsNumpy().tolist(), block_map, metadata


# --- reading a file -------------------------------------------------------------------------------


def _execution_order(ops: list[dict[str, Any]], ready: set[int]) -> list[dict[str, Any]]:
    """``ops`` in an order where every input exists when read (TFLite's order if it is one)."""
    pending, order, ready = list(ops), [], set(ready)
    while pending:
        first = next((i for i, op in enumerate(pending) if all(t < 0 or t in ready for t in op["inputs"])), None)
        if first is None:
            raise ValueError(f"operator {pending[0]['type']} reads a tensor that no operator computes")
        order.append(pending.pop(first))
        ready.update(order[-1]["outputs"])
    return order


def read_tflite_graph(path: str | Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """``(spec, constants)`` of a single-graph float32 TFLite file, as :meth:`TFLiteGraph.from_spec` takes them."""
    import tflite

    path = Path(path)
    try:
        model = tflite.Model.GetRootAsModel(path.read_bytes(), 0)
        n_graphs = model.SubgraphsLength()
    except Exception as exc:  # flatbuffers raises assorted errors on garbage
        raise ConversionError(f"{path}: not a TFLite model ({exc})") from None
    if n_graphs != 1:
        raise ConversionError(f"{path}: {n_graphs} subgraphs; only single-graph models are supported")
    graph = model.Subgraphs(0)
    builtin_names = {code: name for name, code in vars(tflite.BuiltinOperator).items() if not name.startswith("_")}
    type_names = {code: name for name, code in vars(tflite.TensorType).items() if not name.startswith("_")}
    dtypes = {tflite.TensorType.FLOAT32: np.float32, tflite.TensorType.FLOAT16: np.float16,
              tflite.TensorType.INT32: np.int32}
    folded: dict[int, np.ndarray] = {}

    def info(index: int) -> dict[str, Any]:
        tensor = graph.Tensors(index)
        return {"name": tensor.Name().decode(), "shape": tensor.ShapeAsNumpy().tolist() if tensor.ShapeLength() else []}

    def stored(index: int) -> np.ndarray | None:
        """The tensor's buffer as an array of its type, or None for a computed tensor."""
        tensor = graph.Tensors(index)
        data = model.Buffers(tensor.Buffer()).DataAsNumpy()
        if isinstance(data, int) or not data.size:
            return None
        if tensor.Type() not in dtypes:
            raise ValueError(f"constant {info(index)['name']!r} has type {type_names.get(tensor.Type())}, "
                             f"not one of float32, float16, int32")
        return np.frombuffer(data.tobytes(), dtype=dtypes[tensor.Type()])

    def constant(index: int) -> np.ndarray | None:
        if index in folded:
            return folded[index]
        values = stored(index)
        if values is not None and graph.Tensors(index).Sparsity() is not None:
            raise ValueError(f"sparse constant {info(index)['name']!r} is read by an operator other than DENSIFY")
        return None if values is None else values.reshape(info(index)["shape"])

    def fold(kind: str, op: Any) -> np.ndarray:
        index = op.Inputs(0)
        if kind == "DENSIFY":
            values, tensor = stored(index), graph.Tensors(index)
            if values is None or tensor.Sparsity() is None:
                raise ValueError("its input is not a sparse constant")
            return densify(values, info(index)["shape"], *_sparsity(tensor.Sparsity(), tflite))
        value = constant(index)
        if value is None or value.dtype != np.float16:
            raise ValueError("only float16 constants are dequantized")
        return value.astype(np.float32)

    ops, float_constants = [], {}
    for n in range(graph.OperatorsLength()):
        op = graph.Operators(n)
        code = model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        kind = code.CustomCode().decode() if builtin == tflite.BuiltinOperator.CUSTOM else builtin_names.get(
            builtin, f"builtin operator #{builtin}")
        if kind not in READERS and kind not in FOLDED:
            raise ConversionError(f"{path}: the TFLite operator {kind} (operator {n}) is not supported; "
                                  f"supported: {', '.join(sorted(READERS))} and {', '.join(FOLDED)} of constants")
        try:
            if kind in FOLDED:
                folded[op.Outputs(0)] = fold(kind, op)
                continue
            reading = READERS[kind]
            if reading.versions is not None and code.Version() not in reading.versions:
                raise ValueError(f"version {code.Version()} is not supported (only {list(reading.versions)})")
            options, inputs = reading.read_options(_OperatorReader(op, tflite)), []
            for position, index in enumerate(op.InputsAsNumpy().tolist()):
                value = None if index < 0 else constant(index)
                if position in reading.static_inputs:
                    if value is None or value.dtype != np.int32:
                        raise ValueError(f"input {position} ({reading.static_inputs[position]}) is not an int32 "
                                         "constant")
                    options[reading.static_inputs[position]] = value.tolist()
                    continue
                if value is not None:
                    if value.dtype != np.float32:
                        raise ValueError(f"input {position} is a {value.dtype} constant; only float32 ones are data")
                    float_constants[index] = value
                inputs.append(index)
            reading.check(options)
            outputs = op.OutputsAsNumpy().tolist()
            for index in outputs:
                if graph.Tensors(index).Type() != tflite.TensorType.FLOAT32:
                    raise ValueError(f"output {info(index)['name']!r} is not float32")
        except ValueError as exc:
            raise ConversionError(f"{path}: operator {n} ({kind}): {exc}") from None
        if len(outputs) != 1:
            raise ConversionError(f"{path}: operator {n} ({kind}) has {len(outputs)} outputs; "
                                  f"only single-output operators are supported")
        ops.append({"type": kind, "inputs": inputs, "outputs": outputs, "options": options})

    graph_inputs = graph.InputsAsNumpy().tolist()
    for index in graph_inputs:
        if graph.Tensors(index).Type() != tflite.TensorType.FLOAT32:
            raise ConversionError(f"{path}: input {info(index)['name']!r} is not float32")
    try:
        ops = _execution_order(ops, set(graph_inputs) | set(float_constants))
    except ValueError as exc:
        raise ConversionError(f"{path}: {exc}") from None
    computed = set(graph_inputs) | {t for op in ops for t in op["outputs"]}
    graph_outputs = graph.OutputsAsNumpy().tolist()
    if not set(graph_outputs) <= computed:
        raise ConversionError(f"{path}: an output of the graph is not computed by its operators")
    spec = {"format": SPEC_FORMAT, "version": SPEC_VERSION, "source": path.name,
            "inputs": graph_inputs, "outputs": graph_outputs,
            "tensors": {str(i): info(i) for i in sorted(computed)},
            "constants": {str(i): info(i) for i in sorted(float_constants)},
            "ops": ops}
    return spec, {f"t{i}": torch.from_numpy(np.array(v, np.float32)) for i, v in float_constants.items()}




def load_tflite(path: str | Path) -> TFLiteGraph:
    """The graph of a ``.tflite`` file as a module; ConversionError names what cannot be run here."""
    return TFLiteGraph(*read_tflite_graph(path))
