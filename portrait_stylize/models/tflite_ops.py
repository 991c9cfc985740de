"""TFLite's builtin operators in PyTorch, on tensors in TFLite's layout (NHWC, float32).

Each operator is a function ``(inputs, options) -> Tensor``: ``inputs`` are the operator's input
tensors in the file's order (``None`` for an absent optional one), ``options`` its options as
:mod:`.tflite_graph` reads them. Semantics follow TFLite's reference kernels exactly (see
:mod:`.tflite_graph` for the layout, batch and padding conventions).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

#: TFLite's fused activations: ``tflite.ActivationFunctionType`` code -> (name, function).
ACTIVATIONS: dict[int, tuple[str, Callable[[Tensor], Tensor]]] = {  # tflite.ActivationFunctionType
    0: ("NONE", lambda x: x),
    1: ("RELU", F.relu),
    2: ("RELU_N1_TO_1", lambda x: x.clamp(-1.0, 1.0)),
    3: ("RELU6", lambda x: x.clamp(0.0, 6.0)),
    4: ("TANH", torch.tanh),
}
ACTIVATION_BY_NAME = dict(ACTIVATIONS.values())


# Each takes the operator's inputs (NHWC tensors, None for an omitted optional input) and its options
# (JSON values, as graph_spec() holds them) and returns its one output.


def nchw(x: Tensor) -> Tensor:
    """(B, H, W, C) -> a (B, C, H, W) view (channels_last memory)."""
    return x.permute(0, 3, 1, 2)


def nhwc(x: Tensor) -> Tensor:
    """(B, C, H, W) -> a (B, H, W, C) view."""
    return x.permute(0, 2, 3, 1)


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's ``SAME`` padding of one spatial axis, ``(before, after)``: enough for
    ``ceil(size / stride)`` outputs, the odd pixel after (TFLite and PyTorch differ here)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: Tensor, options: dict[str, Any], kernel: Sequence[int], value: float = 0.0) -> Tensor:
    """Pad an NCHW tensor for a ``SAME`` window op with ``value`` (a no-op for ``VALID``)."""
    if options["padding"] == "VALID":
        return x
    dilation = options.get("dilation", [1, 1])
    (top, bottom), (left, right) = (same_padding(x.shape[2 + a], kernel[a], options["stride"][a], dilation[a])
                                    for a in (0, 1))
    return F.pad(x, (left, right, top, bottom), value=value) if top or bottom or left or right else x


def conv_2d(inputs: list[Tensor | None], options: dict[str, Any]) -> Tensor:
    """``CONV_2D``: input (B, H, W, Cin), weight OHWI (Cout, kh, kw, Cin / groups), optional bias (Cout,)
    -> (B, H', W', Cout), then the fused activation."""
    x, weight, bias = inputs
    w = weight.permute(0, 3, 1, 2)
    x = _pad_same(nchw(x), options, w.shape[2:])
    y = F.conv2d(x, w, bias, options["stride"], dilation=options["dilation"], groups=x.shape[1] // w.shape[1])
    return ACTIVATION_BY_NAME[options["activation"]](nhwc(y))


def depthwise_conv_2d(inputs: list[Tensor | None], options: dict[str, Any]) -> Tensor:
    """``DEPTHWISE_CONV_2D``: input (B, H, W, C), weight (1, kh, kw, C * multiplier) (output channel
    ``c * multiplier + m`` reads input channel ``c``), optional bias -> (B, H', W', C * multiplier)."""
    x, weight, bias = inputs
    w = weight.permute(3, 0, 1, 2)
    x = _pad_same(nchw(x), options, w.shape[2:])
    y = F.conv2d(x, w, bias, options["stride"], dilation=options["dilation"], groups=x.shape[1])
    return ACTIVATION_BY_NAME[options["activation"]](nhwc(y))


def max_pool_2d(inputs: list[Tensor | None], options: dict[str, Any]) -> Tensor:
    """``MAX_POOL_2D`` of (B, H, W, C); ``SAME`` padding never wins (padded with -inf)."""
    x = _pad_same(nchw(inputs[0]), options, options["filter"], value=float("-inf"))
    return ACTIVATION_BY_NAME[options["activation"]](nhwc(F.max_pool2d(x, options["filter"], options["stride"])))


def average_pool_2d(inputs: list[Tensor | None], options: dict[str, Any]) -> Tensor:
    """``AVERAGE_POOL_2D`` of (B, H, W, C); with ``SAME`` padding each window is averaged over its
    real pixels only (TFLite's rule), also where the padding is asymmetric."""
    x = nchw(inputs[0])
    padded = _pad_same(x, options, options["filter"])
    if padded is x:
        y = F.avg_pool2d(x, options["filter"], options["stride"])
    else:
        ones = _pad_same(x.new_ones((1, 1, *x.shape[2:])), options, options["filter"])
        y = (F.avg_pool2d(padded, options["filter"], options["stride"], divisor_override=1)
             / F.avg_pool2d(ones, options["filter"], options["stride"], divisor_override=1))
    return ACTIVATION_BY_NAME[options["activation"]](nhwc(y))


def pad(inputs: list[Tensor | None], options: dict[str, Any]) -> Tensor:
    """``PAD`` with zeros; ``paddings`` = [[before, after] per dimension], outermost first."""
    return F.pad(inputs[0], [v for before_after in reversed(options["paddings"]) for v in before_after])


def add(inputs: list[Tensor | None], options: dict[str, Any]) -> Tensor:
    """``ADD`` with NumPy broadcasting, then the fused activation."""
    return ACTIVATION_BY_NAME[options["activation"]](inputs[0] + inputs[1])


def mul(inputs: list[Tensor | None], options: dict[str, Any]) -> Tensor:
    """``MUL`` with NumPy broadcasting, then the fused activation."""
    return ACTIVATION_BY_NAME[options["activation"]](inputs[0] * inputs[1])


def relu(inputs: list[Tensor | None], options: dict[str, Any]) -> Tensor:
    """``RELU``: ``max(x, 0)``."""
    return F.relu(inputs[0])


def hard_swish(inputs: list[Tensor | None], options: dict[str, Any]) -> Tensor:
    """``HARD_SWISH``: ``x · relu6(x + 3) / 6``."""
    return F.hardswish(inputs[0])


def logistic(inputs: list[Tensor | None], options: dict[str, Any]) -> Tensor:
    """``LOGISTIC``: the sigmoid ``1 / (1 + exp(-x))``."""
    return torch.sigmoid(inputs[0])


def prelu(inputs: list[Tensor | None], options: dict[str, Any]) -> Tensor:
    """``PRELU``: ``x`` where ``x >= 0``, else ``alpha * x``; alpha broadcasts (e.g. (1, 1, C))."""
    x, alpha = inputs
    return torch.where(x >= 0, x, x * alpha)


def _bilinear_axis(x: Tensor, dim: int, size: int, align_corners: bool, half_pixel_centers: bool) -> Tensor:
    """Resize one axis as TFLite's reference ``RESIZE_BILINEAR`` does (bilinear is separable)."""
    n = x.shape[dim]
    scale = (n - 1) / (size - 1) if align_corners and size > 1 else n / size
    position = torch.arange(size, device=x.device, dtype=torch.float32)
    source = (position + 0.5) * scale - 0.5 if half_pixel_centers else position * scale
    low = source.floor().clamp(min=0)
    high = source.ceil().clamp(max=n - 1)
    # The weight is measured from the clamped lower neighbour, as TFLite does; where both neighbours
    # are clamped to the same pixel the weights still sum to one.
    weight = (source - low).to(x.dtype).view([size if d == dim % x.ndim else 1 for d in range(x.ndim)])
    return x.index_select(dim, low.long()) * (1 - weight) + x.index_select(dim, high.long()) * weight


def resize_bilinear(inputs: list[Tensor | None], options: dict[str, Any]) -> Tensor:
    """``RESIZE_BILINEAR`` of (B, H, W, C) to (B, ``size[0]``, ``size[1]``, C) with TFLite's three
    coordinate conventions: ``align_corners``, ``half_pixel_centers`` or neither (legacy TF 1)."""
    x = inputs[0]
    for dim, size in ((1, options["size"][0]), (2, options["size"][1])):
        x = _bilinear_axis(x, dim, size, options["align_corners"], options["half_pixel_centers"])
    return x


def depth_to_space(inputs: list[Tensor | None], options: dict[str, Any]) -> Tensor:
    """``DEPTH_TO_SPACE`` (B, H, W, b * b * C) -> (B, H * b, W * b, C): channel ``(i * b + j) * C + c``
    goes to pixel ``(h * b + i, w * b + j)``."""
    x, b = inputs[0], options["block_size"]
    n, h, w, c = x.shape
    return x.reshape(n, h, w, b, b, c // (b * b)).permute(0, 1, 3, 2, 4, 5).reshape(n, h * b, w * b, c // (b * b))


def reshape(inputs: list[Tensor | None], options: dict[str, Any]) -> Tensor:
    """``RESHAPE`` to ``shape``; a leading 1 (the file's batch) becomes the input's batch."""
    x, shape = inputs[0], list(options["shape"])
    if shape and shape[0] == 1:
        shape[0] = x.shape[0]
    return x.reshape(shape)


def concatenation(inputs: list[Tensor | None], options: dict[str, Any]) -> Tensor:
    """``CONCATENATION`` along ``axis`` (negative counts from the end), then the fused activation."""
    return ACTIVATION_BY_NAME[options["activation"]](torch.cat(inputs, dim=options["axis"]))


def strided_slice(inputs: list[Tensor | None], options: dict[str, Any]) -> Tensor:
    """``STRIDED_SLICE`` with ``begin_mask``/``end_mask``/``shrink_axis_mask`` and positive strides.
    ``[0, 1)`` on the first axis is the file's whole batch and keeps every batch element."""
    index: list[int | slice] = []
    for axis, (begin, end, stride) in enumerate(zip(options["begin"], options["end"], options["strides"])):
        begin = None if options["begin_mask"] >> axis & 1 else begin
        end = None if options["end_mask"] >> axis & 1 else end
        if options["shrink_axis_mask"] >> axis & 1:
            index.append(begin or 0)
        elif axis == 0 and not begin and end == 1 and stride == 1:
            index.append(slice(None))
        else:
            index.append(slice(begin, end, stride))
    return inputs[0][tuple(index)]


def mean(inputs: list[Tensor | None], options: dict[str, Any]) -> Tensor:
    """``MEAN`` over ``axes``, keeping them as size 1 when ``keep_dims``."""
    return inputs[0].mean(dim=options["axes"], keepdim=options["keep_dims"])
