"""DCT-Net texture translation network (TTN).

The TTN is the U-Net of White-box Cartoonization reused by DCT-Net (Men et al. 2022, §3.4),
followed by a guided filter that restores the input's edges. Layer by layer (``c`` = 32)::

    x0 = lrelu(conv7x7(x, c))                          full resolution
    x1 = lrelu(conv3x3(lrelu(conv3x3/2(x0, c)), 2c))   1/2
    x2 = lrelu(conv3x3(lrelu(conv3x3/2(x1, 2c)), 4c))  1/4
    x2 = 4 x [x2 + conv3x3(lrelu(conv3x3(x2)))]        residual blocks, no activation after the add
    x2 = lrelu(conv3x3(x2, 2c))
    x3 = lrelu(conv3x3(lrelu(conv3x3(up2(x2) + x1, 2c)), c))
    y  = conv7x7(lrelu(conv3x3(up2(x3) + x0, c)), 3)   linear output
    out = guided_filter(guide=x, src=y, r, eps)

LeakyReLU slope 0.2, bias everywhere, no normalisation: 1,467,075 parameters with ``c = 32``.

Conventions needed to reproduce TensorFlow-trained weights exactly are constructor arguments
(and so end up in ``config.json``):

* ``padding="tf_same"``: stride-2 convolutions pad like TensorFlow's ``SAME`` (0 before, 1 after
  on even sides); ``"symmetric"`` pads 1 on both sides like ``nn.Conv2d(padding=1)``.
* ``upsample="tf_legacy"``: TF1 ``resize_bilinear`` without half-pixel centres (source pixel =
  destination / 2); ``"half_pixel"`` is PyTorch's ``interpolate(align_corners=False)``.

The input's colour order (RGB or BGR) is not the network's business: it is recorded by
:class:`~portrait_stylize.models.ttn_style.TTNStyle`, which converts before calling the TTN.
"""

from __future__ import annotations

import functools
import json

import torch
import torch.nn.functional as F
from torch import nn

