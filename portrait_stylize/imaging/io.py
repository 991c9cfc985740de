"""Reading, validating and saving images.

:func:`load_image` turns anything a user may hand us (path, bytes, PIL image, NumPy array) into an
8-bit ``RGB`` or ``RGBA`` PIL image with EXIF orientation applied, or raises
:class:`~portrait_stylize.errors.InvalidImageError` saying which file is wrong and why.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..common.files import write_atomically
from ..errors import ImageTooLargeError, InvalidArgumentError, InvalidImageError
from ..options import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES

if TYPE_CHECKING:  # torch is imported only by the tensor conversions: reading files stays light
    import torch

ImageInput = str | os.PathLike | bytes | Image.Image | np.ndarray


def _describe(source: ImageInput) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return f"<{type(source).__name__}>"


def _to_8bit(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, or RGBA when the image has transparency."""
    if img.mode in ("RGB", "RGBA"):
        return img
    if img.mode.startswith("I") or img.mode == "F":
        # 16/32-bit greys: Pillow's convert("L") clips instead of scaling, so scale ourselves.
        arr = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16") or (img.mode == "I" and arr.max(initial=0) > 255):
            arr = arr / 257.0
        return Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8), "L").convert("RGB")
    has_alpha = img.mode in ("LA", "La", "PA", "RGBa") or (img.mode == "P" and "transparency" in img.info)
    return img.convert("RGBA" if has_alpha else "RGB")


def load_image(source: ImageInput, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Read and normalise an image.

    Args:
        source: a path, encoded bytes, a PIL image or an ``(H, W)``/``(H, W, 3|4)`` uint8 array.
        max_pixels: refuse images with more pixels than this before decoding them (guard against
            decompression bombs); ``None`` disables our limit (Pillow's own hard limit of about
            179 MP still applies unless ``PIL.Image.MAX_IMAGE_PIXELS`` is raised).

    Returns:
        A decoded 8-bit PIL image in mode ``RGB`` or ``RGBA`` (alpha kept), upright according to
        its EXIF orientation. Grayscale, palette, 16-bit and CMYK inputs are converted.

    Raises:
        InvalidImageError: missing, empty, truncated or not an image.
        ImageTooLargeError: more than ``max_pixels`` pixels.
    """
    name = _describe(source)
    if isinstance(source, np.ndarray):
        if (source.dtype != np.uint8 or source.ndim not in (2, 3)
                or (source.ndim == 3 and source.shape[2] not in (3, 4))):
            raise InvalidImageError(
                f"array input must be uint8 with shape (H, W), (H, W, 3) or (H, W, 4); "
                f"got {source.dtype} {source.shape}"
            )
        img = Image.fromarray(source)
    elif isinstance(source, Image.Image):
        img = source
    else:
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if not path.is_file():
                raise InvalidImageError(f"{name}: no such file")
            if path.stat().st_size == 0:
                raise InvalidImageError(f"{name}: the file is empty (0 bytes)")
            fp = path
        elif isinstance(source, bytes):
            if not source:
                raise InvalidImageError("image bytes are empty")
            fp = io.BytesIO(source)
        else:
            raise InvalidImageError(f"cannot read an image from a {type(source).__name__}; "
                                    "pass a path, bytes, a PIL image or a uint8 array")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(fp)
        except UnidentifiedImageError:
            raise InvalidImageError(f"{name}: not an image file Pillow can read (is it really a picture?)") from None
        except Image.DecompressionBombError as exc:
            raise ImageTooLargeError(f"{name}: {exc}") from None
    width, height = img.size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(
            f"{name}: {width}x{height} = {width * height:,} pixels exceeds the limit of {max_pixels:,} "
            "pixels; downscale it or raise max_pixels (CLI: --max-pixels)"
        )
    try:
        img.load()
        img = ImageOps.exif_transpose(img)
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImageError(f"{name}: the image data is truncated or corrupt ({exc})") from None
    return _to_8bit(img)


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """``RGB``/``RGBA`` PIL image -> ``(1, 3, H, W)`` float32 RGB in [0, 1] (alpha dropped)."""
    import torch

    rgb = torch.from_numpy(np.array(img.convert("RGB")))
    return rgb.permute(2, 0, 1).contiguous().unsqueeze(0).float().div_(255.0)


def tensor_to_pil(x: torch.Tensor, alpha: Image.Image | None = None) -> Image.Image:
    """``(1, 3, H, W)`` RGB in [0, 1] -> 8-bit ``RGB`` PIL image, or ``RGBA`` with ``alpha`` (mode ``L``)."""
    hwc = x[0].detach().permute(1, 2, 0)
    arr = np.empty(hwc.shape, np.uint8)
    # Row chunks: a 4K picture needs no full-size float temporaries.
    for r in range(0, arr.shape[0], 256):
        arr[r:r + 256] = hwc[r:r + 256].float().clamp(0, 1).mul(255.0).round().cpu().numpy()
    img = Image.fromarray(arr, "RGB")
    if alpha is not None:
        img.putalpha(alpha)
    return img


def is_complete_image(path: str | os.PathLike) -> bool:
    """Whether the file at ``path`` is an image that decodes to its last pixel (one cut short by a
    crash, a full disk or an interrupted copy, or an empty file, is not)."""
    try:
        with Image.open(path) as img:
            img.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):  # SyntaxError: broken PNG chunks
        return False
    return True


def save_image(img: Image.Image, path: str | os.PathLike) -> Path:
    """Save atomically (temporary file + rename) so a failure never leaves a half-written result.

    The format follows the suffix. Formats without alpha (JPEG, BMP) get RGBA flattened on white.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise InvalidArgumentError(f"{path}: unsupported output format {path.suffix!r}; "
                                   f"use one of {', '.join(IMAGE_SUFFIXES)}")
    if img.mode == "RGBA" and suffix in (".jpg", ".jpeg", ".bmp"):
        flat = Image.new("RGB", img.size, "white")
        flat.paste(img, mask=img.getchannel("A"))
        img = flat
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda tmp: img.save(tmp, format=Image.registered_extensions()[suffix]), suffix=suffix,
                     follow_umask=True)
    return path


