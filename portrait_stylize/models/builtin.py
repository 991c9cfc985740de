"""Weight-free styles, so the package stylizes photos with no download at all.

Each style is a pure, deterministic function of a ``(B, 3, H, W)`` RGB tensor in [0, 1] built from
the tensor ops in :mod:`portrait_stylize.ops`; every operation is local (bounded support), so the
styles tile seamlessly like the networks do. :class:`BuiltinStyle` wraps one as a
:class:`~portrait_stylize.models.base.StyleNetwork` (``arch: builtin``, no weights).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

import torch

from ..ops import gaussian_blur, guided_filter, oklab_to_rgb, quantize_soft, rgb_to_luma, rgb_to_oklab, xdog
from .base import Runner, StyleNetwork, register_architecture


def _flatten(image: torch.Tensor, radius: int, eps: float, iterations: int) -> torch.Tensor:
    """Self-guided filtering: flat skin and textures, edges kept."""
    for _ in range(iterations):
        image = guided_filter(image, image, radius, eps)
    return image


def toon(image: torch.Tensor, smooth_radius: int = 5, smooth_eps: float = 4e-3, smooth_iters: int = 2,
         levels: int = 8, sharpness: float = 7.0, saturation: float = 1.3, line_sigma: float = 1.0,
         line_threshold: float = 0.003, line_gain: float = 90.0) -> torch.Tensor:
    """Cartoon look: edge-preserving smoothing, soft colour quantization and clean line art.

    Args:
        image: ``(B, 3, H, W)`` RGB in [0, 1].
        smooth_radius, smooth_eps, smooth_iters: self-guided filter that flattens skin and
            textures while keeping edges.
        levels, sharpness: number of brightness bands and how hard their borders are.
        saturation: chroma gain (1 keeps the photo's colours).
        line_sigma, line_threshold, line_gain: width, sensitivity and darkness of the lines.

    Returns:
        ``(B, 3, H, W)`` RGB in [0, 1].
    """
    flat = _flatten(image, smooth_radius, smooth_eps, smooth_iters)
    luma = rgb_to_luma(flat)
    colour = luma + (flat - luma) * saturation
    colour = colour + (quantize_soft(luma, 1.0 / levels, sharpness) - luma)
    lines = xdog(luma, line_sigma, line_threshold, line_gain)
    return torch.clamp(colour * (1.0 - 0.85 * lines), 0.0, 1.0)


def sketch(image: torch.Tensor, dodge_sigma: float = 6.0, contrast: float = 2.2, shade: float = 0.35,
           line_sigma: float = 0.9, line_threshold: float = 0.004, line_gain: float = 25.0) -> torch.Tensor:
    """Pencil drawing: colour-dodge of the blurred negative, light tonal shading, crisp strokes.

    Args:
        image: ``(B, 3, H, W)`` RGB in [0, 1].
        dodge_sigma: blur of the negative; larger gives broader strokes.
        contrast: exponent that darkens the dodge result (graphite density).
        shade: how much of the smoothed tone shows through as shading (0 = pure line drawing).
        line_sigma, line_threshold, line_gain: extra fine contour strokes (XDoG).

    Returns:
        ``(B, 3, H, W)`` grey RGB in [0, 1] (three equal channels).
    """
    luma = rgb_to_luma(image)
    dodge = torch.clamp(luma / (gaussian_blur(luma, dodge_sigma) + 1e-3), 0.0, 1.0) ** contrast
    tone = 1.0 - shade * (1.0 - gaussian_blur(luma, 2.0 * dodge_sigma))
    lines = xdog(luma, line_sigma, line_threshold, line_gain)
    out = torch.clamp(dodge * tone * (1.0 - 0.7 * lines), 0.0, 1.0)
    return out.expand(-1, 3, -1, -1).contiguous()


def comic(image: torch.Tensor, smooth_radius: int = 4, smooth_eps: float = 6e-3, tones: int = 2,
          sharpness: float = 30.0, chroma: float = 1.4, shadow: float = 0.42, line_sigma: float = 2.0,
          line_threshold: float = 0.002, line_gain: float = 60.0) -> torch.Tensor:
    """Comic-book ink: a few flat tones of strong colour, solid black shadows and bold outlines.

    Args:
        image: ``(B, 3, H, W)`` RGB in [0, 1].
        smooth_radius, smooth_eps: self-guided filtering before anything is drawn.
        tones, sharpness: lightness bands (in OKLab) and how hard their borders are.
        chroma: colour gain in OKLab (1 keeps the photo's colours).
        shadow: OKLab lightness below which the ink is solid black.
        line_sigma, line_threshold, line_gain: width, sensitivity and darkness of the outlines.

    Returns:
        ``(B, 3, H, W)`` RGB in [0, 1].
    """
    lab = rgb_to_oklab(_flatten(image, smooth_radius, smooth_eps, 2))
    lightness = lab[:, :1]
    banded = quantize_soft(lightness, 1.0 / tones, sharpness).clamp(0.35, 1.0)
    colour = oklab_to_rgb(torch.cat([banded, lab[:, 1:] * chroma], dim=1))
    ink = torch.maximum(torch.sigmoid((shadow - lightness) * 40.0), xdog(lightness, line_sigma, line_threshold, line_gain))
    return torch.clamp(colour * (1.0 - ink), 0.0, 1.0)


def watercolour(image: torch.Tensor, smooth_radius: int = 8, smooth_eps: float = 1e-2, bleed_sigma: float = 5.0,
                wash: float = 0.45, pooling: float = 5.0, pool_sigma: float = 2.0, chroma: float = 0.9) -> torch.Tensor:
    """Watercolour: soft, light washes whose colour bleeds across edges, with darker pigment
    pooled along them.

    Args:
        image: ``(B, 3, H, W)`` RGB in [0, 1].
        smooth_radius, smooth_eps: self-guided filtering (the washes are flat).
        bleed_sigma: how far colour runs across edges (blur of OKLab a, b in pixels).
        wash: how much lighter everything gets (0 keeps the lightness, 1 is blank paper).
        pooling, pool_sigma: darkness and width of the pigment rims along edges.
        chroma: colour gain in OKLab.

    Returns:
        ``(B, 3, H, W)`` RGB in [0, 1].
    """
    lab = rgb_to_oklab(_flatten(image, smooth_radius, smooth_eps, 2))
    lightness = lab[:, :1]
    rims = (gaussian_blur(lightness, pool_sigma) - gaussian_blur(lightness, 2.0 * pool_sigma)).abs()
    lightness = lightness + (1.0 - lightness) * wash - pooling * rims
    ab = gaussian_blur(lab[:, 1:], bleed_sigma) * chroma
    return oklab_to_rgb(torch.cat([lightness.clamp(0.0, 1.0), ab], dim=1))


def poster(image: torch.Tensor, smooth_radius: int = 4, smooth_eps: float = 5e-3, levels: int = 3,
           chroma_step: float = 0.06, chroma: float = 1.3, sharpness: float = 40.0, line_sigma: float = 1.2,
           line_threshold: float = 0.004, line_gain: float = 0.0) -> torch.Tensor:
    """Flat-colour poster, like a screen print: three lightness bands and flat hues (outlines
    optional: ``line_gain > 0``).

    Args:
        image: ``(B, 3, H, W)`` RGB in [0, 1].
        smooth_radius, smooth_eps: self-guided filtering (flat areas).
        levels: lightness bands (OKLab L).
        chroma_step: spacing of the colour levels in OKLab a and b (larger: fewer hues).
        chroma: colour gain in OKLab before quantizing.
        sharpness: how hard the band borders are.
        line_sigma, line_threshold, line_gain: width, sensitivity and darkness of the outlines.

    Returns:
        ``(B, 3, H, W)`` RGB in [0, 1].
    """
    lab = rgb_to_oklab(_flatten(image, smooth_radius, smooth_eps, 2))
    lightness = quantize_soft(lab[:, :1], 1.0 / levels, sharpness)
    ab = quantize_soft(lab[:, 1:] * chroma, chroma_step, sharpness)
    lines = xdog(lab[:, :1], line_sigma, line_threshold, line_gain)
    return torch.clamp(oklab_to_rgb(torch.cat([lightness, ab], dim=1)) * (1.0 - 0.8 * lines), 0.0, 1.0)


BUILTIN_STYLES: dict[str, Callable[..., torch.Tensor]] = {"toon": toon, "sketch": sketch, "comic": comic,
                                                          "watercolour": watercolour, "poster": poster}


@register_architecture
class BuiltinStyle(StyleNetwork):
    """A weight-free style.

    Args:
        builtin: key of :data:`BUILTIN_STYLES`.
        params: keyword overrides for that function (from the registry entry's ``params``).
        **conventions: provenance (``name``, ``description`` ...), see
            :class:`~portrait_stylize.models.base.StyleNetwork`.

    Shapes:
        ``forward(image)``: ``(B, 3, H, W)`` RGB in [0, 1] -> same shape, RGB in [0, 1], on the
        input's device.
    """

    arch = "builtin"

    def __init__(self, builtin: str = "toon", params: dict[str, Any] | None = None, **conventions: Any) -> None:
        super().__init__(**conventions)
        if builtin not in BUILTIN_STYLES:
            raise ValueError(f"unknown built-in style {builtin!r}; known: {', '.join(BUILTIN_STYLES)}")
        fn = BUILTIN_STYLES[builtin]
        accepted = list(inspect.signature(fn).parameters)[1:]
        for key in params or {}:
            if key not in accepted:
                raise ValueError(f"built-in style {builtin!r} has no parameter {key!r}; it takes {', '.join(accepted)}")
        self.builtin = builtin
        self.params = dict(params or {})
        self._fn = fn

    def architecture_config(self) -> dict[str, Any]:
        return {"builtin": self.builtin, "params": self.params}

    def forward(self, image: torch.Tensor, part: str = "image", reference: torch.Tensor | None = None,
                runners: Mapping[str, Runner] | None = None) -> torch.Tensor:
        self.check_call(part, reference)
        return self._fn(image, **self.params)

    def card_rows(self) -> dict[str, str]:
        return {"networks": f"none: the built-in filter {self.builtin!r}"}
