"""A TFLite graph run by PyTorch, from a JSON description and its constants: how MediaPipe's face
detection, face mesh and selfie segmentation models run in this package (their ``.tflite`` files are
read once by :mod:`portrait_stylize.convert.tflite_reader`; the package ships the result).

Conventions:

* Layout: every tensor keeps its TFLite layout and shape, so images and feature maps are NHWC and
  float32, inputs are fed and outputs come back exactly as the TFLite interpreter has them. Spatial
  operators look at an NHWC tensor through ``permute(0, 3, 1, 2)``, which is an NCHW tensor in
  PyTorch's ``channels_last`` memory format: PyTorch's convolution and pooling kernels take it
  without a copy, and weights stay in TFLite's layouts (OHWI, depthwise 1HWO).
* Batch: the files have batch 1; here the leading dimension is free. A ``RESHAPE`` to a shape that
  starts with 1, and a ``STRIDED_SLICE`` of ``[0, 1)`` on the first axis, keep the input's batch, and
  the custom operators compute one result per batch element (TFLite's kernels read element 0 only).
* Padding: ``SAME`` is TensorFlow's: ``ceil(size / stride)`` outputs, the odd padding pixel after;
  max pooling ignores padded pixels and average pooling divides by the number of real ones.
* Fusion: ``forward`` runs the operators of :func:`execution_plan`, the file's with the padding,
  residual additions and activations around a convolution folded into it, each convolution with a
  kernel prepared once (:func:`~.tflite_ops.convolution_kernel`): the same values to float rounding,
  in fewer passes over memory. Activations and additions work in place on tensors nothing else
  reads, so the module is for inference: gradients through it are not supported.

Serialisation: the module's ``state_dict()`` holds every float constant (buffers ``t<index>``, index =
the tensor's index in the file) and :meth:`TFLiteGraph.graph_spec` the rest as plain JSON (operators,
options, tensor indices, names and shapes).
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConversionError, InvalidArgumentError
from . import mediapipe_ops, tflite_ops

#: ``graph_spec()["format"]`` and ``["version"]``, checked when a module is built from a spec.
SPEC_FORMAT, SPEC_VERSION = "portrait-stylize/tflite-graph", 1

#: Operator name (builtin name, or the custom operator's name) -> ``kernel(inputs, options) -> output``.
KERNELS: dict[str, tflite_ops.Kernel] = {
    "CONV_2D": tflite_ops.conv_2d,
    "DEPTHWISE_CONV_2D": tflite_ops.depthwise_conv_2d,
    "MAX_POOL_2D": tflite_ops.max_pool_2d,
    "AVERAGE_POOL_2D": tflite_ops.average_pool_2d,
    "PAD": tflite_ops.pad,
    "ADD": tflite_ops.add,
    "MUL": tflite_ops.mul,
    "RELU": tflite_ops.relu,
    "PRELU": tflite_ops.prelu,
    "HARD_SWISH": tflite_ops.hard_swish,
    "LOGISTIC": tflite_ops.logistic,
    "RESIZE_BILINEAR": tflite_ops.resize_bilinear,
    "DEPTH_TO_SPACE": tflite_ops.depth_to_space,
    "RESHAPE": tflite_ops.reshape,
    "CONCATENATION": tflite_ops.concatenation,
    "STRIDED_SLICE": tflite_ops.strided_slice,
    "MEAN": tflite_ops.mean,
    "Landmarks2TransformMatrix": mediapipe_ops.landmarks_to_transform_matrix,
    "TransformTensorBilinear": mediapipe_ops.transform_tensor_bilinear,
    "TransformLandmarks": mediapipe_ops.transform_landmarks,
    "Convolution2DTransposeBias": mediapipe_ops.transpose_conv_bias,
}
_CONVOLUTIONS = {"CONV_2D", "DEPTHWISE_CONV_2D"}
#: Operators whose kernel applies ``options["activation"]`` to its result.
_WITH_ACTIVATION = _CONVOLUTIONS | {"MAX_POOL_2D", "AVERAGE_POOL_2D", "ADD", "MUL", "CONCATENATION"}
#: Activation operators that can become the activation of the operator before them.
_ACTIVATION_OPERATORS = {"RELU", "HARD_SWISH", "LOGISTIC"}
#: Operators whose result may share its operand's memory (the other kernels make a new tensor).
_VIEWS = {"RESHAPE", "STRIDED_SLICE", "DEPTH_TO_SPACE"}
#: Operators that compute the same at any input size (a ``RESHAPE`` too when it keeps a -1).
_SIZE_FREE = _CONVOLUTIONS | {"MAX_POOL_2D", "AVERAGE_POOL_2D", "PAD", "ADD", "MUL", "CONCATENATION", "PRELU",
                              *_ACTIVATION_OPERATORS}


def _shapes(spec: dict[str, Any]) -> dict[int, list[int]]:
    """Tensor index -> its shape in the file (batch 1), computed tensors and constants alike."""
    shapes = {int(i): t["shape"] for i, t in spec["tensors"].items()}
    shapes.update((int(i), t["shape"]) for i, t in spec["constants"].items())
    return shapes


def size_multiple(spec: dict[str, Any]) -> int | None:
    """The multiple of which a fully convolutional graph takes any input height and width (its
    largest stride from the input), or ``None`` when the graph is not fully convolutional (a
    resize to a fixed size, a custom operator, a ``RESHAPE`` to a fixed shape).

    On sides that are multiples of every stride, ``SAME`` padding is the same at any size
    (``kernel - stride`` in all), so the padding worked out for the file's shapes holds."""
    strides = {i: 1 for i in spec["inputs"]}
    for op in spec["ops"]:
        if op["type"] not in _SIZE_FREE and not (op["type"] == "RESHAPE" and -1 in op["options"]["shape"]):
            return None
        stride = max((strides[i] for i in op["inputs"] if i in strides), default=1)
        for output in op["outputs"]:
            strides[output] = stride * max(op["options"].get("stride", [1]))
    return max(strides.values())


