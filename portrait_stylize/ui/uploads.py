"""Uploaded photos: opened with the library's checks and fitted within a size, or refused with a
message that says which kind of problem the file has (none, empty, not a picture, damaged, too
many pixels) and what to do about it."""

from __future__ import annotations

import math
import os

from PIL import Image, UnidentifiedImageError

from ..errors import ImageTooLargeError, PortraitStylizeError
from ..imaging.io import load_image
from ..options import DEFAULT_MAX_PIXELS
from .errors import UserError, user_message

NO_PHOTO = "Upload a photo first (or take one with the webcam, or paste one)."
#: What each kind of unusable upload is told: what is wrong, then what to do.
EMPTY_UPLOAD = "This file is empty (0 bytes); the upload may have been cut off. Please upload the photo again."
NOT_A_PICTURE = ("This file is not a picture (a document, or another kind of file renamed .png or .jpg?). "
                 "Please upload a photo: JPEG, PNG, WebP, BMP or TIFF.")
DAMAGED_PICTURE = ("This picture is damaged or incomplete: its data is cut off or corrupt (an interrupted download "
                   "or copy?). Please upload an intact copy of the photo.")
TOO_MANY_PIXELS = (f"This picture has more than {DEFAULT_MAX_PIXELS:,} pixels ({DEFAULT_MAX_PIXELS / 1e6:g} "
                   "megapixels), the most this demo takes. Please downscale it (for example to 4000 pixels on the "
                   "long side) and upload it again.")


def fit_within(image: Image.Image, max_side: int | None) -> Image.Image:
    """Downscale so the longest side is at most ``max_side`` (never upscales; ``None``: as it is).

    Raises:
        UserError: ``max_side`` is not a whole number of at least 16 (NaN, negative, text ...).
    """
    if max_side is not None and (isinstance(max_side, bool) or not isinstance(max_side, (int, float))
                                 or not math.isfinite(max_side) or max_side < 16 or max_side != int(max_side)):
        raise UserError(f"the largest side must be a whole number of pixels, at least 16; got {max_side!r}")
    if not max_side or max(image.size) <= max_side:
        return image
    scale = max_side / max(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.LANCZOS)


def open_photo(path: str | os.PathLike | None, max_side: int | None = None) -> Image.Image:
    """Load an uploaded file with the library's checks (at most ``DEFAULT_MAX_PIXELS``), then fit it
    within ``max_side`` (``None``: as it is). Returns an RGB or RGBA image, upright.

    Raises:
        UserError: no file, or one that cannot be used; the message says which kind of problem it
            is (empty, not a picture, damaged, too many pixels) and what to do.
    """
    if path is None:
        raise UserError(NO_PHOTO)
    try:
        image = load_image(path)
    except ImageTooLargeError:
        raise UserError(TOO_MANY_PIXELS) from None
    except PortraitStylizeError as exc:
        raise UserError(_unreadable_upload(path, exc)) from None
    return fit_within(image, max_side)


def _unreadable_upload(path: str | os.PathLike, exc: PortraitStylizeError) -> str:
    """The message for a file that :func:`load_image` could not read: empty, not a picture
    (Pillow does not recognise it), or damaged (recognised, but its data does not decode)."""
    try:
        if os.path.getsize(path) == 0:
            return EMPTY_UPLOAD
        Image.open(path).close()
    except UnidentifiedImageError:
        return NOT_A_PICTURE
    except OSError:  # gone, or not a file
        return f"This file cannot be used: {user_message(exc)}"
    return DAMAGED_PICTURE
