"""The faces of a group photo as the demo shows them: a gallery of thumbnails numbered left to
right (``face 1`` = leftmost), and the face picker's values read back as face indices."""

from __future__ import annotations

import os

from PIL import Image

from ..faces import detect_faces
from .errors import UserError
from .idle import serving
from .uploads import open_photo

#: Thumbnail side in pixels, and how much wider than the face box each thumbnail is.
THUMBNAIL_SIZE, THUMBNAIL_MARGIN = 128, 1.4


def face_labels(count: int) -> list[str]:
    """``["face 1", ..., "face <count>"]``: the captions under the gallery and the picker's choices."""
    return [f"face {i + 1}" for i in range(count)]


def face_numbers(labels: list[str | int] | None) -> list[int] | None:
    """Face picker values as the library's face numbers: ``"face 2"``, ``"2"`` or ``2`` all mean the
    second face from the left (as numbered in the gallery, the CLI and Python). ``None`` or ``[]``: all faces.

    Raises:
        UserError: a value that is not a face number.
    """
    if not labels:
        return None
    numbers = []
    for label in labels:
        text = str(label).strip().lower().removeprefix("face").strip()
        if not text.isdigit() or int(text) < 1:
            raise UserError(f"Faces: {label!r} is not a face; use the numbers shown under the faces found, "
                            "like 'face 1' or 2 (1 = leftmost).")
        numbers.append(int(text))
    return numbers


@serving
def face_gallery(path: str | os.PathLike | None, face_backend: str | None = None,
                 max_side: int | None = None) -> tuple[list[tuple[Image.Image, str]], list[str]]:
    """``(thumbnails with captions, labels)`` of the faces in an uploaded photo fitted within
    ``max_side`` (``None``: as uploaded), left to right; thumbnails are square RGB images of
    :data:`THUMBNAIL_SIZE` pixels, the face box in the middle.

    Raises:
        UserError: as :func:`~portrait_stylize.ui.uploads.open_photo`.
    """
    photo = open_photo(path, max_side).convert("RGB")
    faces = detect_faces(photo, backend=face_backend)
    labels = face_labels(len(faces))
    thumbs = []
    for label, face in zip(labels, faces, strict=True):
        x0, y0, x1, y1 = (round(v) for v in _square(face.box, THUMBNAIL_MARGIN, photo.size))
        thumbs.append((photo.crop((x0, y0, x1, y1)).resize((THUMBNAIL_SIZE, THUMBNAIL_SIZE)), label))
    return thumbs, labels


def _square(box, factor: float, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """The square ``factor`` times the longer side of ``box`` (x0, y0, x1, y1), centred on it,
    clipped to an image of ``size`` (width, height)."""
    x0, y0, x1, y1 = box
    half = max(x1 - x0, y1 - y0) * factor / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return max(cx - half, 0), max(cy - half, 0), min(cx + half, size[0]), min(cy + half, size[1])
