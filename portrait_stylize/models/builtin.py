"""Weight-free styles, so the package stylizes photos with no download at all.

Each style is a pure, deterministic function of a ``(B, 3, H, W)`` RGB tensor in [0, 1] and the
picture's :class:`~portrait_stylize.imaging.quality.Conditions` (its scale and artefact level,
measured once on the whole picture), built from the tensor ops in :mod:`portrait_stylize.imaging.ops`.
Every operation is local (bounded support), so with the conditions fixed the styles tile exactly,
like the networks do. :class:`BuiltinStyle` wraps one as a
:class:`~portrait_stylize.models.base.StyleNetwork` (``arch: builtin``, no weights).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..imaging.ops import gaussian_blur, guided_filter, oklab_to_rgb, quantize_soft, rgb_to_luma, rgb_to_oklab, xdog
from ..imaging.quality import Conditions, measure
from .base import Runner, StyleNetwork, register_architecture


def _flatten(image: torch.Tensor, radius: int, eps: float, iterations: int, conditions: Conditions) -> torch.Tensor:
    """Self-guided filtering: flat skin and textures, edges kept. The window grows with the
    picture's scale (fitted on a copy shrunk by the whole part of the scale, so a 4K photo costs
    about what a 512-px one does); steps below the artefact contrast (noise, JPEG blocks) are
    smoothed like texture."""
    scaled = max(1, round(radius * conditions.scale))
    for _ in range(iterations):
        image = guided_filter(image, image, scaled, eps + conditions.artefacts ** 2,
                              subsample=max(1, int(conditions.scale)))
    return image


def _lines(luma: torch.Tensor, sigma: float, threshold: float, gain: float, conditions: Conditions) -> torch.Tensor:
    """XDoG ink at the picture's scale; contrasts within the artefact level draw nothing."""
    return xdog(luma, sigma * conditions.scale, threshold + conditions.artefacts / 4.0, gain)


def _feature_detail(image: torch.Tensor, flat: torch.Tensor, conditions: Conditions, threshold: float = 0.03,
                    gain: float = 1.0, softness: float = 0.7) -> torch.Tensor:
    """The facial features' lightness that flattening took away, to draw back on top of a style.

    Eyes, brows, nostrils and the lips' line are small marks much darker or lighter than the skin
    around them; a flattening window as wide as a blurry or small face's features averages them
    into the skin (eyes vanish, mouths smear). This is the luma of ``image``, lightly
    cleaned (a self-guided filter one scale step wide whose regularisation is the artefact contrast,
    so noise and JPEG blocks stay out, then a Gaussian of ``softness`` times the scale, so hair
    strands and pores of a sharp photo do not come back), minus that of ``flat`` (the style's
    flattened picture), kept only where it is stronger than ``threshold`` plus half the artefact contrast
    (a soft step up to twice that): skin texture, noise and blocks are weaker and stay flat. Purely
    local (bounded support, measured with the rest of the style by ``_measured_reach``) and
    deterministic, so styles using it still tile exactly.

    Args:
        image: ``(B, 3, H, W)`` RGB in [0, 1].
        flat: ``(B, 3, H, W)`` the style's flattened picture, RGB in [0, 1].
        conditions: the picture's scale and artefact level.
        threshold: luma difference below which detail is texture, not a feature.
        gain: how strongly the detail is drawn back (1: as in the photo).
        softness: blur of the detail, pixels at scale 1.

    Returns:
        ``(B, 1, H, W)`` lightness to add to the style's (OKLab) lightness (negative: darker; luma
        steps are used as lightness steps, which they are close to).
    """
    luma = rgb_to_luma(image)
    clean = guided_filter(luma, luma, max(1, round(conditions.scale)), 1e-4 + conditions.artefacts ** 2,
                          subsample=max(1, int(conditions.scale)))
    detail = gaussian_blur(clean, softness * conditions.scale) - rgb_to_luma(flat)
    floor = threshold + conditions.artefacts / 2.0
    return gain * detail * torch.clamp(detail.abs() / floor - 1.0, 0.0, 1.0)


