"""Pasting stylized face crops back: DCT-Net's face pass warps each aligned head result into the
whole-image result through a soft paste mask.

Arrays are float32 ``(H, W, 3)`` RGB in [0, 1] (pictures) or ``(H, W)`` in [0, 1] (masks); crops
are the ``CROP_SIZE``² aligned crops of :mod:`.align`.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from ..imaging.blending import feather
from . import align
from .face import Face


@functools.lru_cache(maxsize=1)
def _ellipse_mask(size: int = align.CROP_SIZE) -> np.ndarray:
    """Feathered ellipse over the face in the aligned crop (DCT-Net pastes with a similar soft mask)."""
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size
    inside = ((xx - 0.5) / 0.40) ** 2 + ((yy - 0.52) / 0.46) ** 2 <= 1.0
    return feather(inside, round(0.08 * size))


def head_paste_mask(style_mask: np.ndarray | None) -> np.ndarray:
    """``(CROP_SIZE, CROP_SIZE)`` float32 in [0, 1]: where the head result replaces the whole-image
    result in an aligned crop: the style's own mask (e.g. DCT-Net's ``alpha.jpg``, any size)
    resized, else a feathered ellipse."""
    if style_mask is None:
        return _ellipse_mask()
    return cv2.resize(style_mask, (align.CROP_SIZE, align.CROP_SIZE), interpolation=cv2.INTER_AREA)


def paste_heads(canvas: np.ndarray, heads: np.ndarray, matrices: list[np.ndarray], mask: np.ndarray) -> np.ndarray:
    """Warp each stylized head crop (``heads``: ``(N, CROP_SIZE, CROP_SIZE, 3)``) back through its
    image -> crop ``matrices`` and blend it over ``canvas`` (``(H, W, 3)``, updated in place and
    returned) with the paste ``mask``; later faces go over earlier ones."""
    for head, matrix in zip(heads, matrices):
        x0, y0, x1, y1 = window = align.crop_footprint(matrix, canvas.shape[:2])
        paste = align.warp_from_crop(head, matrix, window)
        alpha = align.warp_from_crop(mask, matrix, window)[..., None]
        canvas[y0:y1, x0:x1] = alpha * paste + (1 - alpha) * canvas[y0:y1, x0:x1]
    return canvas


def head_coverage(shape: tuple[int, int], faces: list[Face], mask: np.ndarray) -> np.ndarray:
    """``(H, W)`` float32 coverage of the ``faces``' heads: the paste ``mask`` warped back from each
    aligned crop (max over faces)."""
    coverage = np.zeros(shape, np.float32)
    for face in faces:
        matrix = align.crop_transform(face.landmarks)
        x0, y0, x1, y1 = window = align.crop_footprint(matrix, shape)
        np.maximum(coverage[y0:y1, x0:x1], align.warp_from_crop(mask, matrix, window), out=coverage[y0:y1, x0:x1])
    return coverage
