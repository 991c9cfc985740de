"""TFLite's builtin operators in PyTorch, on tensors in TFLite's layout (NHWC, float32).

Each operator is a function ``(inputs, options) -> Tensor``: ``inputs`` are the operator's input
tensors in the file's order (``None`` for an absent optional one), ``options`` its options as
:mod:`.tflite_graph` reads them, or as its execution plan rewrites them (explicit padding, a fused
residual). Semantics follow TFLite's reference kernels exactly (see :mod:`.tflite_graph` for the
layout, batch and padding conventions).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

#: TFLite's fused activations: ``tflite.ActivationFunctionType`` code -> (name, function). The
#: operators apply them to the tensor they have just made, so the functions work in place: no second
#: tensor is allocated (on CPU, a fresh large tensor costs its page faults).
ACTIVATIONS: dict[int, tuple[str, Callable[[Tensor], Tensor]]] = {  # tflite.ActivationFunctionType
    0: ("NONE", lambda x: x),
    1: ("RELU", torch.relu_),
    2: ("RELU_N1_TO_1", lambda x: x.clamp_(-1.0, 1.0)),
    3: ("RELU6", lambda x: x.clamp_(0.0, 6.0)),
    4: ("TANH", torch.tanh_),
}
#: The fused activations by name, and the activation operators that :mod:`.tflite_graph` folds into
#: the operator before them (as if the file had fused them).
ACTIVATION_BY_NAME: dict[str, Callable[[Tensor], Tensor]] = {
    **dict(ACTIVATIONS.values()), "HARD_SWISH": lambda x: F.hardswish(x, inplace=True), "LOGISTIC": torch.sigmoid_}

#: An operator: ``kernel(inputs, options) -> output``. Each below takes the operator's inputs (NHWC
#: tensors, None for an omitted optional input) and its options (JSON values, as graph_spec() holds
#: them) and returns its one output.
Kernel = Callable[[list[Tensor | None], dict[str, Any]], Tensor]


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


def explicit_padding(options: dict[str, Any], size: Sequence[int], kernel: Sequence[int]) -> list[list[int]]:
    """A window operator's padding ``[[top, bottom], [left, right]]`` for an input of ``size`` (H, W):
    ``options["padding"]`` is ``"VALID"``, ``"SAME"`` or already explicit (as :mod:`.tflite_graph`
    resolves it, with a PAD folded in)."""
    padding = options["padding"]
    if padding == "VALID":
        return [[0, 0], [0, 0]]
    if padding == "SAME":
        dilation = options.get("dilation", [1, 1])
        return [list(same_padding(size[a], kernel[a], options["stride"][a], dilation[a])) for a in (0, 1)]
    return padding


def _pad_same(x: Tensor, options: dict[str, Any], kernel: Sequence[int], value: float = 0.0) -> Tensor:
    """Pad an NCHW tensor for a window op with ``value`` (a no-op without padding)."""
    (top, bottom), (left, right) = explicit_padding(options, x.shape[2:], kernel)
    return F.pad(x, (left, right, top, bottom), value=value) if top or bottom or left or right else x


#: Up to this many output values, a 1×1 convolution runs as a matrix product on the NHWC tensor:
#: less fixed cost than oneDNN's convolution, which is faster on larger tensors (the crossover
#: measured on the face models with 2 threads of an AVX-512 CPU).
MATMUL_MAX_OUTPUT = 1 << 16


def convolution_kernel(options: dict[str, Any], input_shape: Sequence[int], weight_shape: Sequence[int],
                       depthwise: bool) -> Kernel:
    """The kernel of one ``CONV_2D`` (or, ``depthwise``, ``DEPTHWISE_CONV_2D``) with everything its
    options and shapes decide worked out once: :mod:`.tflite_graph` makes one per operator, so that a
    forward pays for the tensors' work only. ``options["padding"]`` is explicit
    (:func:`explicit_padding`); ``input_shape`` (B, H, W, C), ``weight_shape`` in TFLite's layout.

    The kernel computes ``activation(conv(x) + bias + residual)`` from x, weight, bias (or None) and,
    where :mod:`.tflite_graph` fused an ``ADD``, its other operand, the residual: NHWC, the output's
    shape or fewer channels (the operand of a ``PAD`` of the channels with zeros, fused too). With
    ``options["overwrite_residual"]`` the result may take the residual's memory.
    """
    (top, bottom), (left, right) = options["padding"]
    stride, dilation = options["stride"], options["dilation"]
    activation = ACTIVATION_BY_NAME[options["activation"]]
    groups = input_shape[3] if depthwise else input_shape[3] // weight_shape[3]
    # PyTorch pads both sides alike: an odd padding pixel is padded beforehand.
    pad = (left, right, top, bottom) if top != bottom or left != right else None
    padding = (0, 0) if pad else (top, left)
    pointwise = (weight_shape[1] == weight_shape[2] == 1 and groups == 1 and not depthwise and stride == [1, 1]
                 and not (top or bottom or left or right))
    overwrite = pointwise and options.get("overwrite_residual", False)
    cout, cin = weight_shape[0], weight_shape[3]

    def kernel(inputs: list[Tensor | None], options: dict[str, Any]) -> Tensor:
        x, weight, bias, *residual = inputs
        if overwrite and residual[0].shape[3] == cout and residual[0].is_contiguous():
            # residual += x · weightᵀ in one matrix product, in the residual's memory: no new tensor.
            y = residual[0]
            y.view(-1, cout).addmm_(x.reshape(-1, cin), weight.view(cout, cin).t())
            if bias is not None:
                y += bias
            return activation(y)
        if pointwise and x.numel() // cin * cout <= MATMUL_MAX_OUTPUT:
            y = F.linear(x, weight.view(cout, cin), bias)
        else:
            x = nchw(x) if pad is None else F.pad(nchw(x), pad)
            weight = weight.permute(3, 0, 1, 2) if depthwise else weight.permute(0, 3, 1, 2)
            y = nhwc(F.conv2d(x, weight, bias, stride, padding, dilation, groups))
        if residual:
            y[..., :residual[0].shape[3]] += residual[0]  # fewer channels: the rest are a PAD's zeros
        return activation(y)

    return kernel


def conv_2d(inputs: list[Tensor | None], options: dict[str, Any]) -> Tensor:
    """``CONV_2D``: input (B, H, W, Cin), weight OHWI (Cout, kh, kw, Cin / groups), optional bias (Cout,)
    -> (B, H', W', Cout), then the fused activation (a fourth input: see :func:`convolution_kernel`)."""
    x, weight = inputs[:2]
    options = {**options, "padding": explicit_padding(options, x.shape[1:3], weight.shape[1:3])}
    return convolution_kernel(options, x.shape, weight.shape, depthwise=False)(inputs, options)


def depthwise_conv_2d(inputs: list[Tensor | None], options: dict[str, Any]) -> Tensor:
    """``DEPTHWISE_CONV_2D``: input (B, H, W, C), weight (1, kh, kw, C * multiplier) (output channel
    ``c * multiplier + m`` reads input channel ``c``), optional bias -> (B, H', W', C * multiplier)."""
    x, weight = inputs[:2]
    options = {**options, "padding": explicit_padding(options, x.shape[1:3], weight.shape[1:3])}
    return convolution_kernel(options, x.shape, weight.shape, depthwise=True)(inputs, options)


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
    if x.ndim > 1 and alpha.ndim and alpha.numel() == alpha.shape[-1] == x.shape[-1]:
        # One slope per channel: PyTorch's own kernel, one pass instead of where's three.
        return F.prelu(x.movedim(-1, 1), alpha.reshape(-1)).movedim(1, -1)
    return torch.where(x >= 0, x, x * alpha)


def _legacy_bilinear_axis(x: Tensor, dim: int, size: int) -> Tensor:
    """Resize one axis as TFLite's reference ``RESIZE_BILINEAR`` does with neither ``align_corners`` nor
    ``half_pixel_centers``: output pixel ``i`` samples ``i · n / size`` (bilinear is separable)."""
    n = x.shape[dim]
    source = torch.arange(size, device=x.device, dtype=torch.float32) * (n / size)
    low = source.floor()
    # Past the last pixel both neighbours are the last one, and the weights still sum to one.
    high = source.ceil().clamp(max=n - 1)
    weight = (source - low).to(x.dtype).view([size if d == dim % x.ndim else 1 for d in range(x.ndim)])
    return x.index_select(dim, low.long()) * (1 - weight) + x.index_select(dim, high.long()) * weight


def resize_bilinear(inputs: list[Tensor | None], options: dict[str, Any]) -> Tensor:
    """``RESIZE_BILINEAR`` of (B, H, W, C) to (B, ``size[0]``, ``size[1]``, C) with TFLite's three
    coordinate conventions: ``align_corners``, ``half_pixel_centers`` or neither (legacy TF 1)."""
    x = inputs[0]
    if options["align_corners"] or options["half_pixel_centers"]:
        # PyTorch's kernel has these two: its align_corners=False is half-pixel centres with sources
        # before the first pixel clamped to it, which is what TFLite's clamped neighbours give.
        return nhwc(F.interpolate(nchw(x), size=options["size"], mode="bilinear",
                                  align_corners=options["align_corners"]))
    for dim, size in ((1, options["size"][0]), (2, options["size"][1])):
        x = _legacy_bilinear_axis(x, dim, size)
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