def toon(image: torch.Tensor, conditions: Conditions | None = None, *, smooth_radius: int = 5,
         smooth_eps: float = 4e-3, smooth_iters: int = 2, levels: int = 4, sharpness: float = 12.0,
         chroma: float = 1.45, line_sigma: float = 1.1, line_threshold: float = 0.003,
         line_gain: float = 90.0, feature_threshold: float = 0.03, feature_gain: float = 1.0) -> torch.Tensor:
    """Cartoon look: edge-preserving smoothing, soft cel shading in OKLab and clean line art.

    Args:
        image: ``(B, 3, H, W)`` RGB in [0, 1].
        conditions: the picture's scale and artefact level (default: measured on ``image``;
            the pipeline measures the whole picture once and passes it to every tile).
        smooth_radius, smooth_eps, smooth_iters: self-guided filter that flattens skin and
            textures while keeping edges (radius in pixels at scale 1).
        levels, sharpness: number of lightness bands (OKLab L) and how hard their borders are.
        chroma: colour gain in OKLab (1 keeps the photo's colours).
        line_sigma, line_threshold, line_gain: width, sensitivity and darkness of the lines.
        feature_threshold, feature_gain: the facial features (eyes, brows, mouth) are drawn back
            on top of the flat tones where the photo's detail is stronger than this (OKLab
            luma), this strongly (see :func:`_feature_detail`); ``feature_gain=0`` turns it off.

    Returns:
        ``(B, 3, H, W)`` RGB in [0, 1].
    """
    conditions = conditions or measure(image)
    flat = _flatten(image, smooth_radius, smooth_eps, smooth_iters, conditions)
    lab = rgb_to_oklab(flat)
    lightness = lab[:, :1]
    features = _feature_detail(image, flat, conditions, feature_threshold, feature_gain)
    shaded = quantize_soft(lightness, 1.0 / levels, sharpness) + features
    lines = _lines(lightness, line_sigma, line_threshold, line_gain, conditions)
    colour = oklab_to_rgb(torch.cat([shaded.clamp(0.0, 1.0), lab[:, 1:] * chroma], dim=1))
    return torch.clamp(colour * (1.0 - 0.85 * lines), 0.0, 1.0)


def sketch(image: torch.Tensor, conditions: Conditions | None = None, *, dodge_sigma: float = 6.0,
           contrast: float = 2.2, shade: float = 0.35, line_sigma: float = 0.9, line_threshold: float = 0.004,
           line_gain: float = 25.0) -> torch.Tensor:
    """Pencil drawing: colour-dodge of the blurred negative, light tonal shading, crisp strokes.

    Noise and compression blocks are smoothed away first (a self-guided filter whose
    regularisation is the measured artefact contrast), so they are not drawn as scribbles.

    Args:
        image: ``(B, 3, H, W)`` RGB in [0, 1].
        conditions: the picture's scale and artefact level (default: measured on ``image``).
        dodge_sigma: blur of the negative (pixels at scale 1); larger gives broader strokes.
        contrast: exponent that darkens the dodge result (graphite density).
        shade: how much of the smoothed tone shows through as shading (0 = pure line drawing).
        line_sigma, line_threshold, line_gain: extra fine contour strokes (XDoG).

    Returns:
        ``(B, 3, H, W)`` grey RGB in [0, 1] (three equal channels).
    """
    conditions = conditions or measure(image)
    luma = rgb_to_luma(_flatten(image, 2, 4e-4, 1, conditions))
    dodge_sigma = dodge_sigma * conditions.scale
    dodge = torch.clamp(luma / (gaussian_blur(luma, dodge_sigma) + 1e-3), 0.0, 1.0) ** contrast
    tone = 1.0 - shade * (1.0 - gaussian_blur(luma, 2.0 * dodge_sigma))
    lines = _lines(luma, line_sigma, line_threshold, line_gain, conditions)
    out = torch.clamp(dodge * tone * (1.0 - 0.7 * lines), 0.0, 1.0)
    return out.expand(-1, 3, -1, -1).contiguous()


