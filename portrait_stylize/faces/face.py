"""What a face detector returns, and small geometry helpers on face boxes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidArgumentError

#: Order of :attr:`Face.landmarks`: image-left eye, image-right eye, nose tip, image-left mouth
#: corner, image-right mouth corner (the subject's right eye is the image-left one).
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass
class Face:
    """One detected face, in pixel coordinates of the (EXIF-upright) image.

    Attributes:
        box: ``(x0, y0, x1, y1)`` float, the detector's face box.
        landmarks: ``(5, 2)`` float ``(x, y)`` in :data:`LANDMARK_NAMES` order.
        score: detector confidence in [0, 1].
        mesh: optional ``(N, 2)`` dense landmarks (MediaPipe's 478-point face mesh).
    """

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    score: float
    mesh: np.ndarray | None = field(default=None, repr=False)

    @property
    def size(self) -> float:
        """Side of the face box's bounding square, in pixels (used to scale feathering)."""
        x0, y0, x1, y1 = self.box
        return float(max(x1 - x0, y1 - y0))


def enlarge_box(box, factor: float, shape: tuple[int, int] | None = None) -> tuple[float, float, float, float]:
    """Scale ``(x0, y0, x1, y1)`` about its centre by ``factor``; clip to ``shape=(H, W)`` if given."""
    x0, y0, x1, y1 = box
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * factor / 2, (y1 - y0) * factor / 2
    out = (cx - hw, cy - hh, cx + hw, cy + hh)
    if shape is not None:
        h, w = shape
        out = (max(out[0], 0.0), max(out[1], 0.0), min(out[2], float(w)), min(out[3], float(h)))
    return out


def box_iou(a, b) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def merge_detections(faces: list[Face], iou: float = 0.3) -> list[Face]:
    """Keep the best-scoring face of each overlapping group, then sort left to right."""
    kept: list[Face] = []
    for face in sorted(faces, key=lambda f: -f.score):
        if all(box_iou(face.box, k.box) < iou for k in kept):
            kept.append(face)
    return sorted(kept, key=lambda f: (f.box[0] + f.box[2]) / 2)


def select_faces(faces: list[Face], wanted: list[int] | None,
                 min_size: float) -> tuple[list[int], list[tuple[int, str]]]:
    """The numbers of the ``wanted`` faces (``None``: all; sorted, without repeats) whose box side is
    at least ``min_size`` pixels, and ``(number, reason)`` for each wanted face that is smaller.

    Faces are numbered as people count them, in every front end and message: face 1 is the
    leftmost, face ``n`` is ``faces[n - 1]``.

    Raises:
        InvalidArgumentError: a wanted number is not one of ``faces`` (the message says how many there are).
    """
    bad = [n for n in wanted or [] if not 1 <= n <= len(faces)]
    if bad:
        numbering = f" (1-{len(faces)}, 1 = leftmost)" if len(faces) > 1 else " (face 1)" if faces else ""
        zero = "; faces are numbered from 1, the leftmost" if bad[0] == 0 else ""
        raise InvalidArgumentError(f"there is no face {bad[0]}: {len(faces)} face(s) found{numbering}{zero}")
    numbers = range(1, len(faces) + 1) if wanted is None else sorted(set(wanted))
    chosen = [n for n in numbers if faces[n - 1].size >= min_size]
    skipped = [(n, f"face {n} is {faces[n - 1].size:.0f} px, below min_face_size={min_size}") for n in numbers
               if faces[n - 1].size < min_size]
    return chosen, skipped
