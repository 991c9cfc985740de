"""AnimeGANv2's generator (``arch: animegan2``), the network of the PyTorch portrait models
(``face_paint_512_v1/v2``, ``celeba_distill``) that bryandlee trained for animegan2-pytorch (MIT).

The generator (2,143,552 parameters) is one chain, without skip connections. Every convolution is
reflection-padded, bias-free (but the depthwise ones) and followed by a one-group GroupNorm
(statistics over the whole picture) and LeakyReLU(0.2), unless said otherwise:

========  ==========================================================================
stem      7×7 3→32; 3×3 stride 2 32→64 (padded on the right and bottom only); 3×3 64→64
down      3×3 stride 2 64→128 (the same padding); 3×3 128→128
middle    3×3 128→128; inverted residual 128→256; 3 inverted residuals 256→256
          (added to their input); 3×3 256→128
(resize)  bilinear, ``align_corners=True``, to the stem's output size
up_half   two 3×3 128→128
(resize)  bilinear, ``align_corners=True``, to the input size
up_full   3×3 128→64; 3×3 64→64; 7×7 64→32
to_rgb    1×1 32→3, no norm, then tanh
========  ==========================================================================

An inverted residual is a 1×1 expansion to twice its input's channels, a 3×3 depthwise
convolution (with bias) and a 1×1 projection whose GroupNorm has no activation after it.

Two operations see the whole picture: the norms' statistics and the align-corners resizes (whose
sampling grid depends on the picture's size). Tiles would therefore not reproduce the untiled
result, so a style of this architecture runs a picture whole, up to :data:`WHOLE_PIXELS`; a larger
picture is stylized at that many pixels and resized up (the networks were trained on 256-512 px
faces: their strokes do not gain from more pixels). Faces get their own pass at the 512 px they
were trained on (:class:`AnimeGANStyle`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..common.numbers import bounded_int
from .base import Runner, StyleNetwork, register_architecture

#: Pixels up to which a whole picture runs at its own size; larger pictures run at this size.
#: float32 PyTorch on 1024×768 raised a process's peak memory by 1.55 GB (to 2.1 GB; 3.4 GB at
#: 1536×1024): about 2 kB per pixel in the full-size layers (128 channels, padded copies).
WHOLE_PIXELS = 1024 * 768
#: The smallest side the generator takes: its reflection pads need 2 pixels at quarter scale.
MIN_SIDE = 8
#: Reach of the whole-picture ops, for the tiler: a halo this large makes every picture one tile.
WHOLE_PICTURE_HALO = 1 << 20
#: Faces run through the generator at once (each costs about 0.6 GB at 512²; the norms work per
#: picture, so splitting a batch changes nothing but the peak memory).
FACES_PER_PASS = 2


class ConvNormAct(nn.Module):
    """Reflection pad, convolution, one-group GroupNorm and (``act``) LeakyReLU(0.2).

    ``pad`` is ``(left, right, top, bottom)``; default: ``kernel // 2`` on every side."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1, bias: bool = False,
                 act: bool = True, pad: tuple[int, int, int, int] | None = None) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(pad if pad is not None else kernel // 2)
        self.conv = nn.Conv2d(cin, cout, kernel, stride, groups=groups, bias=bias)
        self.norm = nn.GroupNorm(1, cout)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.conv(self.pad(x)))
        return F.leaky_relu(x, 0.2, inplace=True) if self.act else x


class InvertedResidual(nn.Module):
    """1×1 expansion to ``2 * cin``, 3×3 depthwise, 1×1 projection to ``cout`` (no activation
    after it); the input is added when ``cin == cout``."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        wide = 2 * cin
        self.expand = ConvNormAct(cin, wide, 1)
        self.depthwise = ConvNormAct(wide, wide, 3, groups=wide, bias=True)
        self.project = ConvNormAct(wide, cout, 1, act=False)
        self.skip = cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.skip else y


def _halving(cin: int, cout: int) -> ConvNormAct:
    """A stride-2 3×3 convolution padded on the right and bottom only: ``n`` -> ``n // 2`` pixels."""
    return ConvNormAct(cin, cout, 3, stride=2, pad=(0, 1, 0, 1))