def comic(image: torch.Tensor, conditions: Conditions | None = None, *, smooth_radius: int = 4,
          smooth_eps: float = 6e-3, tones: int = 2, sharpness: float = 30.0, chroma: float = 1.4,
          shadow: float = 0.42, line_sigma: float = 2.0, line_threshold: float = 0.002,
          line_gain: float = 60.0, feature_threshold: float = 0.03, feature_gain: float = 1.0) -> torch.Tensor:
    """Comic-book ink: a few flat tones of strong colour, solid black shadows and bold outlines.

    Args:
        image: ``(B, 3, H, W)`` RGB in [0, 1].
        conditions: the picture's scale and artefact level (default: measured on ``image``).
        smooth_radius, smooth_eps: self-guided filtering before anything is drawn.
        tones, sharpness: lightness bands (in OKLab) and how hard their borders are.
        chroma: colour gain in OKLab (1 keeps the photo's colours).
        shadow: OKLab lightness below which the ink is solid black.
        line_sigma, line_threshold, line_gain: width, sensitivity and darkness of the outlines.
        feature_threshold, feature_gain: the facial features (eyes, brows, mouth) are drawn back
            on top of the flat tones where the photo's detail is stronger than this (OKLab
            luma), this strongly (see :func:`_feature_detail`); ``feature_gain=0`` turns it off.

    Returns:
        ``(B, 3, H, W)`` RGB in [0, 1].
    """
    conditions = conditions or measure(image)
    flat = _flatten(image, smooth_radius, smooth_eps, 2, conditions)
    lab = rgb_to_oklab(flat)
    lightness = lab[:, :1]
    features = _feature_detail(image, flat, conditions, feature_threshold, feature_gain)
    banded = (quantize_soft(lightness, 1.0 / tones, sharpness).clamp(0.35, 1.0) + features).clamp(0.0, 1.0)
    colour = oklab_to_rgb(torch.cat([banded, lab[:, 1:] * chroma], dim=1))
    ink = torch.maximum(torch.sigmoid((shadow - lightness) * 40.0),
                        _lines(lightness, line_sigma, line_threshold, line_gain, conditions))
    return torch.clamp(colour * (1.0 - ink), 0.0, 1.0)


def watercolour(image: torch.Tensor, conditions: Conditions | None = None, *, smooth_radius: int = 8,
                smooth_eps: float = 1e-2, bleed_sigma: float = 5.0, wash: float = 0.38, pooling: float = 5.0,
                pool_sigma: float = 2.0, chroma: float = 0.9, feature_threshold: float = 0.03,
                feature_gain: float = 1.0) -> torch.Tensor:
    """Watercolour: soft, light washes whose colour bleeds across edges, with darker pigment
    pooled along them.

    Args:
        image: ``(B, 3, H, W)`` RGB in [0, 1].
        conditions: the picture's scale and artefact level (default: measured on ``image``).
        smooth_radius, smooth_eps: self-guided filtering (the washes are flat).
        bleed_sigma: how far colour runs across edges (blur of OKLab a, b; pixels at scale 1).
        wash: how much lighter everything gets (0 keeps the lightness, 1 is blank paper).
        pooling, pool_sigma: darkness and width of the pigment rims along edges.
        chroma: colour gain in OKLab.
        feature_threshold, feature_gain: the facial features (eyes, brows, mouth) are drawn back
            into the washes where the photo's detail is stronger than this (OKLab
            luma), this strongly (see :func:`_feature_detail`); ``feature_gain=0`` turns it off.

    Returns:
        ``(B, 3, H, W)`` RGB in [0, 1].
    """
    conditions = conditions or measure(image)
    flat = _flatten(image, smooth_radius, smooth_eps, 2, conditions)
    lab = rgb_to_oklab(flat)
    lightness = lab[:, :1]
    pool_sigma = pool_sigma * conditions.scale
    rims = (gaussian_blur(lightness, pool_sigma) - gaussian_blur(lightness, 2.0 * pool_sigma)).abs()
    features = _feature_detail(image, flat, conditions, feature_threshold, feature_gain)
    lightness = lightness + features + (1.0 - lightness - features) * wash - pooling * rims
    ab = gaussian_blur(lab[:, 1:], bleed_sigma * conditions.scale) * chroma
    return oklab_to_rgb(torch.cat([lightness.clamp(0.0, 1.0), ab], dim=1))


