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

from ..ops import gaussian_blur, guided_filter, rgb_to_luma
from .base import Runner, StyleNetwork, register_architecture


def _soft_posterize(y: torch.Tensor, levels: int, sharpness: float) -> torch.Tensor:
    """Round ``y`` in [0, 1] to ``levels`` steps with smooth (anti-aliased) transitions."""
    v = y * levels
    k = torch.floor(v)
    return (k + torch.sigmoid((v - k - 0.5) * sharpness)) / levels


def _dog_lines(y: torch.Tensor, sigma: float, threshold: float, gain: float) -> torch.Tensor:
    """Line darkness in [0, 1] from a difference of Gaussians on the dark side of edges (XDoG)."""
    dog = gaussian_blur(y, sigma) - gaussian_blur(y, 1.6 * sigma)
    return torch.clamp((-dog - threshold) * gain, 0.0, 1.0)


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
    flat = image
    for _ in range(smooth_iters):
        flat = guided_filter(flat, flat, smooth_radius, smooth_eps)
    luma = rgb_to_luma(flat)
    colour = luma + (flat - luma) * saturation
    colour = colour + (_soft_posterize(luma, levels, sharpness) - luma)
    lines = _dog_lines(luma, line_sigma, line_threshold, line_gain)
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
    lines = _dog_lines(luma, line_sigma, line_threshold, line_gain)
    out = torch.clamp(dodge * tone * (1.0 - 0.7 * lines), 0.0, 1.0)
    return out.expand(-1, 3, -1, -1).contiguous()


BUILTIN_STYLES: dict[str, Callable[..., torch.Tensor]] = {"toon": toon, "sketch": sketch}


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