from ..common.numbers import bounded_int, bounded_number
from ..imaging.ops import guided_filter, pad_to_multiple
from ..options import PADDINGS, UPSAMPLINGS


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with 'same'-style padding that can mimic TensorFlow's asymmetric ``SAME``.

    Args:
        in_channels, out_channels, kernel_size, stride: as ``nn.Conv2d`` (square odd kernels).
        padding_mode_tf: ``"tf_same"`` pads ``total = max((ceil(n/s)-1)*s + k - n, 0)`` with the
            smaller half first, exactly like TensorFlow; ``"symmetric"`` pads ``k//2`` each side.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding_mode_tf: str = "tf_same") -> None:
        if padding_mode_tf not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding_mode_tf!r}")
        # Stride 1 with an odd kernel pads k//2 on both sides in either convention, so the
        # convolution pads natively; only TF's stride-2 SAME needs an explicit asymmetric pad.
        self.explicit_pad = padding_mode_tf == "tf_same" and stride > 1
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=0 if self.explicit_pad else kernel_size // 2)
        self.padding_mode_tf = padding_mode_tf

    def _pads(self, n: int) -> tuple[int, int]:
        k, s = self.kernel_size[0], self.stride[0]
        total = max((-(-n // s) - 1) * s + k - n, 0)
        return total // 2, total - total // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.explicit_pad:
            return super().forward(x)
        if torch.onnx.is_in_onnx_export():
            return _PaddedConv.apply(x, self.weight, self.bias, self.stride[0], *self._pads(self.stride[0]))
        top, bottom = self._pads(x.shape[-2])
        left, right = self._pads(x.shape[-1])
        return super().forward(F.pad(x, (left, right, top, bottom)))


class _PaddedConv(torch.autograd.Function):
    """What ONNX export writes for :class:`Conv2dSame` with an explicit pad: one ``Conv`` with
    asymmetric ``pads``. A separate ``Pad`` runs as a slow reference kernel in OpenVINO, and in
    an int8 graph it breaks the chain of int8 operations (dequantize, pad, quantize again):
    together 7 % of the White-box U-Net's int8 time at 512² (AVX-512, docs/performance.md).
    The pads are those of sides that are multiples of the stride (``before``, ``after`` on each
    axis), as every exported graph's input is (a multiple of :attr:`TTN.size_multiple`). Export
    only (no backward)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride: int,
                before: int, after: int) -> torch.Tensor:
        return F.conv2d(F.pad(x, (before, after, before, after)), weight, bias, stride)

    @staticmethod
    def symbolic(g, x, weight, bias, stride: int, before: int, after: int):
        k = weight.type().sizes()[-1]
        return g.op("Conv", x, weight, bias, kernel_shape_i=[k, k], strides_i=[stride, stride],
                    pads_i=[before, before, after, after], dilations_i=[1, 1], group_i=1)


def upsample2x(x: torch.Tensor, mode: str) -> torch.Tensor:
    """Bilinear ×2 upsampling of a ``(B, C, H, W)`` tensor to ``(B, C, 2H, 2W)``.

    ``mode="tf_legacy"`` reproduces TF1 ``tf.image.resize_bilinear`` (``align_corners=False``,
    no half-pixel centres): output pixel ``2k`` copies input ``k`` and ``2k+1`` averages inputs
    ``k`` and ``min(k+1, n-1)``. ``mode="half_pixel"`` is ``F.interpolate(..., "bilinear")``.
    """
    if mode == "half_pixel":
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    if mode != "tf_legacy":
        raise ValueError(f"upsample must be one of {UPSAMPLINGS}, got {mode!r}")
    if torch.onnx.is_in_onnx_export():
        return _TFLegacyResize.apply(x)
    return _tf_legacy_upsample2x(x)


def _tf_legacy_upsample2x(x: torch.Tensor) -> torch.Tensor:
    # Sampling at src = dst / 2 is align_corners=True interpolation from n + 1 to 2n + 1 pixels
    # once the last row/column is repeated; one fused kernel instead of gathers and stacks.
    h, w = x.shape[-2:]
    x = F.pad(x, (0, 1, 0, 1), mode="replicate")
    return F.interpolate(x, size=(2 * h + 1, 2 * w + 1), mode="bilinear", align_corners=True)[..., : 2 * h, : 2 * w]


class _TFLegacyResize(torch.autograd.Function):
    """What ONNX export writes for TF1's bilinear ×2: the single ``Resize`` op it is there
    (``coordinate_transformation_mode="asymmetric"``: source = destination / 2, edges clamped),
    so runtimes do not copy a padded tensor and crop it again. Export only (no backward)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return _tf_legacy_upsample2x(x)

    @staticmethod
    def symbolic(g, x):
        scales = g.op("Constant", value_t=torch.tensor([1.0, 1.0, 2.0, 2.0]))
        return g.op("Resize", x, g.op("Constant", value_t=torch.tensor([], dtype=torch.float32)), scales,
                    coordinate_transformation_mode_s="asymmetric", mode_s="linear")


class ResBlock(nn.Module):
    """``x + conv(lrelu(conv(x)))`` with no activation after the sum (as White-box/DCT-Net)."""

    def __init__(self, channels: int, padding: str, negative_slope: float) -> None:
        super().__init__()
        self.conv1 = Conv2dSame(channels, channels, 3, padding_mode_tf=padding)
        self.conv2 = Conv2dSame(channels, channels, 3, padding_mode_tf=padding)
        self.negative_slope = negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(x), self.negative_slope))


class TTN(nn.Module):
    """DCT-Net texture translation network: U-Net + guided filter.

    Args:
        channels: base width ``c`` (32 in DCT-Net and White-box).
        num_blocks: residual blocks at 1/4 resolution (4).
        padding: ``"tf_same"`` or ``"symmetric"``, see the module docstring.
        upsample: ``"tf_legacy"`` or ``"half_pixel"``.
        gf_radius: guided-filter radius (1); ``0`` disables the filter.
        gf_eps: guided-filter eps (DCT-Net 1e-2, White-box 5e-3).
        negative_slope: LeakyReLU slope (0.2).

    Shapes:
        ``forward(x)``: ``(B, 3, H, W)`` float in [-1, 1] (in the colour order the weights were
        trained on) -> ``(B, 3, H, W)``, the guided-filtered network output, unclipped. Any
        ``H, W >= 1`` work: inputs are padded (edge-replicated) at the bottom/right to a multiple
        of 4 and the output is cropped back, so sizes that are already multiples of 4 are
        processed exactly like the original implementation.
    """

    #: ``forward_aligned`` needs ``H, W`` multiples of this (two stride-2 levels).
    size_multiple = 4

    def __init__(self, channels: int = 32, num_blocks: int = 4, padding: str = "tf_same",
                 upsample: str = "tf_legacy", gf_radius: int = 1, gf_eps: float = 1e-2,
                 negative_slope: float = 0.2) -> None:
        super().__init__()
        if upsample not in UPSAMPLINGS:
            raise ValueError(f"upsample must be one of {UPSAMPLINGS}, got {upsample!r}")
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
        # Bounds far beyond any published TTN (c = 32, 4 blocks), so untrusted configs cannot
        # allocate gigabytes before anything else is checked.
        bounded_int("channels", channels, 1, 256)
        bounded_int("num_blocks", num_blocks, 0, 32)
        bounded_int("gf_radius", gf_radius, 0, 64)
        bounded_number("gf_eps", gf_eps, 1e-12, 100.0)
        bounded_number("negative_slope", negative_slope, 0.0, 1.0)
        #: Resolved constructor arguments, as saved in a style's ``config.json``.
        self.config = {"channels": channels, "num_blocks": num_blocks, "padding": padding, "upsample": upsample,
                       "gf_radius": gf_radius, "gf_eps": gf_eps, "negative_slope": negative_slope}
        c = channels

        def conv(cin: int, cout: int, k: int, stride: int = 1) -> Conv2dSame:
            return Conv2dSame(cin, cout, k, stride=stride, padding_mode_tf=padding)

        self.conv_in = conv(3, c, 7)
        self.down1 = conv(c, c, 3, stride=2)
        self.conv1 = conv(c, 2 * c, 3)
        self.down2 = conv(2 * c, 2 * c, 3, stride=2)
        self.conv2 = conv(2 * c, 4 * c, 3)
        self.blocks = nn.ModuleList(ResBlock(4 * c, padding, negative_slope) for _ in range(num_blocks))
        self.conv_mid = conv(4 * c, 2 * c, 3)
        self.up1_conv1 = conv(2 * c, 2 * c, 3)
        self.up1_conv2 = conv(2 * c, c, 3)
        self.up2_conv1 = conv(c, c, 3)
        self.conv_out = conv(c, 3, 7)
        self.upsample = upsample
        self.gf_radius = gf_radius
        self.gf_eps = gf_eps
        self.negative_slope = negative_slope

    def conv_layers(self) -> list[tuple[str, Conv2dSame]]:
        """``(name, conv)`` for every convolution in forward order (how converters match weights)."""
        blocks = [(f"blocks.{i}.{n}", getattr(b, n)) for i, b in enumerate(self.blocks) for n in ("conv1", "conv2")]
        head = ["conv_in", "down1", "conv1", "down2", "conv2"]
        tail = ["conv_mid", "up1_conv1", "up1_conv2", "up2_conv1", "conv_out"]
        return [(n, getattr(self, n)) for n in head] + blocks + [(n, getattr(self, n)) for n in tail]

    def receptive_radius(self) -> int:
        """How far, in pixels on each side, an output pixel of :meth:`forward_aligned` sees into
        its input (the U-Net's convolutions and upsamplings plus the guided filter's two box
        passes): 63 for DCT-Net's TTN. Tiles with this much context reproduce the untiled
        result (:func:`portrait_stylize.imaging.tiling.run_tiled`)."""
        return _receptive_radius(json.dumps(self.config, sort_keys=True))

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, self.negative_slope)

    def unet(self, x: torch.Tensor) -> torch.Tensor:
        """The U-Net alone on ``(B, 3, H, W)`` with ``H, W`` multiples of 4; linear output."""
        act = self._act
        x0 = act(self.conv_in(x))
        x1 = act(self.conv1(act(self.down1(x0))))
        x2 = act(self.conv2(act(self.down2(x1))))
        for block in self.blocks:
            x2 = block(x2)
        x2 = act(self.conv_mid(x2))
        x3 = act(self.up1_conv1(upsample2x(x2, self.upsample) + x1))
        x3 = act(self.up1_conv2(x3))
        x4 = act(self.up2_conv1(upsample2x(x3, self.upsample) + x0))
        return self.conv_out(x4)

    def forward_aligned(self, x: torch.Tensor) -> torch.Tensor:
        """U-Net + guided filter on ``(B, 3, H, W)`` with ``H, W`` multiples of 4 (no padding).

        The U-Net runs in the dtype of the weights (e.g. bfloat16 for speed) and the guided
        filter in ``x``'s dtype, because the filter's variance terms lose most precision in low
        precision while costing little. This is the graph exported to ONNX.
        """
        return self.finish(x, self.unet(x.to(self.conv_in.weight.dtype)).to(x.dtype))

    def finish(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The guided filter on the U-Net's output ``y`` with the input ``x`` as guide (both
        ``(B, 3, H, W)``, same dtype); ``y`` itself when the filter is off. Backends that run
        the U-Net elsewhere (int8) finish here, in float32."""
        return guided_filter(x, y, self.gf_radius, self.gf_eps) if self.gf_radius > 0 else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"TTN expects a (B, 3, H, W) tensor, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        x = pad_to_multiple(x, self.size_multiple)
        return self.forward_aligned(x)[..., :h, :w]


@functools.lru_cache(maxsize=32)
def _receptive_radius(config: str) -> int:
    """Measured, not derived by hand: the gradient of one output pixel with respect to the input
    is non-zero exactly where the input can reach it, provided nothing cancels. So a one-channel
    copy (width does not change the reach) gets positive weights and no biases, takes a positive
    input (every activation stays positive, no leaky-ReLU or sign cancels a path), in float64."""
    side = 192  # holds DCT-Net's reach in one pass
    # Gradients even when called under the pipeline's inference mode.
    with torch.inference_mode(False), torch.enable_grad():
        probe = TTN(**{**json.loads(config), "channels": 1}).double()
        with torch.no_grad():
            for parameter in probe.parameters():
                parameter.fill_(1.0 / parameter[0].numel() if parameter.ndim > 1 else 0.0)
        while side <= 4096:
            x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.5
            x.requires_grad_(True)
            probe.forward_aligned(x)[0, :, side // 2, side // 2].sum().backward()
            reach = int((x.grad[0].abs().sum(0).nonzero() - side // 2).abs().max())
            if reach < side // 2 - probe.size_multiple:  # the border did not cut the reach short
                return reach
            side *= 2
    raise ValueError(f"the TTN with config {config} sees further than 2048 pixels")