def poster(image: torch.Tensor, conditions: Conditions | None = None, *, smooth_radius: int = 4,
           smooth_eps: float = 5e-3, levels: int = 3, chroma_step: float = 0.06, chroma: float = 1.3,
           sharpness: float = 40.0, line_sigma: float = 1.2, line_threshold: float = 0.004,
           line_gain: float = 0.0, feature_threshold: float = 0.03, feature_gain: float = 1.0,
           feature_step: float = 0.08, feature_sharpness: float = 5.0) -> torch.Tensor:
    """Flat-colour poster, like a screen print: three lightness bands and flat hues (outlines
    optional: ``line_gain > 0``).

    Args:
        image: ``(B, 3, H, W)`` RGB in [0, 1].
        conditions: the picture's scale and artefact level (default: measured on ``image``).
        smooth_radius, smooth_eps: self-guided filtering (flat areas).
        levels: lightness bands (OKLab L).
        chroma_step: spacing of the colour levels in OKLab a and b (larger: fewer hues).
        chroma: colour gain in OKLab before quantizing.
        sharpness: how hard the band borders are.
        line_sigma, line_threshold, line_gain: width, sensitivity and darkness of the outlines.
        feature_threshold, feature_gain: the facial features (eyes, brows, mouth) are drawn back
            on top of the bands where the photo's detail is stronger than this (OKLab
            luma), this strongly (see :func:`_feature_detail`); ``feature_gain=0`` turns it off.
        feature_step, feature_sharpness: the features are printed in steps of this much lightness
            too, with soft borders (hard ones would add steps on the JPEG block grid).

    Returns:
        ``(B, 3, H, W)`` RGB in [0, 1].
    """
    conditions = conditions or measure(image)
    flat = _flatten(image, smooth_radius, smooth_eps, 2, conditions)
    lab = rgb_to_oklab(flat)
    features = _feature_detail(image, flat, conditions, feature_threshold, feature_gain)
    lightness = quantize_soft(lab[:, :1], 1.0 / levels, sharpness) + quantize_soft(features, feature_step,
                                                                                  feature_sharpness)
    ab = quantize_soft(lab[:, 1:] * chroma, chroma_step, sharpness)
    lines = _lines(lab[:, :1], line_sigma, line_threshold, line_gain, conditions)
    return torch.clamp(oklab_to_rgb(torch.cat([lightness.clamp(0.0, 1.0), ab], dim=1)) * (1.0 - 0.8 * lines), 0.0, 1.0)


#: Reach is measured at scales of this ladder (steps per octave), the step at or above a picture's:
#: kernels only grow with the scale, so that reach covers the picture's, and pictures of every size
#: share a few measurements (each costs two runs of the style, up to a second or more) instead
#: of paying one per size (a web demo's first call at each new size: 1.5-14 s).
REACH_STEPS_PER_OCTAVE = 4


def reach_scale(scale: float) -> float:
    """The smallest scale ``2 ** (k / REACH_STEPS_PER_OCTAVE)`` (integer ``k``) at or above ``scale``."""
    steps = math.ceil(REACH_STEPS_PER_OCTAVE * math.log2(scale) - 1e-9)
    return 2.0 ** (steps / REACH_STEPS_PER_OCTAVE)


