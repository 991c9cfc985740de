"""Snap coarse masks to a picture's own edges, and tell hair from skin and clothes by colour.

Selfie segmentation answers at 256² and face polygons know nothing of hair, so the masks they
give are blobs. Two numpy/OpenCV tools make them follow the photo:

* :func:`guided_refine`: the fast guided filter (He & Sun, 2015). Inside each window the output
  is a linear function of the picture's brightness, fitted to the coarse mask, so the mask's
  edge moves onto the picture's edge. Coefficients are fitted on a copy at most ``work_side``
  pixels long and applied at full size, so a 4K photo costs about as much as a 512-px one.
* :func:`colour_likelihood`: log-likelihood ratio of two colour histograms (CIE Lab, smoothed),
  e.g. "looks like the hair on top of this head" against "looks like this face's skin, the
  background or the clothes".
"""

from __future__ import annotations

import cv2
import numpy as np

#: CIE Lab histogram bins: 16 lightness levels, 32 levels of a and of b (colour matters more
#: than shading for telling hair from clothes).
_LAB_BINS = (16, 32, 32)


def _grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0


def guided_refine(guide: np.ndarray, mask: np.ndarray, radius: int, eps: float = 1e-3,
                  work_side: int = 512) -> np.ndarray:
    """Move the edges of a soft mask onto the edges of a picture.

    Args:
        guide: ``(H, W, 3)`` uint8 RGB picture.
        mask: ``(h, w)`` float mask in [0, 1] covering the same area at any resolution.
        radius: window radius in pixels of ``guide``; mask edges up to about a third of it away
            from a picture edge snap onto it.
        eps: regularisation; smaller follows weaker picture edges.
        work_side: the coefficients are fitted on copies whose longer side is at most this.

    Returns:
        ``(H, W)`` float32 mask in [0, 1].
    """
    height, width = guide.shape[:2]
    scale = min(1.0, work_side / max(height, width))
    size = (max(round(width * scale), 1), max(round(height * scale), 1))
    small = cv2.resize(np.ascontiguousarray(guide), size, interpolation=cv2.INTER_AREA)
    g = _grey(small)
    p = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    r = max(round(radius * scale), 1)

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, (2 * r + 1, 2 * r + 1), borderType=cv2.BORDER_REFLECT)

    mean_g, mean_p = box(g), box(p)
    a = (box(g * p) - mean_g * mean_p) / (box(g * g) - mean_g * mean_g + eps)
    b = mean_p - a * mean_g
    # At full size, a · grey + b clipped to [0, 1], with OpenCV's vectorised operations (grey's 1/255
    # folded into a at the small size): half the time of NumPy's mixed-type ones on a 1024² photo.
    a = cv2.resize(box(a) * np.float32(1 / 255), (width, height), interpolation=cv2.INTER_LINEAR)
    b = cv2.resize(box(b), (width, height), interpolation=cv2.INTER_LINEAR)
    out = cv2.multiply(a, cv2.cvtColor(np.ascontiguousarray(guide), cv2.COLOR_RGB2GRAY), dtype=cv2.CV_32F)
    cv2.add(out, b, dst=out)
    cv2.threshold(out, 1.0, 1.0, cv2.THRESH_TRUNC, dst=out)
    cv2.threshold(out, 0.0, 0.0, cv2.THRESH_TOZERO, dst=out)
    return out


def _lab_bins(image: np.ndarray) -> np.ndarray:
    lab = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2LAB).astype(np.int32)
    steps = [256 // n for n in _LAB_BINS]
    return ((lab[..., 0] // steps[0]) * _LAB_BINS[1] + lab[..., 1] // steps[1]) * _LAB_BINS[2] + lab[..., 2] // steps[2]


def _log_histogram(bins: np.ndarray) -> np.ndarray:
    """Log of a colour histogram smoothed by [1, 2, 1] / 4 along each axis (neighbouring colours
    share evidence, so a few hundred samples give a usable model)."""
    hist = np.bincount(bins, minlength=int(np.prod(_LAB_BINS))).reshape(_LAB_BINS).astype(np.float64)
    for axis in range(3):
        padded = np.pad(hist, [(1, 1) if a == axis else (0, 0) for a in range(3)], mode="edge")
        n = hist.shape[axis]
        hist = (0.25 * padded.take(range(n), axis) + 0.5 * padded.take(range(1, n + 1), axis)
                + 0.25 * padded.take(range(2, n + 2), axis))
    return np.log(hist / max(hist.sum(), 1.0) + 1e-5).ravel()


def colour_likelihood(image: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """Per-pixel log-likelihood ratio of "coloured like ``positive``" against "like ``negative``".

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        positive, negative: ``(H, W)`` bool sample masks.

    Returns:
        ``(H, W)`` float64; > 0 where the colour is more typical of the positive samples.
    """
    bins = _lab_bins(image)
    return (_log_histogram(bins[positive]) - _log_histogram(bins[negative]))[bins]
