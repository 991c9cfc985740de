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

Serialisation: the module's ``state_dict()`` holds every float constant (buffers ``t<index>``, index =
the tensor's index in the file) and :meth:`TFLiteGraph.graph_spec` the rest as plain JSON (operators,
options, tensor indices, names and shapes).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConversionError, InvalidArgumentError
from . import mediapipe_ops, tflite_ops

#: ``graph_spec()["format"]`` and ``["version"]``, checked when a module is built from a spec.
SPEC_FORMAT, SPEC_VERSION = "portrait-stylize/tflite-graph", 1

Kernel = Callable[[list[Tensor | None], dict[str, Any]], Tensor]
#: Operator name (builtin name, or the custom operator's name) -> ``kernel(inputs, options) -> output``.
KERNELS: dict[str, Kernel] = {
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



class TFLiteGraph(nn.Module):
    """A TFLite graph run by PyTorch (see the module docstring for what it covers and its conventions).

    ``forward(*inputs)`` takes the graph's inputs in the file's order, each float32 with the file's
    shape except a free batch dimension (MediaPipe's models take one NHWC RGB image, (B, H, W, 3):
    128² in [-1, 1] for the short-range face detector, 192² in [-1, 1] for the full-range one, 192² in
    [0, 1] for the face meshes, 256² in [0, 1] for selfie segmentation), and returns the tuple of its
    outputs in the file's order (:attr:`output_names`), shapes as in the file with batch B.
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
        outputs = set(spec["outputs"])
        last_read: dict[int, int] = {}
        for step, op in enumerate(spec["ops"]):
            last_read.update((i, step) for i in op["inputs"] if str(i) not in spec["constants"] and i >= 0)
        # Computed tensors are dropped after their last reader, so a forward holds only live activations.
        self._release: list[list[int]] = [[] for _ in spec["ops"]]
        for index, step in last_read.items():
            if index not in outputs:
                self._release[step].append(index)

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
        spec = self._spec
        if len(inputs) != len(spec["inputs"]):
            raise InvalidArgumentError(f"{spec['source']} takes {len(spec['inputs'])} inputs, got {len(inputs)}")
        values: dict[int, Tensor] = {int(name[1:]): buffer for name, buffer in self.named_buffers()}
        for index, x in zip(spec["inputs"], inputs):
            expected = spec["tensors"][str(index)]["shape"]
            if list(x.shape[1:]) != expected[1:]:
                raise InvalidArgumentError(f"{spec['source']}: input {spec['tensors'][str(index)]['name']!r} must have "
                                           f"shape (B, {', '.join(map(str, expected[1:]))}), got {tuple(x.shape)}")
            values[index] = x
        for op, release in zip(spec["ops"], self._release):
            values[op["outputs"][0]] = KERNELS[op["type"]]([None if i < 0 else values[i] for i in op["inputs"]],
                                                           op["options"])
            for index in release:
                del values[index]
        return tuple(values[i] for i in spec["outputs"])