#: Bounded: 5 styles x the ladder's 21 steps over the scales' range [0.5, 16] fit.
@functools.lru_cache(maxsize=128)
def _measured_reach(builtin: str, params: tuple[tuple[str, Any], ...], scale: float) -> int:
    """How far, in pixels, a change of one input pixel moves the output of the built-in style
    ``builtin`` with ``params`` at ``scale``: the style is run on a busy random picture with and
    without a change at its centre. Every built-in filter has bounded support, so a large enough
    probe always shows the whole reach. The artefact level changes thresholds, not kernel sizes,
    so the probe runs without it; remembered per style and scale (video frames, a folder of photos
    from one camera) because it costs two runs of the style."""
    fn, conditions = BUILTIN_STYLES[builtin], Conditions(scale=scale)
    bound = math.ceil(64 * conditions.scale) + 16
    generator = torch.Generator().manual_seed(0)
    while True:
        size = 2 * bound + 1
        probe = gaussian_blur(torch.rand(1, 3, size, size, generator=generator, dtype=torch.float64), 0.7)
        changed = probe.clone()
        changed[..., bound, bound] = 1.0 - changed[..., bound, bound]
        moved = (fn(changed, conditions, **dict(params)) != fn(probe, conditions, **dict(params))).any(dim=1)[0]
        rows, cols = torch.nonzero(moved, as_tuple=True)
        reach = int(torch.maximum((rows - bound).abs().max(), (cols - bound).abs().max()))
        if reach < bound:
            return reach
        bound *= 2


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
    adapts_to_faces = True

    def __init__(self, builtin: str = "toon", params: dict[str, Any] | None = None, **conventions: Any) -> None:
        super().__init__(**conventions)
        if builtin not in BUILTIN_STYLES:
            raise ValueError(f"unknown built-in style {builtin!r}; known: {', '.join(BUILTIN_STYLES)}")
        fn = BUILTIN_STYLES[builtin]
        accepted = [name for name, p in inspect.signature(fn).parameters.items() if p.kind is p.KEYWORD_ONLY]
        for key in params or {}:
            if key not in accepted:
                raise ValueError(f"built-in style {builtin!r} has no parameter {key!r}; it takes {', '.join(accepted)}")
        self.builtin = builtin
        self.params = dict(params or {})
        self.conditions: Conditions | None = None
        self._fn = fn

    def architecture_config(self) -> dict[str, Any]:
        return {"builtin": self.builtin, "params": self.params}

    def forward(self, image: torch.Tensor, part: str = "image", reference: torch.Tensor | None = None,
                runners: Mapping[str, Runner] | None = None) -> torch.Tensor:
        self.check_call(part, reference)
        return self._fn(image, self.conditions, **self.params)

    def tiling_context(self) -> tuple[int, int] | None:
        """Exact tiling once the picture's conditions are fixed (see :meth:`adapted_to`): the
        filters' reach, measured by :func:`_measured_reach` with a quarter more for safety, and
        the fast guided filter's cell size as alignment. ``None`` before that (cross-faded)."""
        if self.conditions is None:
            return None
        align = max(1, int(self.conditions.scale))
        reach = _measured_reach(self.builtin, tuple(sorted(self.params.items())), reach_scale(self.conditions.scale))
        halo = math.ceil(1.25 * reach) + align
        return -(-halo // align) * align, align

    def adapted_to(self, image: torch.Tensor, face_sizes: Sequence[float] = ()) -> BuiltinStyle:
        """This style with the :class:`~portrait_stylize.imaging.quality.Conditions` of ``image``
        (its scale, blur, noise and blocks, and the size of its faces) fixed, so every tile of it
        is filtered alike."""
        adapted = BuiltinStyle(self.builtin, self.params, **self.meta)
        adapted.conditions = measure(image, face_sizes)
        return adapted

    def card_rows(self) -> dict[str, str]:
        return {"networks": f"none: the built-in filter {self.builtin!r}"}
