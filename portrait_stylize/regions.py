"""Region control: soft region masks, multi-band compositing and histogram harmonisation.

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

import cv2
import numpy as np

from .errors import InvalidArgumentError
from .faces.face import Face
from .faces.parsing import REGIONS, Parsing

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


def region_feather(mask: np.ndarray, face_size: float) -> int:
    """Feather width for one face region: :data:`FACE_FEATHER` × the face size, but at most half
    the region's thickness (chessboard inscribed radius), so even thin regions such as lips keep a
    fully stylized core."""
    thickness = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_C, 3).max()
    return max(MIN_FEATHER, min(feather_width(face_size, FACE_FEATHER), int(thickness // 2)))


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


def check_regions(names, visible: tuple[str, ...], backend: str) -> list[str]:
    """Validate region names against :data:`REGIONS` and what ``backend`` can see."""
    names = list(names)
    unknown = [n for n in names if n not in REGIONS]
    if unknown:
        raise InvalidArgumentError(f"unknown region(s) {', '.join(map(repr, unknown))}; choose from {', '.join(REGIONS)}")
    unseen = [n for n in names if n not in visible]
    if unseen:
        raise InvalidArgumentError(f"the {backend} face backend cannot see {', '.join(map(repr, unseen))}; it sees "
                         f"{', '.join(visible)} (facexlib's parser also sees ears, neck and clothes)")
    return names


def region_weights(parsing: Parsing, faces: list[Face], names: list[str], shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Feathered ``(H, W)`` float32 mask per region name, combined over ``faces`` (max).

    Face-local regions are feathered by :func:`region_feather` and reach at most that far past
    their face's mask window; whole-image regions (background) by :data:`IMAGE_FEATHER` ×
    the short side.
    """
    h, w = shape
    out = {}
    for name in names:
        if name in parsing.image_masks:
            out[name] = feather(parsing.image_masks[name], feather_width(min(h, w), IMAGE_FEATHER))
            continue
        weight = np.zeros(shape, np.float32)
        for face, parsed in zip(faces, parsing.faces):
            mask = parsed.masks.get(name)
            if mask is None:
                continue
            x0, y0, x1, y1 = parsed.window
            radius = region_feather(mask, face.size)
            # Feather inside a margin around the window, then paste with max.
            px0, py0, px1, py1 = max(x0 - radius, 0), max(y0 - radius, 0), min(x1 + radius, w), min(y1 + radius, h)
            local = np.zeros((py1 - py0, px1 - px0), bool)
            local[y0 - py0:y1 - py0, x0 - px0:x1 - px0] = mask
            region = weight[py0:py1, px0:px1]
            np.maximum(region, feather(local, radius), out=region)
        out[name] = weight
    return out


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
                y1, x1 = min(by + BLEND_BLOCK + margin, weight.shape[0]), min(bx + BLEND_BLOCK + margin, weight.shape[1])
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


def histogram_luts(source: np.ndarray, reference: np.ndarray, source_mask: np.ndarray | None = None) -> np.ndarray | None:
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


def mix(photo: np.ndarray, stylized: np.ndarray, amount: float | np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``photo + (stylized - photo) * amount`` (``(H, W, 3)``; ``amount`` a number or ``(H, W)``),
    computed in place when ``out`` is ``stylized``."""
    amount = np.asarray(amount, np.float32)
    out = _output(stylized, out)
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
