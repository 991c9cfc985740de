"""A :class:`~.tflite_graph.TFLiteGraph` built again with OpenVINO's operators and run by OpenVINO on
the CPU: the face detectors, which run on every call, take about half the time there (OpenVINO
fuses each convolution with its activation and residual, and keeps one layout throughout).

The graph is the one :func:`~.tflite_graph.execution_plan` makes of the file (explicit padding,
folded ``PAD`` and activation operators, residuals as a convolution's fourth input), operator by
operator, so both runtimes compute the same values to float rounding (tests hold 1e-4).
Layout: OpenVINO's convolutions take NCHW, so the NHWC input is transposed once, every 4-D
feature map stays NCHW, and a tensor goes back to NHWC only where TFLite's layout shows: a
``RESHAPE``, a ``CONCATENATION`` of reshaped tensors, an output. Weights are laid out once
(OHWI -> OIHW; depthwise 1HWO -> groups), constants that broadcast against a feature map are
transposed with it. Only the operators in :data:`OPERATORS` are built (the detectors'): other
graphs stay with PyTorch (:func:`supports`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..common.openvino_compiled import CompiledPerShape, cpu_config, import_openvino, infer
from ..errors import InvalidArgumentError
from . import tflite_ops
from .tflite_graph import TFLiteGraph, execution_plan

OPERATORS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "PAD", "ADD", "RELU", "RESIZE_BILINEAR",
                       "DEPTH_TO_SPACE", "RESHAPE", "CONCATENATION"})
#: Input shapes of a fully convolutional graph kept compiled (a new picture size compiles, about 0.1 s).
COMPILED_SHAPES = 8
_TO_NCHW, _TO_NHWC = (0, 3, 1, 2), (0, 2, 3, 1)


def supports(graph: TFLiteGraph) -> bool:
    """Whether :class:`OpenVINOTFLiteGraph` can build ``graph`` (its operators are in :data:`OPERATORS`,
    one input)."""
    spec = graph.graph_spec()
    return len(spec["inputs"]) == 1 and {op["type"] for op in spec["ops"]} <= OPERATORS


def _activation(opset, x, name: str):
    if name == "NONE":
        return x
    if name == "RELU":
        return opset.relu(x)
    if name == "RELU6":
        return opset.clamp(x, 0.0, 6.0)
    if name == "RELU_N1_TO_1":
        return opset.clamp(x, -1.0, 1.0)
    raise InvalidArgumentError(f"activation {name} is not built for OpenVINO")


def build_model(graph: TFLiteGraph, any_size: bool):
    """``graph`` as an ``openvino.Model`` with one NHWC float32 input of free batch (``any_size``:
    and free height and width, multiples of ``graph.size_multiple``) and the graph's outputs in
    its order, shapes and layouts."""
    ov = import_openvino()
    import openvino.opset13 as opset

    spec = graph.graph_spec()
    constants = {int(name[1:]): value.float().numpy() for name, value in graph.state_dict().items()}
    shape = spec["tensors"][str(spec["inputs"][0])]["shape"]
    parameter = opset.parameter(ov.PartialShape([-1, -1, -1, shape[3]] if any_size else [-1, *shape[1:]]),
                                ov.Type.f32)
    # Tensor index -> (node, NCHW?): every 4-D computed tensor is NCHW until TFLite's layout shows.
    values: dict[int, tuple[Any, bool]] = {spec["inputs"][0]: (opset.transpose(parameter, _TO_NCHW), True)}

    def nhwc(index: int):
        node, is_nchw = values[index]
        return opset.transpose(node, _TO_NHWC) if is_nchw else node

    def operand(index: int, like_nchw: bool):
        """A computed tensor, or a constant laid out to broadcast against an NCHW feature map."""
        if index in values:
            return values[index][0]
        value = constants[index]
        if like_nchw:
            value = value.reshape((1,) * (4 - value.ndim) + value.shape).transpose(_TO_NCHW)
        return opset.constant(np.ascontiguousarray(value))

    for op in execution_plan(spec):
        kind, options, inputs = op["type"], op["options"], op["inputs"]
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            x = values[inputs[0]][0]
            weight = constants[inputs[1]]
            (top, bottom), (left, right) = options["padding"]
            window = dict(strides=options["stride"], pads_begin=[top, left], pads_end=[bottom, right],
                          dilations=options["dilation"])
            if kind == "CONV_2D":
                y = opset.convolution(x, opset.constant(np.ascontiguousarray(weight.transpose(0, 3, 1, 2))), **window)
            else:  # (1, kh, kw, C * m) -> (C groups, m outputs, 1 input, kh, kw)
                channels, (kh, kw, out) = _channels(spec, inputs[0]), weight.shape[1:]
                grouped = weight.reshape(kh, kw, channels, out // channels).transpose(2, 3, 0, 1)[:, :, None]
                y = opset.group_convolution(x, opset.constant(np.ascontiguousarray(grouped)), **window)
            if len(inputs) > 2 and inputs[2] >= 0:
                y = opset.add(y, opset.constant(constants[inputs[2]].reshape(1, -1, 1, 1)))
            if len(inputs) > 3:  # a fused ADD; fewer channels: the rest are a fused PAD's zeros
                residual = values[inputs[3]][0]
                missing = weight.shape[0 if kind == "CONV_2D" else 3] - _channels(spec, inputs[3])
                if missing:
                    residual = opset.pad(residual, [0, 0, 0, 0], [0, missing, 0, 0], "constant")
                y = opset.add(y, residual)
            values[op["outputs"][0]] = (_activation(opset, y, options["activation"]), True)
        elif kind == "MAX_POOL_2D":
            x = values[inputs[0]][0]
            (top, bottom), (left, right) = tflite_ops.explicit_padding(
                options, spec["tensors"][str(inputs[0])]["shape"][1:3], options["filter"])
            y = opset.max_pool(x, options["stride"], [1, 1], [top, left], [bottom, right], options["filter"]).output(0)
            values[op["outputs"][0]] = (_activation(opset, y, options["activation"]), True)
        elif kind == "PAD":
            x, is_nchw = values[inputs[0]]
            paddings = options["paddings"]
            if is_nchw:
                paddings = [paddings[axis] for axis in _TO_NCHW]
            values[op["outputs"][0]] = (opset.pad(x, [p[0] for p in paddings], [p[1] for p in paddings],
                                                  "constant"), is_nchw)
        elif kind == "ADD":
            is_nchw = any(values[i][1] for i in inputs if i in values)
            y = opset.add(operand(inputs[0], is_nchw), operand(inputs[1], is_nchw))
            values[op["outputs"][0]] = (_activation(opset, y, options["activation"]), is_nchw)
        elif kind == "RELU":
            x, is_nchw = values[inputs[0]]
            values[op["outputs"][0]] = (opset.relu(x), is_nchw)
        elif kind == "RESIZE_BILINEAR":
            mode = ("align_corners" if options["align_corners"] else
                    "half_pixel" if options["half_pixel_centers"] else "asymmetric")
            y = opset.interpolate(values[inputs[0]][0], np.array(options["size"], np.int64), "linear_onnx", "sizes",
                                  axes=np.array([2, 3], np.int64), coordinate_transformation_mode=mode)
            values[op["outputs"][0]] = (y, True)
        elif kind == "DEPTH_TO_SPACE":
            # TFLite's channel (i * b + j) * C + c is ONNX's "blocks first" (DCR) order.
            values[op["outputs"][0]] = (opset.depth_to_space(values[inputs[0]][0], "blocks_first",
                                                             options["block_size"]), True)
        elif kind == "RESHAPE":
            target = list(options["shape"])
            if target and target[0] == 1:
                target[0] = 0  # with special_zero: the input's batch
            values[op["outputs"][0]] = (opset.reshape(nhwc(inputs[0]), np.array(target, np.int64), True), False)
        elif kind == "CONCATENATION":
            rank = len(spec["tensors"][str(op["outputs"][0])]["shape"])
            axis = options["axis"] % rank
            is_nchw = all(values[i][1] for i in inputs)
            y = (opset.concat([values[i][0] for i in inputs], _TO_NCHW.index(axis)) if is_nchw
                 else opset.concat([nhwc(i) for i in inputs], axis))
            values[op["outputs"][0]] = (_activation(opset, y, options["activation"]), is_nchw)
        else:
            raise InvalidArgumentError(f"{spec['source']}: operator {kind} is not built for OpenVINO")
    return ov.Model([nhwc(i) for i in spec["outputs"]], [parameter], spec["source"])


def _channels(spec: dict[str, Any], index: int) -> int:
    """The channels (last dimension) of computed tensor ``index`` in the file."""
    return spec["tensors"][str(index)]["shape"][-1]


class OpenVINOTFLiteGraph:
    """``graph`` run by OpenVINO on the CPU with ``threads`` threads (default ``torch.get_num_threads()``),
    float32 precision: :meth:`forward` and :meth:`forward_any_size` as :class:`TFLiteGraph` has them,
    on NumPy arrays. Calls from several threads are safe.

    The fixed-size graph is compiled once with a free batch; the fully convolutional one once per
    input shape (free heights and widths ran half as fast), :data:`COMPILED_SHAPES` kept."""

    def __init__(self, graph: TFLiteGraph, threads: int | None = None) -> None:
        self._graph = graph
        config = cpu_config(threads)
        self._fixed = import_openvino().Core().compile_model(build_model(graph, any_size=False), "CPU", config)
        self._sized = CompiledPerShape(build_model(graph, any_size=True), config, COMPILED_SHAPES) \
            if graph.size_multiple else None

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        """The graph on a ``(B, H, W, C)`` float32 batch of the file's input size."""
        return infer(self._fixed, x)

    def forward_any_size(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        """:meth:`TFLiteGraph.forward_any_size`: sides multiples of the graph's ``size_multiple``.

        Raises:
            InvalidArgumentError: the graph is not fully convolutional, or a side is no multiple.
        """
        multiple = self._graph.size_multiple
        if multiple is None or x.ndim != 4 or x.shape[1] % multiple or x.shape[2] % multiple:
            raise InvalidArgumentError(f"{self._graph.graph_spec()['source']}: takes (B, H, W, C) with H and W "
                                       f"multiples of {multiple}, got {tuple(x.shape)}")
        return self._sized.run(x)
