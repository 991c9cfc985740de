"""Compositing maths: feathered masks, multi-band blending and histogram harmonisation.

Images here are float32 NumPy arrays ``(H, W, 3)`` RGB in [0, 1]; masks are ``(H, W)``.

Guarantees the pipeline relies on (and tests check):

* a feathered mask is exactly 0 farther than the feather width from its region (square
  neighbourhood, :func:`dilate`) and exactly 1 deeper than it inside (:func:`erode`);
* :func:`composite` returns the photo bit-exactly where the weight is 0 and the stylized image
  where it is 1; in between it blends band by band (Laplacian pyramid), so stylized texture
  fades in over its own scale and no seam shows.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

#: Feather width as a fraction of the face size (face regions), or of the image's short side.
FACE_FEATHER = 0.05
IMAGE_FEATHER = 0.02
MIN_FEATHER = 2
#: Side of the blocks :func:`composite` blends one at a time (bounds its memory on large images).
BLEND_BLOCK = 1024
#: Each block is blended with a margin of this many coarsest-level pixels around it, wider than
#: the pyramid's reach (so blocks join without seams).
BLEND_MARGIN = 4
#: Rows per chunk when :func:`harmonize` maps pixels (bounds its float64 temporaries).
_ROWS = 256


def feather_width(size: float, fraction: float) -> int:
    """Feather width in pixels for something ``size`` pixels big."""
    return max(MIN_FEATHER, round(fraction * size))


def _square(radius: int) -> np.ndarray:
    return np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Bool mask grown by ``radius`` pixels (square neighbourhood)."""
    return cv2.dilate(mask.astype(np.uint8), _square(radius)).astype(bool)


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Bool mask shrunk by ``radius`` pixels (square neighbourhood; the image border counts as outside)."""
    return cv2.erode(mask.astype(np.uint8), _square(radius), borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)


def feather(mask: np.ndarray, radius: int) -> np.ndarray:
    """Soft ``(H, W)`` float32 mask in [0, 1] from a bool mask: a Gaussian (σ = radius / 2)
    truncated at ``radius``, so it is exactly 0 beyond ``dilate(mask, radius)`` and exactly 1
    inside ``erode(mask, radius)``."""
    if not mask.any():
        return np.zeros(mask.shape, np.float32)
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (t / (radius / 2.0)) ** 2)
    kernel = (kernel / kernel.sum()).astype(np.float32)
    soft = cv2.sepFilter2D(mask.astype(np.float32), -1, kernel, kernel, borderType=cv2.BORDER_REPLICATE)
    soft = np.clip(soft, 0.0, 1.0)
    soft[~dilate(mask, radius)] = 0.0
    soft[erode(mask, radius)] = 1.0
    return soft


def _levels(radius: int) -> int:
    return int(np.clip(math.floor(math.log2(max(radius, 2))), 1, 6))


def composite(photo: np.ndarray, stylized: np.ndarray, weight: np.ndarray, radius: int,
              out: np.ndarray | None = None) -> np.ndarray:
    """Blend ``stylized`` over ``photo`` with ``weight`` (``(H, W)`` in [0, 1]) band by band.

    ``radius`` is the feather width; the pyramid has about ``log2(radius)`` levels so coarse
    bands do not reach far past it. Exactly ``photo`` where ``weight == 0`` and ``stylized``
    where ``weight == 1``; in between (the band), a Laplacian-pyramid blend computed block by
    block (:data:`BLEND_BLOCK` px plus a margin wider than the pyramid's reach), so a 4K picture
    needs no full-size pyramids.

    Args:
        out: where to write the result (``(H, W, 3)`` float32); may be ``photo`` itself, which is
            then overwritten. Default: a new array.
    """
    band_values = []
    band = (weight > 0) & (weight < 1)
    if band.any():
        levels = _levels(radius)
        margin = BLEND_MARGIN * 2**levels
        ys, xs = np.nonzero(band.any(1))[0], np.nonzero(band.any(0))[0]
        for by in range(ys.min(), ys.max() + 1, BLEND_BLOCK):
            for bx in range(xs.min(), xs.max() + 1, BLEND_BLOCK):
                core = np.s_[by:by + BLEND_BLOCK, bx:bx + BLEND_BLOCK]
                inside = band[core]
                if not inside.any():
                    continue
                y0, x0 = max(by - margin, 0), max(bx - margin, 0)
                y1, x1 = (min(by + BLEND_BLOCK + margin, weight.shape[0]),
                          min(bx + BLEND_BLOCK + margin, weight.shape[1]))
                blended = _pyramid_blend(photo[y0:y1, x0:x1], stylized[y0:y1, x0:x1], weight[y0:y1, x0:x1], levels)
                h, w = inside.shape
                blended = blended[by - y0:by - y0 + h, bx - x0:bx - x0 + w]
                band_values.append((core, inside, np.clip(blended[inside], 0.0, 1.0)))
    # The band is blended from the untouched photo first, so ``out`` may overwrite it afterwards.
    out = _output(photo, out)
    np.copyto(out, stylized, where=(weight >= 1.0)[..., None])
    for core, inside, values in band_values:
        out[core][inside] = values
    return out


def _pyramid_blend(a: np.ndarray, b: np.ndarray, weight: np.ndarray, levels: int) -> np.ndarray:
    """Laplacian-pyramid blend of ``b`` over ``a`` with a Gaussian pyramid of ``weight``."""
    ga, gb, gw = [a.astype(np.float32)], [b.astype(np.float32)], [weight.astype(np.float32)]
    for _ in range(levels):
        if min(ga[-1].shape[:2]) < 4:
            break
        ga.append(cv2.pyrDown(ga[-1]))
        gb.append(cv2.pyrDown(gb[-1]))
        gw.append(cv2.pyrDown(gw[-1]))
    result = ga[-1] + (gb[-1] - ga[-1]) * gw[-1][..., None]
    for i in range(len(ga) - 2, -1, -1):
        size = (ga[i].shape[1], ga[i].shape[0])
        la = ga[i] - cv2.pyrUp(ga[i + 1], dstsize=size)
        lb = gb[i] - cv2.pyrUp(gb[i + 1], dstsize=size)
        result = cv2.pyrUp(result, dstsize=size) + la + (lb - la) * gw[i][..., None]
    return result


def histogram_luts(source: np.ndarray, reference: np.ndarray,
                   source_mask: np.ndarray | None = None) -> np.ndarray | None:
    """Per-channel lookup tables that match ``source``'s histogram to ``reference``'s (both
    ``(H, W, 3)`` in [0, 1]): ``(3, 256)`` float64 outputs at the upper edges of 256 bins.

    Only pixels under ``source_mask`` define the source histogram (the untouched area); ``None``
    when that area is empty.
    """
    bins = np.linspace(0.0, 1.0, 257)
    luts = np.empty((3, 256))
    for c in range(3):
        src = source[..., c] if source_mask is None else source[..., c][source_mask]
        if src.size == 0:
            return None
        s_cdf = np.cumsum(np.histogram(src, bins)[0]).astype(np.float64)
        r_cdf = np.cumsum(np.histogram(reference[..., c], bins)[0]).astype(np.float64)
        luts[c] = np.interp(s_cdf / s_cdf[-1], r_cdf / r_cdf[-1], bins[1:])
    return luts


def harmonize(photo: np.ndarray, luts: np.ndarray | None, amount: float, out: np.ndarray | None = None) -> np.ndarray:
    """Move ``photo``'s colours (``(H, W, 3)`` in [0, 1]) ``amount`` of the way along ``luts``
    from :func:`histogram_luts` (paper 2's histogram matching), so a partly stylized portrait
    reads as one picture. Rows are mapped in chunks, so ``out`` (float32, default a new array)
    may be ``photo`` itself; ``luts=None`` or ``amount <= 0`` leave the colours as they are."""
    out = _output(photo, out)
    if luts is None or amount <= 0:
        return out
    edges = np.linspace(0.0, 1.0, 257)[1:]
    for r in range(0, out.shape[0], _ROWS):
        rows = out[r:r + _ROWS]
        for c in range(3):
            rows[..., c] += (np.interp(rows[..., c], edges, luts[c]) - rows[..., c]) * amount
    return out


def mix(photo: np.ndarray, stylized: np.ndarray, amount: float | np.ndarray,
        out: np.ndarray | None = None) -> np.ndarray:
    """``photo + (stylized - photo) * amount`` (``(H, W, 3)``; ``amount`` a number or ``(H, W)``),
    computed in place when ``out`` is ``stylized``. ``amount`` 1 gives ``stylized`` exactly."""
    amount = np.asarray(amount, np.float32)
    out = _output(stylized, out)
    if amount.ndim == 0 and amount == 1:
        return out
    out -= photo
    out *= amount[..., None] if amount.ndim else amount
    out += photo
    return out


def _output(source: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """``out`` holding a float32 copy of ``source`` (a new array when ``out`` is None)."""
    if out is None:
        return np.array(source, dtype=np.float32)
    if out is not source:
        out[...] = source
    return out


def composite_regions(photo: np.ndarray, stylized: np.ndarray, masks: list[np.ndarray], strengths: list[float],
                      harmonize_amount: float, radius: int,
                      smooth: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Blend ``stylized`` into ``photo`` (both ``(H, W, 3)`` float32 in [0, 1]) inside region
    ``masks`` (``(H, W)`` in [0, 1], one strength in [0, 1] each), band by band, after moving the
    untouched area's colours ``harmonize_amount`` of the way towards the stylized ones.

    Works in place to keep a 4K picture's memory low: ``photo`` becomes the result and
    ``stylized`` the strength-scaled target (both are the caller's scratch arrays).

    Args:
        radius: feather width of the masks (pixels): the pyramid's depth (see :func:`composite`).
        smooth: applied to the combined coverage before use (a video's smoothing over frames).

    Returns:
        ``(result, weight)``: the result (``photo``'s array) and the ``(H, W)`` float32 weight
        each pixel moved towards the stylized picture (coverage × strength).
    """
    # Coverage (where) and strength (how far) stay separate, so a region at strength s is
    # exactly photo + s * (stylized - photo) inside and still blends band-wise. Where regions
    # overlap, the strongest mask decides the strength (the first on ties).
    coverage = masks[0].copy()
    amount = np.full(coverage.shape, strengths[0], np.float32) if len(set(strengths)) > 1 else np.float32(strengths[0])
    for mask, strength in zip(masks[1:], strengths[1:]):
        if amount.ndim:
            amount[mask > coverage] = strength
        np.maximum(coverage, mask, out=coverage)
    if smooth is not None:
        coverage = smooth(coverage)
    # The untouched area's colour mapping comes from the pure stylized image, before it becomes
    # the strength-scaled target.
    luts = histogram_luts(photo, stylized, coverage < 1) if harmonize_amount > 0 else None
    target = mix(photo, stylized, amount, out=stylized)
    base = harmonize(photo, luts, harmonize_amount, out=photo)
    return composite(base, target, coverage, radius, out=base), coverage * amount
