"""Measure how sharp, noisy and blocky a picture is, so filters can adapt to it.

Phone screenshots, old scans, video frames and small crops are what most users upload: a style
tuned on sharp 512-px portraits finds no edges in a blurry face and draws JPEG's 8x8 blocks as
scribbles. These measures, all on ``(B, 1, H, W)`` luma in [0, 1], tell the built-in styles how
wide their kernels must be and which contrasts are artefacts, not detail:

* :func:`blur_sigma`: width of the picture's sharpest edges, as the sigma of a Gaussian blur.
* :func:`noise_sigma`: standard deviation of pixel noise (Immerkaer, 1996).
* :func:`blockiness`: how much stronger the steps on an 8x8 block grid are than elsewhere.
* :func:`measure`: the three combined into the :class:`Conditions` a style runs under.

:func:`degrade` makes the copies users upload (downscaled, blurred, JPEG-blocky) from a sharp
photo, for tests and pictures of how styles cope with them.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter

from ..errors import InvalidArgumentError
from .ops import check_bchw, gaussian_blur, rgb_to_luma

#: The picture size the built-in styles' default kernels are tuned for (short side, pixels).
REFERENCE_SIDE = 512
#: :func:`measure` looks at most this many pixels square in the middle of the picture, and
#: measures nothing on pictures thinner than ``MIN_MEASURED_SIDE``.
MEASURED_SIDE = 1024
MIN_MEASURED_SIDE = 16
#: Face box side (:attr:`portrait_stylize.faces.Face.size`) in such portraits: 284-347 px measured
#: on the fixture portraits scaled to 512 px.
REFERENCE_FACE = 300
#: :func:`blur_sigma` of sharp photos (0.74-0.93 measured on the fixture portraits at 512 px).
SHARP_BLUR = 0.8


def _steps(luma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Absolute differences between horizontal and between vertical neighbours."""
    return (luma[..., :, 1:] - luma[..., :, :-1]).abs(), (luma[..., 1:, :] - luma[..., :-1, :]).abs()


def blur_sigma(luma: torch.Tensor, probe: float = 2.0, quantile: float = 0.995) -> torch.Tensor:
    """Blur of the picture's sharpest edges, in pixels.

    A step edge blurred by a Gaussian of sigma ``s`` has a peak gradient proportional to ``1/s``;
    blurring it again by ``probe`` lowers that to ``1/sqrt(s^2 + probe^2)``. The ratio of the
    strongest gradients (their ``quantile``) after and before the probe blur gives ``s``.

    Args:
        luma: ``(B, 1, H, W)`` brightness in [0, 1].
        probe: sigma of the extra blur, pixels.
        quantile: which gradients count as the strongest edges.

    Returns:
        ``(B,)`` float tensor, pixels: about 0.8 for sharp photos, about 2-3 for a picture
        downscaled 4x and scaled back up, ``inf`` for a flat picture (no edges at all).
    """
    check_bchw(luma, "luma")

    def strongest(x: torch.Tensor) -> torch.Tensor:
        gx, gy = _steps(x)
        steps = torch.cat([gx.flatten(1), gy.flatten(1)], 1).float()
        # kthvalue, not quantile: torch.quantile refuses more than 2**24 values (a 6K photo).
        return steps.kthvalue(max(1, round(quantile * steps.shape[1])), dim=1).values

    before = strongest(luma)
    ratio = (strongest(gaussian_blur(luma, probe)) / before.clamp_min(1e-12)).clamp(max=1.0 - 1e-6)
    sigma = probe * ratio / torch.sqrt(1.0 - ratio ** 2)
    return torch.where(before > 1e-6, sigma, torch.full_like(sigma, math.inf))


def noise_sigma(luma: torch.Tensor) -> torch.Tensor:
    """Standard deviation of additive pixel noise (Immerkaer's fast estimate).

    The 3x3 kernel ``[[1,-2,1],[-2,4,-2],[1,-2,1]]`` is the difference of two Laplacians, so it
    cancels smooth image structure and keeps noise; edges are left out (pixels whose Sobel
    magnitude is above the median) so that detail is not counted as noise.

    Args:
        luma: ``(B, 1, H, W)`` brightness in [0, 1], at least 3x3.

    Returns:
        ``(B,)`` float tensor in luma units: Gaussian noise of sigma ``s`` reads about ``s``.
    """
    check_bchw(luma, "luma")
    x = luma.float()
    kernel = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]]).view(1, 1, 3, 3)
    response = F.conv2d(x, kernel).abs()
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]).view(1, 1, 3, 3)
    edges = F.conv2d(x, sobel).abs() + F.conv2d(x, sobel.transpose(-1, -2)).abs()
    flat = (edges <= edges.flatten(1).median(dim=1).values.view(-1, 1, 1, 1)).float()
    mean = (response * flat).sum(dim=(1, 2, 3)) / flat.sum(dim=(1, 2, 3)).clamp_min(1.0)
    return math.sqrt(math.pi / 2.0) / 6.0 * mean


