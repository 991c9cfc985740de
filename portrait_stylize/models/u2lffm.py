"""High-resolution locally controllable portrait style transfer (paper 2): U²-Net encoders + LFFM.

Read top to bottom: residual U-blocks (:class:`RSU`), the U²-Net encoder with 5 encoder and 4
decoder stages whose outputs are concatenated (the paper's equation 8, :class:`U2Encoder`), the
Local Feature Fusion Module (:class:`LFFM`, SANet-style attention from masked content features to
masked style features, applied only inside the region mask), the decoder, the generator and the
patch discriminator. Training (the generator pair, two discriminators, cycle and local style
losses) lives in ``train/local.py``.

Conventions: images ``(B, 3, H, W)`` RGB in [-1, 1]; masks ``(B, 1, H, W)`` in [0, 1]. Any
``H, W`` work: inputs are edge-padded to a multiple of 8 and outputs cropped back.

Memory at 1024²: the encoders' stage outputs are concatenated at 1/4 resolution (not full
resolution as in U²-Net's saliency head), and attention runs on at most ``attn_tokens`` positions
(features average-pooled further when needed), so a 1024² forward fits in a few GB on CPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..imaging.ops import pad_to_multiple

#: Per-stage (height, mid channels, out channels) of the content encoder U²E_c: RSU-7, 6, 5 with
#: pooling, then two dilated RSU-4F stages (no pooling: the paper's En_4/En_5).
CONTENT_STAGES = ((7, 16, 32), (6, 16, 64), (5, 32, 64), (4, 32, 128), (4, 32, 128))
#: The style encoder U²E_s: a different, lighter structure (style needs statistics, not layout).
STYLE_STAGES = ((5, 16, 32), (4, 16, 64), (4, 32, 64), (4, 32, 128), (4, 32, 128))


class ConvNormAct(nn.Module):
    """3×3 convolution (dilation ``d``) + instance norm + ReLU (U²-Net's REBNCONV; instance norm
    instead of batch norm so that results do not depend on the batch)."""

    def __init__(self, cin: int, cout: int, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation)
        self.norm = nn.InstanceNorm2d(cout, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


def _resize_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return x if x.shape[-2:] == ref.shape[-2:] else F.interpolate(x, size=ref.shape[-2:], mode="bilinear",
                                                                  align_corners=False)


class RSU(nn.Module):
    """Residual U-block RSU-``height`` (Qin et al. 2020): a small U-Net inside a residual block.

    ``dilated=False``: ``height - 1`` encoder convs with 2×2 max-pooling between them, a dilated
    bottom conv, and a decoder upsampling back; ``dilated=True`` (RSU-4F): no pooling, dilations
    1, 2, 4, 8 instead, for low-resolution stages.

    Shapes: ``(B, cin, H, W)`` -> ``(B, cout, H, W)`` for any ``H, W``.
    """

    def __init__(self, height: int, cin: int, mid: int, cout: int, dilated: bool = False) -> None:
        super().__init__()
        self.dilated = dilated
        self.conv_in = ConvNormAct(cin, cout)
        depth = height - 1
        rates = [2**i for i in range(depth)] if dilated else [1] * depth
        self.encoder = nn.ModuleList(ConvNormAct(cout if i == 0 else mid, mid, rates[i]) for i in range(depth))
        self.bottom = ConvNormAct(mid, mid, 2 * rates[-1])
        self.decoder = nn.ModuleList(ConvNormAct(2 * mid, cout if i == 0 else mid, rates[i]) for i in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_in = self.conv_in(x)
        skips, h = [], x_in
        for i, layer in enumerate(self.encoder):
            h = layer(h)
            skips.append(h)
            # Stop pooling at 2 px so that small inputs (and deep blocks) keep a spatial extent.
            if not self.dilated and i < len(self.encoder) - 1 and min(h.shape[-2:]) > 2:
                h = F.max_pool2d(h, 2, ceil_mode=True)
        h = self.bottom(h)
        for layer, skip in zip(reversed(self.decoder), reversed(skips)):
            h = layer(torch.cat([_resize_to(h, skip), skip], 1))
        return h + x_in


class U2Encoder(nn.Module):
    """U²-Net feature encoder: conv (eq. 5), En_1..En_5 (eq. 6), De_4..De_1 (eq. 7) and the
    concatenation F = concat(F_1, F_2, F_3, F_4, f_5) (eq. 8), taken at 1/4 resolution.

    Args:
        stages: five ``(height, mid, out)``; the first three pool, the last two are dilated RSU-4F.
        base: channels of the first convolution.

    Shapes: ``(B, 3, H, W)`` -> ``(B, sum of stage outputs, H/4, W/4)`` and the full-resolution
    ``F_1`` ``(B, stages[0][2], H, W)`` (kept for detail in the decoder).
    """

    def __init__(self, stages=CONTENT_STAGES, base: int = 16) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(3, base, 3, padding=1)
        ins = [base] + [s[2] for s in stages[:-1]]
        self.encoders = nn.ModuleList(RSU(h, cin, mid, cout, dilated=i >= 3)
                                      for i, (cin, (h, mid, cout)) in enumerate(zip(ins, stages)))
        # De_j takes [F_{j+1} (or f_5), f_j] and mirrors En_j.
        self.decoders = nn.ModuleList(RSU(stages[j][0], stages[j + 1][2] + stages[j][2], stages[j][1], stages[j][2],
                                          dilated=j >= 3) for j in range(4))
        self.out_channels = sum(s[2] for s in stages[:4]) + stages[4][2]
        self.detail_channels = stages[0][2]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv_in(x)
        feats = []
        for i, enc in enumerate(self.encoders):
            if 1 <= i <= 3:  # pool before En_2, En_3, En_4; En_5 keeps En_4's resolution
                h = F.max_pool2d(h, 2, ceil_mode=True)
            h = enc(h)
            feats.append(h)
        dec = feats[4]
        outs = [None] * 4
        for j in (3, 2, 1, 0):
            dec = self.decoders[j](torch.cat([_resize_to(dec, feats[j]), feats[j]], 1))
            outs[j] = dec
        quarter = feats[2]
        fused = torch.cat([F.adaptive_avg_pool2d(o, quarter.shape[-2:]) if o.shape[-1] > quarter.shape[-1]
                           else _resize_to(o, quarter) for o in [*outs, feats[4]]], 1)
        return fused, outs[0]


def mean_variance_norm(x: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """Per-channel instance normalisation without affine parameters (SANet's ``mvn``), with the
    statistics taken inside ``mask`` (``(B, 1, H, W)`` in [0, 1]) when given: local features."""
    if mask is None:
        mask = x.new_ones(x.shape[0], 1, *x.shape[2:])
    area = mask.sum((2, 3), keepdim=True).clamp_min(1.0)
    mean = (x * mask).sum((2, 3), keepdim=True) / area
    var = (((x - mean) ** 2) * mask).sum((2, 3), keepdim=True) / area
    return (x - mean) / (var + eps).sqrt()


class LFFM(nn.Module):
    """Local Feature Fusion Module: style attention from masked content to masked style features.

    Queries come from the normalised content features, keys from the normalised style features,
    values from the style features (SANet); style positions outside the style mask are excluded
    from the softmax. The attended features are added to the content features (1×1 convolution)
    **only inside the content mask**: outside it the output equals the input features exactly.
    Attention runs on at most ``attn_tokens`` positions per side (average-pooled), bounding memory.

    Shapes: content ``(B, C, H, W)``, style ``(B, C, Hs, Ws)``, masks ``(B, 1, ., .)`` -> ``(B, C, H, W)``.
    """

    def __init__(self, channels: int, key_channels: int = 64, attn_tokens: int = 4096) -> None:
        super().__init__()
        self.query = nn.Conv2d(channels, key_channels, 1)
        self.key = nn.Conv2d(channels, key_channels, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        self.attn_tokens = attn_tokens

    def _limit(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        factor = math.ceil(math.sqrt(h * w / self.attn_tokens))
        return F.avg_pool2d(x, factor, ceil_mode=True) if factor > 1 else x

    def forward(self, content: torch.Tensor, style: torch.Tensor, content_mask: torch.Tensor | None = None,
                style_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = content.shape
        s_mask = None
        if style_mask is not None:
            s_mask = (F.interpolate(style_mask.to(style.dtype), size=style.shape[-2:],
                                    mode="nearest") > 0.5).to(style.dtype)
            s_mask = torch.where(s_mask.flatten(1).any(1)[:, None, None, None], s_mask, torch.ones_like(s_mask))
        c_mask = None if content_mask is None else F.interpolate(content_mask.to(content.dtype), size=(h, w),
                                                                 mode="nearest")
        if c_mask is not None and not c_mask.any():
            c_mask = None  # an empty content mask: statistics over the whole map (the output is unchanged anyway)
        q = self._limit(self.query(mean_variance_norm(content, c_mask)))
        k = self.key(mean_variance_norm(style, s_mask))
        v = self.value(style)
        if s_mask is not None:
            # Positions outside the style mask must not leak into pooled keys/values either.
            k, v = k * s_mask, v * s_mask
        k, v = self._limit(k), self._limit(v)
        qh, qw = q.shape[-2:]
        q, k, v = q.flatten(2).transpose(1, 2), k.flatten(2), v.flatten(2).transpose(1, 2)
        logits = q @ k / math.sqrt(k.shape[1])
        if s_mask is not None:
            keep = self._limit(s_mask).flatten(1) > 0
            logits = logits.masked_fill(~keep[:, None, :], float("-inf"))
        attended = (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, c, qh, qw)
        fused = content + self.out(_resize_to(attended, content))
        if content_mask is None:
            return fused
        mask = F.interpolate(content_mask.to(content.dtype), size=(h, w), mode="bilinear", align_corners=False)
        # Exactly the input where the mask is 0, even for non-finite fused values.
        return torch.where(mask > 0, content + (fused - content) * mask, content)


class Decoder(nn.Module):
    """Fused 1/4-resolution features (+ full-resolution detail) -> image in [-1, 1]."""

    def __init__(self, cin: int, detail: int, width: int = 64) -> None:
        super().__init__()
        self.reduce = ConvNormAct(cin, width)
        self.up1 = ConvNormAct(width, width // 2)
        self.up2 = ConvNormAct(width // 2 + detail, width // 2)
        self.to_rgb = nn.Conv2d(width // 2, 3, 3, padding=1)

    def forward(self, x: torch.Tensor, detail: torch.Tensor) -> torch.Tensor:
        h = self.reduce(x)
        h = self.up1(F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False))
        h = F.interpolate(h, size=detail.shape[-2:], mode="bilinear", align_corners=False)
        return torch.tanh(self.to_rgb(self.up2(torch.cat([h, detail], 1))))


class U2LFFMGenerator(nn.Module):
    """One direction of the translation (e.g. photo -> style): U²E_c and U²E_s encoders, LFFM and
    two decoders of the same structure — one for the stylized image, one reconstructing the
    content input (keeps the content encoder faithful to structure).

    Shapes: ``forward(content, style, content_mask=None, style_mask=None)`` with images
    ``(B, 3, H, W)`` / ``(B, 3, Hs, Ws)`` in [-1, 1] -> ``(stylized, reconstruction)``, both
    ``(B, 3, H, W)``.
    """

    def __init__(self, content_stages=CONTENT_STAGES, style_stages=STYLE_STAGES, attn_tokens: int = 4096) -> None:
        super().__init__()
        self.content_encoder = U2Encoder(content_stages)
        self.style_encoder = U2Encoder(style_stages)
        if self.content_encoder.out_channels != self.style_encoder.out_channels:
            self.style_proj = nn.Conv2d(self.style_encoder.out_channels, self.content_encoder.out_channels, 1)
        else:
            self.style_proj = nn.Identity()
        channels, detail = self.content_encoder.out_channels, self.content_encoder.detail_channels
        self.fusion = LFFM(channels, attn_tokens=attn_tokens)
        self.decoder = Decoder(channels, detail)
        self.reconstruction_decoder = Decoder(channels, detail)

    def forward(self, content: torch.Tensor, style: torch.Tensor, content_mask: torch.Tensor | None = None,
                style_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = content.shape[-2:]
        content_p, style_p = pad_to_multiple(content, 8), pad_to_multiple(style, 8)
        masks = [None if m is None else pad_to_multiple(m, 8) for m in (content_mask, style_mask)]
        fc, detail = self.content_encoder(content_p)
        fs = self.style_proj(self.style_encoder(style_p)[0])
        fused = self.fusion(fc, fs, *masks)
        stylized = self.decoder(fused, detail)[..., :h, :w]
        reconstruction = self.reconstruction_decoder(fc, detail)[..., :h, :w]
        return stylized, reconstruction


class MultiScaleDiscriminator(nn.Module):
    """Patch discriminator at full and half resolution (high-resolution images need both).

    Shapes: ``(B, 3, H, W)`` -> list of two logit maps.
    """

    def __init__(self, channels: int = 32) -> None:
        super().__init__()

        def patch() -> nn.Sequential:
            layers, cin = [], 3
            for i in range(4):
                cout = channels * 2 ** min(i, 3)
                layers += [nn.utils.spectral_norm(nn.Conv2d(cin, cout, 4, 2, 1)), nn.LeakyReLU(0.2)]
                cin = cout
            return nn.Sequential(*layers, nn.Conv2d(cin, 1, 3, padding=1))

        self.scales = nn.ModuleList([patch(), patch()])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [d(x if i == 0 else F.avg_pool2d(x, 2)) for i, d in enumerate(self.scales)]


def stage_table(generator: U2LFFMGenerator) -> list[tuple[str, str, int]]:
    """``(encoder, stage, parameters)`` rows with block height and channels, for documentation."""
    rows = []
    for name, enc, stages in (("U²E_c", generator.content_encoder, CONTENT_STAGES),
                              ("U²E_s", generator.style_encoder, STYLE_STAGES)):
        for i, (block, (h, mid, out)) in enumerate(zip(enc.encoders, stages)):
            kind = f"RSU-{h}F" if block.dilated else f"RSU-{h}"
            rows.append((name, f"En_{i + 1} {kind} mid {mid} out {out}", sum(p.numel() for p in block.parameters())))
        for j, block in enumerate(enc.decoders):
            h, mid, out = stages[j]
            kind = f"RSU-{h}F" if block.dilated else f"RSU-{h}"
            rows.append((name, f"De_{j + 1} {kind} mid {mid} out {out}", sum(p.numel() for p in block.parameters())))
    return rows
