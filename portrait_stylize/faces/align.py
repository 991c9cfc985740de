"""5-point similarity alignment to DCT-Net's face crop and the inverse warp back.

The crop follows the official DCT-Net inference: the ArcFace 112×112 template (square), shrunk
about its centre by ``scale`` (0.75, so the crop shows hair and chin) and scaled to ``size`` (288).
Transforms are 2×3 affine matrices mapping image pixels to crop pixels (OpenCV convention:
pixel centres at integer coordinates).
"""

from __future__ import annotations

import cv2
import numpy as np

#: ArcFace's 5-point template in a 112×112 crop (image-left eye first), as used by DCT-Net.
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)
CROP_SIZE = 288
CROP_SCALE = 0.75


def template(size: int = CROP_SIZE, scale: float = CROP_SCALE) -> np.ndarray:
    """``(5, 2)`` target landmark positions in a ``size``² crop."""
    return ((ARCFACE_TEMPLATE - 56.0) * scale + 56.0) * (size / 112.0)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) taking
    ``src`` ``(N, 2)`` points onto ``dst``, as a 2×3 matrix (Umeyama 1991)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rot = u @ sign @ vt
    scale = np.trace(np.diag(sig) @ sign) / s.var(0).sum()
    return np.hstack([scale * rot, (mu_d - scale * rot @ mu_s)[:, None]])


def crop_transform(landmarks: np.ndarray, size: int = CROP_SIZE, scale: float = CROP_SCALE) -> np.ndarray:
    """Image -> crop matrix aligning 5 ``landmarks`` to :func:`template`."""
    return similarity(landmarks, template(size, scale))


def invert(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 2×3 affine matrix."""
    return cv2.invertAffineTransform(np.asarray(matrix, np.float64))


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map ``(N, 2)`` points through a 2×3 matrix."""
    points = np.asarray(points, np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def warp_to_crop(image: np.ndarray, matrix: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """The aligned ``size``² crop of ``image`` (HxWxC array); outside pixels replicate the border."""
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def crop_footprint(matrix: np.ndarray, shape: tuple[int, int], size: int = CROP_SIZE) -> tuple[int, int, int, int]:
    """Integer ``(x0, y0, x1, y1)`` window of the image covered by the crop (clipped to ``shape``)."""
    corners = apply(invert(matrix), np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64))
    h, w = shape
    x0, y0 = np.floor(corners.min(0)).astype(int) - 1
    x1, y1 = np.ceil(corners.max(0)).astype(int) + 2
    return max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)


def warp_from_crop(crop: np.ndarray, matrix: np.ndarray, window: tuple[int, int, int, int],
                   interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Warp a crop back into the image ``window`` ``(x0, y0, x1, y1)``; pixels outside the crop are 0."""
    x0, y0, x1, y1 = window
    inverse = invert(matrix)
    inverse[:, 2] -= (x0, y0)
    return cv2.warpAffine(crop, inverse, (x1 - x0, y1 - y0), flags=interpolation, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0)