def blockiness(luma: torch.Tensor, block: int = 8, phase: int | None = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """How much stronger the steps between neighbouring pixels are on a block grid than off it.

    JPEG and most video codecs code 8x8 blocks independently; at low quality each block's
    content shifts, leaving steps on the grid lines that no photo has.

    Args:
        luma: ``(B, 1, H, W)`` brightness in [0, 1].
        block: grid spacing in pixels.
        phase: where the grid lies: steps between pixel ``phase + k*block - 1`` and the next
            (0: a decoded JPEG, not cropped); ``None`` takes the phase with the strongest steps
            (a crop or a shifted copy).

    Returns:
        ``(ratio, excess)``, each ``(B,)``: the mean step on grid lines over the mean step
        elsewhere (about 1 for a photo, 2-3 for JPEG quality 20), and the difference of the two
        means (luma units: how much contrast the blocks add).
    """
    check_bchw(luma, "luma")
    gx, gy = _steps(luma.float())
    columns, rows = gx.mean(dim=(1, 2)), gy.mean(dim=(1, 3))  # (B, W-1), (B, H-1)
    on = []
    off = []
    for p in range(block) if phase is None else [phase % block]:
        grid_c = torch.arange(columns.shape[1]) % block == (p - 1) % block
        grid_r = torch.arange(rows.shape[1]) % block == (p - 1) % block
        on.append(torch.cat([columns[:, grid_c], rows[:, grid_r]], 1).mean(1))
        off.append(torch.cat([columns[:, ~grid_c], rows[:, ~grid_r]], 1).mean(1))
    on_t, off_t = torch.stack(on, 1), torch.stack(off, 1)
    best = (on_t - off_t).argmax(dim=1, keepdim=True)
    on_b, off_b = on_t.gather(1, best)[:, 0], off_t.gather(1, best)[:, 0]
    return on_b / off_b.clamp_min(1e-12), (on_b - off_b).clamp_min(0.0)


@dataclass(frozen=True)
class Conditions:
    """What a picture is like, for filters that adapt to it (see :func:`measure`).

    Attributes:
        scale: how much wider than their defaults the kernels must be: 1 for a sharp portrait
            512 px on its short side, 4 for a sharp 2048-px one, more when the picture is
            blurry for its size (its detail is coarser than its pixels).
        artefacts: contrast (luma units, [0, 1]) below which steps are noise or compression
            blocks rather than detail; filters smooth them away and draw no lines for them.
    """

    scale: float = 1.0
    artefacts: float = 0.0


def measure(image: torch.Tensor, face_sizes: Sequence[float] = (), reference_side: int = REFERENCE_SIDE) -> Conditions:
    """Measure the :class:`Conditions` of a picture.

    The kernel scale is the larger of the size scale and a blur scale. The size scale is the
    short side over ``reference_side``, or, when the picture's faces are smaller than a
    portrait's (a group photo, a half-length shot), their median size over
    :data:`REFERENCE_FACE`: the faces then look as they would in a portrait. The blur scale: a
    picture whose sharpest edges are ``u`` times wider than a sharp photo's holds the detail of
    one ``u`` times smaller, and a small picture keeps at least half the default kernels, so its
    scale is ``u / 2``. Artefacts are the larger of the noise and the blocks' excess contrast (on
    the grid phase where the blocks are strongest), times 2.

    Args:
        image: ``(1, 3, H, W)`` RGB in [0, 1] (the first picture of a batch is measured, in its
            middle :data:`MEASURED_SIDE` pixels square).
        face_sizes: the sides of the picture's face boxes in pixels (none: the size alone).
        reference_side: short side, in pixels, that the default kernels are tuned for.

    Returns:
        :class:`Conditions`; ``scale`` is clipped to [0.5, 16]. Pictures thinner than
        :data:`MIN_MEASURED_SIDE` get scale 0.5 and no artefacts.
    """
    check_bchw(image, "image")
    if min(image.shape[-2:]) < MIN_MEASURED_SIDE:  # a sliver has no statistics: the defaults
        return Conditions(scale=0.5, artefacts=0.0)
    size_scale = min(image.shape[-2:]) / reference_side
    if len(face_sizes):
        size_scale = min(size_scale, float(np.median(face_sizes)) / REFERENCE_FACE)
    # The middle (where the subject is) at most 1024 px square: the measures are local
    # statistics, and this bounds their cost on a 50-MP photo. Offsets stay on the 8x8 grid.
    top, left = [max(0, (side - MEASURED_SIDE) // 2) // 8 * 8 for side in image.shape[-2:]]
    luma = rgb_to_luma(image[:1, :, top:top + MEASURED_SIDE, left:left + MEASURED_SIDE].float())
    blur = float(blur_sigma(luma)[0])
    upsampled = max(1.0, blur / SHARP_BLUR) if math.isfinite(blur) else 1.0
    scale = min(max(size_scale, upsampled / 2.0, 0.5), 16.0)
    artefacts = 2.0 * max(float(noise_sigma(luma)[0]), float(blockiness(luma, phase=None)[1][0]))
    return Conditions(scale=scale, artefacts=artefacts)


#: The degraded copies :func:`degrade` makes.
DEGRADATIONS = ("down4", "blur2", "jpeg20")


def degrade(photo: Image.Image, how: str) -> Image.Image:
    """A degraded copy of an RGB photo, of the same size.

    Args:
        photo: PIL RGB image.
        how: ``"down4"`` (a quarter of the size and back up, bicubic: a small crop or video
            frame), ``"blur2"`` (Gaussian blur, sigma 2 px: out of focus), ``"jpeg20"`` (JPEG at
            quality 20: a phone screenshot), or ``"sharp"`` (the photo itself).

    Returns:
        PIL RGB image.
    """
    if how == "down4":
        small = (max(photo.width // 4, 1), max(photo.height // 4, 1))
        return photo.resize(small, Image.BICUBIC).resize(photo.size, Image.BICUBIC)
    if how == "blur2":
        return photo.filter(ImageFilter.GaussianBlur(2))
    if how == "jpeg20":
        encoded = io.BytesIO()
        photo.save(encoded, "JPEG", quality=20)
        return Image.open(encoded).convert("RGB")
    if how == "sharp":
        return photo
    raise InvalidArgumentError(f"unknown degradation {how!r}; known: sharp, {', '.join(DEGRADATIONS)}")
