"""A reference run of AnimeGANv2's published generator, for the tests.

Written from the published architecture's description (animegan2-pytorch's ``model.py`` at commit
25d7b01: reflection pads, one-group GroupNorm, LeakyReLU 0.2, inverted residuals, bilinear resizes
with ``align_corners=True`` to the stem's and the input's sizes, tanh) as plain functional calls on
a state dict in the *published* key layout, independently of ``portrait_stylize.models.animegan``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: The published generator, block by block: ("cna", cin, cout, kernel, stride) or ("irb", cin, cout).
PUBLISHED = {
    "block_a": [("cna", 3, 32, 7, 1), ("cna", 32, 64, 3, 2), ("cna", 64, 64, 3, 1)],
    "block_b": [("cna", 64, 128, 3, 2), ("cna", 128, 128, 3, 1)],
    "block_c": [("cna", 128, 128, 3, 1), ("irb", 128, 256), ("irb", 256, 256), ("irb", 256, 256),
                ("irb", 256, 256), ("cna", 256, 128, 3, 1)],
    "block_d": [("cna", 128, 128, 3, 1), ("cna", 128, 128, 3, 1)],
    "block_e": [("cna", 128, 64, 3, 1), ("cna", 64, 64, 3, 1), ("cna", 64, 32, 7, 1)],
}


def published_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in the published key layout (77 tensors), scaled so activations stay lively."""
    g = torch.Generator().manual_seed(seed)
    sd = {}

    def conv(key, cout, cin_per_group, k, bias=False):
        sd[f"{key}.weight"] = torch.randn(cout, cin_per_group, k, k, generator=g) / (cin_per_group * k * k) ** 0.5
        if bias:
            sd[f"{key}.bias"] = 0.1 * torch.randn(cout, generator=g)

    def norm(key, c):
        sd[f"{key}.weight"] = 1 + 0.2 * torch.randn(c, generator=g)
        sd[f"{key}.bias"] = 0.2 * torch.randn(c, generator=g)

    for block, layers in PUBLISHED.items():
        for i, layer in enumerate(layers):
            p = f"{block}.{i}"
            if layer[0] == "cna":
                _, cin, cout, k, _ = layer
                conv(f"{p}.1", cout, cin, k)
                norm(f"{p}.2", cout)
            else:
                _, cin, cout = layer
                wide = 2 * cin
                conv(f"{p}.layers.0.1", wide, cin, 1)
                norm(f"{p}.layers.0.2", wide)
                conv(f"{p}.layers.1.1", wide, 1, 3, bias=True)
                norm(f"{p}.layers.1.2", wide)
                conv(f"{p}.layers.2", cout, wide, 1)
                norm(f"{p}.layers.3", cout)
    sd["out_layer.0.weight"] = 0.5 * torch.randn(3, 32, 1, 1, generator=g)
    return sd


def reference(x: torch.Tensor, sd: dict, align_corners: bool = True, norm: str = "group") -> torch.Tensor:
    """The published generator on ``x`` ((B, 3, H, W) RGB in [-1, 1]) with the weights ``sd``."""

    def normalize(y, key):
        if norm == "group":
            return F.group_norm(y, 1, sd[f"{key}.weight"], sd[f"{key}.bias"], eps=1e-5)
        return F.instance_norm(y, weight=sd[f"{key}.weight"], bias=sd[f"{key}.bias"], eps=1e-5)

    def cna(y, key, k, stride=1, groups=1, act=True):
        pad = (0, 1, 0, 1) if stride == 2 else (k // 2,) * 4
        y = F.conv2d(F.pad(y, pad, mode="reflect"), sd[f"{key}.1.weight"], sd.get(f"{key}.1.bias"), stride,
                     groups=groups)
        y = normalize(y, f"{key}.2")
        return F.leaky_relu(y, 0.2) if act else y

    def block(y, name):
        for i, layer in enumerate(PUBLISHED[name]):
            key = f"{name}.{i}"
            if layer[0] == "cna":
                y = cna(y, key, layer[3], layer[4])
            else:
                wide = 2 * layer[1]
                z = cna(y, f"{key}.layers.0", 1)
                z = cna(z, f"{key}.layers.1", 3, groups=wide)
                z = normalize(F.conv2d(z, sd[f"{key}.layers.2.weight"]), f"{key}.layers.3")
                y = y + z if layer[1] == layer[2] else z
        return y

    def resize(y, size):
        if align_corners:
            return F.interpolate(y, size=size, mode="bilinear", align_corners=True)
        return F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)

    half = block(x, "block_a")
    y = block(block(half, "block_b"), "block_c")
    y = block(resize(y, half.shape[-2:]), "block_d")
    y = block(resize(y, x.shape[-2:]), "block_e")
    return torch.tanh(F.conv2d(y, sd["out_layer.0.weight"]))
