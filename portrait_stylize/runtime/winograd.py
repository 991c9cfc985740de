"""3×3 convolutions with a quarter of the multiplications: Winograd's minimal filtering F(4×4, 3×3).

A 3×3 convolution computes each 4×4 block of output pixels from a 6×6 block of input pixels with
144 multiply-adds per input/output channel pair. Winograd's algorithm (Lavin & Gray, "Fast
Algorithms for Convolutional Neural Networks", 2016) transforms the 6×6 input block and the 3×3
kernel into 36 values each (fixed linear maps with small integer or fractional coefficients),
multiplies them element by element, summed over input channels, and transforms the 36 products
back into the 4×4 outputs: 36 multiply-adds per channel pair, 4× fewer. The transforms cost
additions per channel (not per channel pair), so the saving grows with the channel count.

Why here: on CPUs without bf16 or int8 dot-product units (plain AVX2: most laptops, free cloud
machines) a float32 convolution already runs at the FMA units' peak, so only fewer
multiplications make the U-Net faster (measured in docs/performance.md). The result differs from
direct convolution only by float32 rounding: about 110 dB PSNR per layer on random data.

:class:`WinogradConv2d` is written with gathers and matrix products only, so that an ONNX
runtime executes it as large matrix multiplications: the input blocks are gathered as rows of
channel vectors (one gather), transformed by one ``36×36`` matrix product, multiplied by the
transformed kernel as 36 ``(tiles × C_in) @ (C_in × C_out)`` products, transformed back by one
``16×36`` product, and scattered to pixels by a second gather. :func:`with_winograd_convolutions`
swaps it into a copy of a network for export (``portrait_stylize.runtime.onnx_export.onnx_bytes``); the
layers keep the channels-first interface, and the transposes between consecutive ones are
removed from the exported graph by :mod:`portrait_stylize.runtime.onnx_layout`.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

#: The F(4×4, 3×3) transforms with interpolation points 0, ±1, ±2 and ∞ (Lavin & Gray, §4.2):
#: input ``Bᵀ`` (6×6), kernel ``G`` (6×3), output ``Aᵀ`` (4×6).
_BT = ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
       (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1))
_G = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
      (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))
_AT = ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1))
#: Output block side and input block side (block + kernel - 1).
_OUT, _IN = 4, 6
#: Below this many output channels the transforms' memory traffic outweighs the saved
#: multiplications (measured per layer shape with OpenVINO and AVX2 kernels: docs/performance.md).
MIN_OUT_CHANNELS = 64


def is_winograd_eligible(conv: nn.Module, min_out_channels: int = MIN_OUT_CHANNELS) -> bool:
    """Whether ``conv`` is a plain 3×3 convolution that :class:`WinogradConv2d` computes exactly:
    stride 1, dilation 1, one group, zero padding of 1 on every side, ``min_out_channels`` or more
    output channels (subclasses that pad in ``forward`` themselves declare ``explicit_pad``)."""
    return (isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding == (1, 1)
            and conv.padding_mode == "zeros" and not getattr(conv, "explicit_pad", False)
            and conv.out_channels >= min_out_channels)


def _tile_indices(height, width) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each 6×6 input block comes from and where each output pixel goes.

    ``height`` and ``width`` are ints, or 0-d tensors while tracing for ONNX export (the
    indices are then computed in the graph, for any input size). Returns ``gather`` (36, T):
    for block position ``i * 6 + j`` of tile ``t`` (row-major over ``ceil(H/4) × ceil(W/4)``
    tiles), the pixel ``y * W + x`` it reads, or ``H * W`` (a zero row) outside the image
    (the zero padding); and ``scatter`` (H·W,): for each pixel, its row in the ``(16·T, C)``
    output of the back-transform (block position ``a * 4 + b`` major, tile minor).
    """
    tiles_y, tiles_x = (height + _OUT - 1) // _OUT, (width + _OUT - 1) // _OUT
    offsets = torch.arange(_IN)
    rows = (_OUT * torch.arange(tiles_y)).view(1, 1, -1, 1) + offsets.view(_IN, 1, 1, 1) - 1
    cols = (_OUT * torch.arange(tiles_x)).view(1, 1, 1, -1) + offsets.view(1, _IN, 1, 1) - 1
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    gather = torch.where(inside, rows * width + cols, height * width).reshape(_IN * _IN, -1)
    y = torch.arange(height).view(-1, 1)
    x = torch.arange(width).view(1, -1)
    scatter = ((y % _OUT) * _OUT + x % _OUT) * (tiles_y * tiles_x) + (y // _OUT) * tiles_x + x // _OUT
    return gather, scatter.reshape(-1)


class WinogradConv2d(nn.Module):
    """A 3×3 convolution (stride 1, zero padding 1) of ``conv``'s weights by F(4×4, 3×3).

    Args:
        conv: the convolution to replace (:func:`is_winograd_eligible`); its weights are
            transformed once, in float64, and kept in float32.

    Shape: ``(N, C_in, H, W)`` float32 → ``(N, C_out, H, W)`` float32, any ``H, W ≥ 1``.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if not is_winograd_eligible(conv, min_out_channels=1):
            raise ValueError(f"WinogradConv2d computes 3x3, stride 1, padding 1 convolutions, not {conv}")
        bt, g, at = (torch.tensor(m, dtype=torch.float64) for m in (_BT, _G, _AT))
        weight = conv.weight.detach().double()  # (C_out, C_in, 3, 3)
        kernel = torch.einsum("ai,ocij,bj->abco", g, weight, g)  # (6, 6, C_in, C_out)
        self.out_channels = conv.out_channels
        self.register_buffer("kernel", kernel.reshape(_IN * _IN, conv.in_channels, -1).float())
        self.register_buffer("input_transform", torch.kron(bt, bt).float())  # (36, 36)
        self.register_buffer("output_transform", torch.kron(at, at).float())  # (16, 36)
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels)
        self.register_buffer("bias", bias.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, height, width = x.shape
        gather, scatter = _tile_indices(height, width)
        # Pixels as rows of channel vectors, plus the zero row that the padding reads (a Concat:
        # runtimes write the rows into place, where a Pad copied them once more).
        rows = x.permute(0, 2, 3, 1).reshape(n, -1, c)
        rows = torch.cat([rows, torch.zeros_like(rows[:, :1])], dim=1)
        blocks = rows[:, gather]  # (N, 36, T, C_in)
        tiles = blocks.shape[2]
        v = torch.matmul(self.input_transform, blocks.reshape(n, _IN * _IN, -1)).reshape(n, _IN * _IN, tiles, c)
        m = torch.matmul(v, self.kernel)  # (N, 36, T, C_out)
        y = torch.matmul(self.output_transform, m.reshape(n, _IN * _IN, -1)).reshape(n, -1, self.out_channels)
        y = y[:, scatter] + self.bias  # (N, H·W, C_out)
        return y.reshape(n, height, width, self.out_channels).permute(0, 3, 1, 2)


def with_winograd_convolutions(net: nn.Module, min_out_channels: int = MIN_OUT_CHANNELS) -> nn.Module:
    """A copy of ``net`` (float32, CPU) with every eligible convolution
    (:func:`is_winograd_eligible`) replaced by a :class:`WinogradConv2d`; ``net`` is unchanged."""
    net = copy.deepcopy(net).float().cpu().eval()
    for name, module in list(net.named_modules()):
        if is_winograd_eligible(module, min_out_channels):
            parent_name, _, child = name.rpartition(".")
            setattr(net.get_submodule(parent_name), child, WinogradConv2d(module))
    return net