class AnimeGANGenerator(nn.Module):
    """The generator: ``(B, 3, H, W)`` RGB in [-1, 1] -> the same shape, RGB in [-1, 1] (tanh);
    ``H, W >= MIN_SIDE``, any size (``size_multiple`` 1: padding would change the norms'
    statistics)."""

    size_multiple = 1

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(ConvNormAct(3, 32, 7), _halving(32, 64), ConvNormAct(64, 64))
        self.down = nn.Sequential(_halving(64, 128), ConvNormAct(128, 128))
        self.middle = nn.Sequential(ConvNormAct(128, 128), InvertedResidual(128, 256),
                                    *(InvertedResidual(256, 256) for _ in range(3)), ConvNormAct(256, 128))
        self.up_half = nn.Sequential(ConvNormAct(128, 128), ConvNormAct(128, 128))
        self.up_full = nn.Sequential(ConvNormAct(128, 64), ConvNormAct(64, 64), ConvNormAct(64, 32, 7))
        self.to_rgb = nn.Conv2d(32, 3, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Runs in the weights' dtype (bfloat16 for speed where the CPU has it) and returns ``x``'s."""
        dtype, x = x.dtype, x.to(self.to_rgb.weight.dtype)
        half = self.stem(x)
        y = self.middle(self.down(half))
        y = F.interpolate(y, size=half.shape[-2:], mode="bilinear", align_corners=True)
        y = F.interpolate(self.up_half(y), size=x.shape[-2:], mode="bilinear", align_corners=True)
        return torch.tanh(self.to_rgb(self.up_full(y))).to(dtype)

    def forward_aligned(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` (every size is aligned): what ONNX export and the backends run."""
        return self.forward(x)


@register_architecture
class AnimeGANStyle(StyleNetwork):
    """An AnimeGANv2 generator plus the conventions to feed it (RGB in [-1, 1]).

    Args:
        face_size: side (pixels) of the aligned face crops' own pass, which runs the generator at
            the size its face models were trained on (512; 256 for the webtoon model), then
            resizes back to the crop.
        whole_pixels: pictures up to this many pixels run at their own size; larger ones at
            this many pixels, resized up (see the module docstring).
        **conventions: see :class:`~portrait_stylize.models.base.StyleNetwork`.

    Shapes:
        ``forward(image, part)``: ``(B, 3, H, W)`` RGB in [0, 1] -> the same.
    """

    arch = "animegan2"
    has_face_pass = True

    def __init__(self, face_size: int = 512, whole_pixels: int = WHOLE_PIXELS, **conventions: Any) -> None:
        super().__init__(**conventions)
        self.face_size = bounded_int("face_size", face_size, 64, 2048)
        self.whole_pixels = bounded_int("whole_pixels", whole_pixels, MIN_SIDE * MIN_SIDE, 1 << 26)
        self.generator = AnimeGANGenerator()

    def architecture_config(self) -> dict[str, Any]:
        return {"face_size": self.face_size, "whole_pixels": self.whole_pixels}

    def subnetworks(self) -> dict[str, nn.Module]:
        return {"generator": self.generator}

    def tiling_context(self) -> tuple[int, int]:
        return WHOLE_PICTURE_HALO, 1

    def working_size(self, height: int, width: int, part: str) -> tuple[int, int]:
        """The size the generator runs a ``height`` × ``width`` input at: faces at ``face_size``²,
        whole pictures at their own size up to ``whole_pixels`` (else scaled down to it), never
        below :data:`MIN_SIDE`."""
        if part == "face":
            return self.face_size, self.face_size
        scale = min(1.0, math.sqrt(self.whole_pixels / (height * width)))
        h, w = max(MIN_SIDE, int(height * scale)), max(MIN_SIDE, int(width * scale))  # rounded down: within the bound
        # A sliver (one side held at MIN_SIDE) keeps within the bound through its long side.
        if h <= w:
            return h, min(w, max(MIN_SIDE, self.whole_pixels // h))
        return min(h, max(MIN_SIDE, self.whole_pixels // w)), w

    def forward(self, image: torch.Tensor, part: str = "image", reference: torch.Tensor | None = None,
                runners: Mapping[str, Runner] | None = None) -> torch.Tensor:
        self.check_call(part, reference)
        run = runners["generator"] if runners is not None else self.generator
        size = image.shape[-2:]
        work = self.working_size(*size, part)
        x = image if work == tuple(size) else F.interpolate(image, size=work, mode="bicubic", align_corners=False,
                                                          antialias=True)
        x = self.to_network(x.clamp(0.0, 1.0))
        chunk = FACES_PER_PASS if part == "face" else len(x)
        y = self.from_network(torch.cat([run(piece) for piece in x.split(chunk)]))
        if work != tuple(size):
            y = F.interpolate(y, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0.0, 1.0)
        return y

    def card_rows(self) -> dict[str, str]:
        return {"network": "AnimeGANv2 generator (GroupNorm over the whole picture, align-corners resizes)",
                "face pass": f"aligned crops at {self.face_size}²",
                "whole picture": f"at its own size up to {self.whole_pixels / 1e6:.2f} Mpx, else scaled to it"}
