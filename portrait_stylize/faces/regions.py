"""Region masks: the feathered ``(H, W)`` float32 mask of each region the user picked, from the
face backend's parsing (see :mod:`portrait_stylize.imaging.blending` for how they are blended)."""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import InvalidArgumentError
from ..imaging.blending import FACE_FEATHER, IMAGE_FEATHER, MIN_FEATHER, feather, feather_width
from ..options import REGIONS
from .face import Face
from .parsing import Parsing


def region_feather(mask: np.ndarray, face_size: float) -> int:
    """Feather width for one face region: :data:`FACE_FEATHER` × the face size, but at most half
    the region's thickness (chessboard inscribed radius), so even thin regions such as lips keep a
    fully stylized core."""
    thickness = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_C, 3).max()
    return max(MIN_FEATHER, min(feather_width(face_size, FACE_FEATHER), int(thickness // 2)))


def check_regions(names, visible: tuple[str, ...], backend: str) -> list[str]:
    """Validate region names against :data:`REGIONS` and what ``backend`` can see."""
    names = list(names)
    unknown = [n for n in names if n not in REGIONS]
    if unknown:
        raise InvalidArgumentError(f"unknown region(s) {', '.join(map(repr, unknown))}; "
                                   f"choose from {', '.join(REGIONS)}")
    unseen = [n for n in names if n not in visible]
    if unseen:
        raise InvalidArgumentError(f"the {backend} face backend cannot see {', '.join(map(repr, unseen))}; it sees "
                         f"{', '.join(visible)} (facexlib's parser also sees ears, neck and clothes)")
    return names


def region_weights(parsing: Parsing, faces: list[Face], names: list[str],
                   shape: tuple[int, int]) -> dict[str, np.ndarray]:
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
