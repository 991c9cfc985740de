"""Convert released TTN weights (White-box / DCT-Net) into portrait-stylize styles.

Weights are matched by graph structure: the convolutions of the released graph, in execution
order, must have exactly the kinds and shapes of :meth:`TTN.conv_layers`; anything missing, extra
or of the wrong shape stops with an error naming the layer. Names in the graph are not trusted.

Supported so far: TFLite flatbuffers (float32, fp16 constants behind ``DEQUANTIZE``, int8
dynamic-range constants with per-channel scales).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import PortraitStylizeError
from .models.ttn import TTN


class ConversionError(PortraitStylizeError, ValueError):
    """The source graph does not have the structure of a DCT-Net/White-box TTN."""


@dataclass
class TTNWeights:
    """What a converter reads from a released graph.

    Attributes:
        convs: ``(weight, bias)`` per convolution in execution order; weights OHWI float32.
        gf_eps: the guided filter's eps constant, when the graph contains the filter.
        negative_slope: the LeakyReLU slope found in the graph.
    """

    convs: list[tuple[np.ndarray, np.ndarray]]
    gf_eps: float | None
    negative_slope: float | None


def ttn_from_weights(weights: TTNWeights, source: str, **ttn_kwargs) -> TTN:
    """Build a :class:`TTN` and load ``weights`` into it, checking the structure layer by layer."""
    if weights.gf_eps is not None:
        ttn_kwargs.setdefault("gf_eps", weights.gf_eps)
    if weights.negative_slope is not None:
        ttn_kwargs.setdefault("negative_slope", weights.negative_slope)
    net = TTN(**ttn_kwargs).eval()
    layers = net.conv_layers()
    for i, (name, conv) in enumerate(layers):
        if i >= len(weights.convs):
            raise ConversionError(f"{source}: missing layer {i} ({name}, expected weight {tuple(conv.weight.shape)} OIHW); "
                                  f"the graph has only {len(weights.convs)} convolutions")
        w, b = weights.convs[i]
        expected = tuple(conv.weight.shape)
        got = (w.shape[0], w.shape[3], w.shape[1], w.shape[2]) if w.ndim == 4 else tuple(w.shape)
        if got != expected or b.shape != (expected[0],):
            raise ConversionError(f"{source}: layer {i} ({name}) has weight {got} OIHW and bias {b.shape}; "
                                  f"a TTN needs {expected} and ({expected[0]},)")
        conv.weight.data = torch.from_numpy(np.ascontiguousarray(w.transpose(0, 3, 1, 2)))
        conv.bias.data = torch.from_numpy(np.ascontiguousarray(b))
    if len(weights.convs) > len(layers):
        raise ConversionError(f"{source}: extra convolution(s) after the TTN's {len(layers)} layers "
                              f"(found {len(weights.convs)}); this is not a DCT-Net/White-box TTN")
    return net


def read_tflite(path: str | Path) -> TTNWeights:
    """Read TTN weights from a TFLite file (float32, fp16 + DEQUANTIZE, or int8 dynamic range)."""
    import tflite

    path = Path(path)
    model = tflite.Model.GetRootAsModel(path.read_bytes(), 0)
    graph = model.Subgraphs(0)
    dtypes = {tflite.TensorType.FLOAT32: np.float32, tflite.TensorType.FLOAT16: np.float16,
              tflite.TensorType.INT8: np.int8}

    def kind(op) -> int:
        code = model.OperatorCodes(op.OpcodeIndex())
        return max(code.BuiltinCode(), code.DeprecatedBuiltinCode())

    ops = [graph.Operators(i) for i in range(graph.OperatorsLength())]
    dequantized = {op.Outputs(0): op.Inputs(0) for op in ops if kind(op) == tflite.BuiltinOperator.DEQUANTIZE}

    def constant(index: int) -> np.ndarray:
        tensor = graph.Tensors(dequantized.get(index, index))
        data = model.Buffers(tensor.Buffer()).DataAsNumpy()
        if tensor.Type() not in dtypes or isinstance(data, int):
            raise ConversionError(f"{path}: tensor {tensor.Name().decode()!r} is not a float/int8 constant")
        shape = tuple(tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
        arr = np.frombuffer(data.tobytes(), dtype=dtypes[tensor.Type()]).reshape(shape).astype(np.float32)
        quant = tensor.Quantization()
        if tensor.Type() == tflite.TensorType.INT8 and quant is not None and quant.ScaleLength():
            scale = quant.ScaleAsNumpy().astype(np.float32)
            if arr.ndim and scale.size > 1:
                scale = scale.reshape([-1 if d == quant.QuantizedDimension() else 1 for d in range(arr.ndim)])
            arr = arr * scale
        return arr

    convs, eps, slopes = [], None, set()
    for op in ops:
        k = kind(op)
        if k == tflite.BuiltinOperator.CONV_2D:
            convs.append((constant(op.Inputs(1)), constant(op.Inputs(2))))
        elif k == tflite.BuiltinOperator.LEAKY_RELU:
            table = op.BuiltinOptions()
            options = tflite.LeakyReluOptions()
            options.Init(table.Bytes, table.Pos)
            slopes.add(round(float(options.Alpha()), 6))
        elif k == tflite.BuiltinOperator.ADD and op.InputsLength() == 2:
            # The guided filter's "var + eps": the only ADD with a scalar constant operand.
            other = graph.Tensors(dequantized.get(op.Inputs(1), op.Inputs(1)))
            if other.ShapeLength() == 0 and model.Buffers(other.Buffer()).DataLength() > 0:
                eps = float(constant(op.Inputs(1)))
    if len(slopes) > 1:
        raise ConversionError(f"{path}: LeakyReLU slopes differ between layers ({sorted(slopes)})")
    return TTNWeights(convs=convs, gf_eps=eps, negative_slope=slopes.pop() if slopes else None)
