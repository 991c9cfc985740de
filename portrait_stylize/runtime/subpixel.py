"""An output convolution with few channels computed as a sub-pixel convolution (for export).

A TTN ends with a 7×7 convolution from 32 channels to 3 at full resolution. CPU convolution
kernels vectorise over output channels (16 per AVX-512 register, 8 per AVX2 one), so with 3
outputs most lanes idle: in the White-box U-Net's int8 graph this one layer took 10.5 of 75 ms
at 512² (AVX-512 + VNNI), at a fifth of the speed of its other layers.

:class:`SubpixelConv2d` computes the same output as a stride-2 convolution producing each 2×2
block of output pixels as ``4 × C_out`` channels, then ``DepthToSpace`` (``pixel_shuffle``)
puts them in place (the sub-pixel convolution of Shi et al., "Real-Time Single Image and Video
Super-Resolution Using an Efficient Sub-Pixel Convolutional Neural Network", 2016, used here
for an exact rewrite rather than a learned upsampling). Output pixel ``(2p + a, 2q + b)`` reads
input rows ``2p + a - r … 2p + a + r``: all inside ``2p - r … 2p + 1 + r``, so a ``(k + 1)²``
kernel with stride 2 and padding ``r = k // 2`` holds the ``k²`` kernel at offset ``(a, b)`` for
output channel ``4c + 2a + b`` and zeros elsewhere. 1.3× the multiplications at four times the
lane use: the same outputs (zeros add nothing); as fast or faster in every runtime and CPU class
measured (docs/performance.md, "Two rewrites of the exported graph").

The rewrite needs even input sides; :func:`with_subpixel_output` applies it to a TTN's
``conv_out`` only, which runs at the exported graph's input size (a multiple of
:attr:`TTN.size_multiple <portrait_stylize.models.ttn.TTN.size_multiple>`, 4).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..models.ttn import TTN


class SubpixelConv2d(nn.Module):
    """``conv`` (stride 1, one group, no dilation, odd square kernel ``k``, zero padding ``k // 2``)
    as a stride-2 ``(k + 1)²`` convolution to ``4 × out_channels`` and ``pixel_shuffle(2)``.

    Shapes: ``(B, C_in, H, W)`` with even ``H, W`` -> ``(B, C_out, H, W)``, equal to ``conv``'s output.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        k = conv.kernel_size[0]
        if not (conv.stride == (1, 1) and conv.groups == 1 and conv.dilation == (1, 1) and k % 2 == 1
                and conv.kernel_size == (k, k) and conv.padding == (k // 2, k // 2) and conv.padding_mode == "zeros"):
            raise ValueError(f"SubpixelConv2d rewrites stride-1 'same' convolutions with odd square kernels, "
                             f"got {conv}")
        out, inp = conv.out_channels, conv.in_channels
        weight = conv.weight.detach().new_zeros(out * 4, inp, k + 1, k + 1)
        for a in range(2):
            for b in range(2):
                weight[2 * a + b::4, :, a:a + k, b:b + k] = conv.weight.detach()
        bias = conv.bias.detach() if conv.bias is not None else conv.weight.new_zeros(out)
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = nn.Parameter(bias.repeat_interleave(4), requires_grad=False)
        self.padding = k // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(F.conv2d(x, self.weight, self.bias, stride=2, padding=self.padding), 2)


def with_subpixel_output(net: nn.Module) -> nn.Module:
    """A copy of a :class:`~portrait_stylize.models.ttn.TTN` whose ``conv_out`` is a
    :class:`SubpixelConv2d` when it has at most 4 output channels (where idle lanes cost most);
    any other network is returned as it is."""
    if not isinstance(net, TTN) or net.conv_out.out_channels > 4:
        return net
    net = copy.deepcopy(net)
    net.conv_out = SubpixelConv2d(net.conv_out)
    return net