def execution_plan(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The operators ``forward`` runs: ``spec["ops"]`` rewritten to compute the same values (to float
    rounding) in fewer passes over memory, each rewrite only where nothing else reads the tensor it
    removes:

    * a convolution's padding becomes explicit, ``[[top, bottom], [left, right]]``, and takes in a
      ``PAD`` of the height and width before it (TFLite pads with zeros, as the convolution does);
    * an ``ADD`` of a convolution's result (activation ``NONE``) and another computed tensor of the
      same shape, or a ``PAD`` of its channels with zeros after them, becomes the convolution with
      that tensor (the ``PAD``'s operand) as a fourth input, added in place before the activation,
      which becomes the ``ADD``'s;
    * an activation operator (:data:`_ACTIVATION_OPERATORS`) of the result of an operator whose
      activation is ``NONE`` becomes that activation.

    A fused operator runs where the last operator it replaces ran, when all its inputs exist. A
    convolution's residual gets ``options["overwrite_residual"]``: true where the convolution may
    write its result into the residual's memory (a tensor computed here, read by nothing after it and
    shared with no view), which spares allocating a tensor.
    """
    shapes = _shapes(spec)
    readers = Counter(i for op in spec["ops"] for i in op["inputs"])
    readers.update(spec["outputs"])
    # Output tensor -> its operator, in execution order; an operator fused into a later one leaves.
    plan: dict[int, dict[str, Any]] = {}

    def sole_reader(index: int, types: set[str]) -> dict[str, Any] | None:
        """The operator of ``types`` that makes tensor ``index`` when the caller is its only reader."""
        producer = plan.get(index)
        return producer if producer is not None and producer["type"] in types and readers[index] == 1 else None

    for op in spec["ops"]:
        op = {**op, "inputs": list(op["inputs"]), "options": dict(op["options"])}
        if op["type"] in _CONVOLUTIONS:
            x, weight = op["inputs"][:2]
            padding = tflite_ops.explicit_padding(op["options"], shapes[x][1:3], shapes[weight][1:3])
            pad = sole_reader(x, {"PAD"})
            if pad is not None and pad["options"]["paddings"][0] == pad["options"]["paddings"][3] == [0, 0]:
                del plan[x]
                op["inputs"][0] = pad["inputs"][0]
                padding = [[a + b for a, b in zip(mine, theirs)]
                           for mine, theirs in zip(padding, pad["options"]["paddings"][1:3])]
            op["options"]["padding"] = padding
        elif op["type"] == "ADD":
            for conv_out, other in (op["inputs"], op["inputs"][::-1]):
                conv = sole_reader(conv_out, _CONVOLUTIONS)
                if (conv is None or conv["options"]["activation"] != "NONE" or len(conv["inputs"]) != 3
                        or str(other) in spec["constants"] or shapes[other] != shapes[conv_out]):
                    continue
                pad = sole_reader(other, {"PAD"})
                if pad is not None and pad["options"]["paddings"][:3] == [[0, 0]] * 3 \
                        and pad["options"]["paddings"][3][0] == 0:
                    del plan[other]
                    other = pad["inputs"][0]
                del plan[conv_out]
                op = {**conv, "inputs": conv["inputs"] + [other], "outputs": op["outputs"],
                      "options": {**conv["options"], "activation": op["options"]["activation"]}}
                break
        elif op["type"] in _ACTIVATION_OPERATORS:
            producer = sole_reader(op["inputs"][0], _WITH_ACTIVATION)
            if producer is not None and producer["options"]["activation"] == "NONE":
                del plan[op["inputs"][0]]
                op = {**producer, "outputs": op["outputs"],
                      "options": {**producer["options"], "activation": op["type"]}}
        plan[op["outputs"][0]] = op
    ops = list(plan.values())
    last_reader = {i: step for step, op in enumerate(ops) for i in op["inputs"]}
    viewed = {i for op in ops if op["type"] in _VIEWS for i in op["inputs"]}
    for step, op in enumerate(ops):
        if op["type"] in _CONVOLUTIONS and len(op["inputs"]) == 4:
            residual = op["inputs"][3]
            producer = plan.get(residual)
            op["options"]["overwrite_residual"] = (
                producer is not None and producer["type"] not in _VIEWS and residual not in viewed
                and last_reader[residual] == step and residual not in spec["outputs"])
    return ops


class TFLiteGraph(nn.Module):
    """A TFLite graph run by PyTorch (see the module docstring for what it covers and its conventions).

    ``forward(*inputs)`` takes the graph's inputs in the file's order, each float32 with the file's
    shape except a free batch dimension (MediaPipe's models take one NHWC RGB image, (B, H, W, 3):
    128² in [-1, 1] for the short-range face detector, 192² in [-1, 1] for the full-range one, 192² in
    [0, 1] for the face meshes, 256² in [0, 1] for selfie segmentation), and returns the tuple of its
    outputs in the file's order (:attr:`output_names`), shapes as in the file with batch B.
    :meth:`forward_any_size` runs a fully convolutional graph on other heights and widths.
    """

    def __init__(self, spec: dict[str, Any], constants: dict[str, Tensor]):
        super().__init__()
        if spec.get("format") != SPEC_FORMAT or spec.get("version") != SPEC_VERSION:
            raise ConversionError(f"not a TFLite graph description of version {SPEC_VERSION} "
                                  f"(format {spec.get('format')!r}, version {spec.get('version')!r})")
        unknown = sorted({op["type"] for op in spec["ops"]} - set(KERNELS))
        if unknown:
            raise ConversionError(f"{spec.get('source')}: operators {unknown} are not supported")
        missing = sorted(set(f"t{i}" for i in spec["constants"]) - set(constants))
        if missing:
            raise ConversionError(f"{spec.get('source')}: the weights lack the constants {missing}")
        self._spec = copy.deepcopy(spec)
        for index, tensor_info in spec["constants"].items():
            value = constants[f"t{index}"]
            if list(value.shape) != tensor_info["shape"]:
                raise ConversionError(f"{spec.get('source')}: constant t{index} has shape {list(value.shape)}, "
                                      f"the graph says {tensor_info['shape']}")
            self.register_buffer(f"t{index}", value.detach().to(torch.float32).clone())
        self._constants = [(int(index), f"t{index}") for index in spec["constants"]]
        #: The side multiple :meth:`forward_any_size` takes (:func:`size_multiple`; ``None``: fixed size only).
        self.size_multiple = size_multiple(spec)
        plan = execution_plan(spec)
        outputs = set(spec["outputs"])
        last_read: dict[int, int] = {}
        for step, op in enumerate(plan):
            last_read.update((i, step) for i in op["inputs"] if str(i) not in spec["constants"] and i >= 0)
        # Computed tensors are dropped after their last reader, so a forward holds only live activations.
        release: list[list[int]] = [[] for _ in plan]
        for index, step in last_read.items():
            if index not in outputs:
                release[step].append(index)
        shapes = _shapes(spec)
        #: (kernel, input indices, output index, options, tensors to drop after it) per operator run;
        #: each convolution has a kernel of its own, with what its options decide worked out here.
        self._steps = [(tflite_ops.convolution_kernel(op["options"], shapes[op["inputs"][0]], shapes[op["inputs"][1]],
                                                      op["type"] == "DEPTHWISE_CONV_2D")
                        if op["type"] in _CONVOLUTIONS else KERNELS[op["type"]],
                        op["inputs"], op["outputs"][0], op["options"], drop)
                       for op, drop in zip(plan, release)]

    @classmethod
    def from_spec(cls, spec: dict[str, Any], state_dict: dict[str, Tensor]) -> TFLiteGraph:
        """Rebuild a module from :meth:`graph_spec` (e.g. after a JSON round trip) and its ``state_dict()``."""
        return cls(spec, state_dict)

    def graph_spec(self) -> dict[str, Any]:
        """The graph without its constants, as JSON values: ``format``/``version``, ``source`` (the file's
        name), ``inputs``/``outputs`` (tensor indices), ``tensors`` and ``constants`` (index -> name,
        shape), ``ops`` in execution order (``type``, ``inputs`` with -1 for an omitted optional input,
        ``outputs``, ``options``)."""
        return copy.deepcopy(self._spec)

    @property
    def input_names(self) -> list[str]:
        """The graph's input tensor names, in ``forward``'s order."""
        return [self._spec["tensors"][str(i)]["name"] for i in self._spec["inputs"]]

    @property
    def output_names(self) -> list[str]:
        """The graph's output tensor names, in the order ``forward`` returns them."""
        return [self._spec["tensors"][str(i)]["name"] for i in self._spec["outputs"]]

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        return self._run(inputs, any_size=False)

    def forward_any_size(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        """``forward`` on NHWC inputs of any height and width that are multiples of
        :func:`size_multiple`, for a fully convolutional graph: the same as sliding the file's
        input window over the picture at every multiple of that stride, each window seeing the
        picture around it where the file's input would see padding. Outputs whose ``RESHAPE``
        keeps a -1 grow with the picture (the short-range face detector's anchors: row by row
        over the bigger grids).

        Raises:
            InvalidArgumentError: the graph is not fully convolutional, or a side is no multiple.
        """
        return self._run(inputs, any_size=True)

    def _run(self, inputs: tuple[Tensor, ...], any_size: bool) -> tuple[Tensor, ...]:
        spec = self._spec
        if len(inputs) != len(spec["inputs"]):
            raise InvalidArgumentError(f"{spec['source']} takes {len(spec['inputs'])} inputs, got {len(inputs)}")
        multiple = self.size_multiple
        if any_size and multiple is None:
            raise InvalidArgumentError(f"{spec['source']} is not fully convolutional: it takes only its own input size")
        buffers = self._buffers  # read directly: named_buffers() costs more than a small graph's operator
        values: dict[int, Tensor] = {index: buffers[name] for index, name in self._constants}
        for index, x in zip(spec["inputs"], inputs):
            expected = spec["tensors"][str(index)]["shape"]
            if any_size:
                fits = x.ndim == 4 and x.shape[3] == expected[3] and x.shape[1] % multiple == 0 == x.shape[2] % multiple
                wanted = f"(B, H, W, {expected[3]}) with H and W multiples of {multiple}"
            else:
                fits, wanted = list(x.shape[1:]) == expected[1:], f"(B, {', '.join(map(str, expected[1:]))})"
            if not fits:
                raise InvalidArgumentError(f"{spec['source']}: input {spec['tensors'][str(index)]['name']!r} must have "
                                           f"shape {wanted}, got {tuple(x.shape)}")
            values[index] = x
        for kernel, indices, output, options, drop in self._steps:
            values[output] = kernel([None if i < 0 else values[i] for i in indices], options)
            for index in drop:
                del values[index]
        return tuple(values[i] for i in spec["outputs"])
