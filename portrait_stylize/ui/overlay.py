"""The mask overlay beside the result: each region the run used tinted in its own colour over the
photo, and every face found boxed (green: stylized, red: left as it was)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..pipeline import StylizeDetails

#: Overlay colour per region, RGB 0-255.
REGION_COLOURS = {"skin": (255, 190, 140), "brows": (140, 70, 10), "eyes": (0, 220, 255), "nose": (230, 0, 230),
                  "lips": (230, 20, 20), "mouth": (20, 20, 230), "hair": (40, 200, 60), "ears": (255, 150, 0),
                  "neck": (200, 120, 255), "clothes": (90, 90, 255), "background": (120, 120, 120),
                  "head": (255, 220, 0)}  # the chosen faces' heads, when faces are picked without regions
#: How opaque a region's tint is where its mask is 1.
TINT = 0.55
#: Face box outlines, RGB: faces stylized, and faces found but left as they were.
STYLIZED_BOX, UNTOUCHED_BOX = (60, 220, 60), (220, 60, 60)


def mask_overlay(photo: Image.Image, details: StylizeDetails) -> Image.Image:
    """``photo`` (any mode) as RGB with each of ``details.masks`` (``(H, W)`` floats in [0, 1], the
    photo's size) tinted in its :data:`REGION_COLOURS` colour and each face box outlined 2 px wide."""
    out = np.asarray(photo.convert("RGB"), np.float32).copy()
    for name, mask in details.masks.items():
        alpha = mask[..., None] * TINT
        out = out * (1 - alpha) + np.array(REGION_COLOURS[name], np.float32) * alpha
    for i, face in enumerate(details.faces):
        x0, y0, x1, y1 = (int(round(v)) for v in face.box)
        colour = STYLIZED_BOX if i + 1 in details.stylized_faces else UNTOUCHED_BOX
        out[max(y0, 0):y1, max(x0, 0):max(x0, 0) + 2] = colour
        out[max(y0, 0):y1, max(x1 - 2, 0):x1] = colour
        out[max(y0, 0):max(y0, 0) + 2, max(x0, 0):x1] = colour
        out[max(y1 - 2, 0):y1, max(x0, 0):x1] = colour
    return Image.fromarray(out.round().clip(0, 255).astype(np.uint8))
