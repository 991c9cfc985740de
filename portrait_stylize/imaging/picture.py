"""One input picture in the forms the pipeline works on, and the way back to a result image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .io import ImageInput, load_image, pil_to_tensor, tensor_to_pil


@dataclass
class Picture:
    """A picture read once, held as:

    Attributes:
        image: the upright 8-bit ``RGB``/``RGBA`` PIL image the pipeline works on (scaled down when
            a short-side cap applies).
        size: ``(width, height)`` of the input, which the result gets back.
        rgb: ``(H, W, 3)`` uint8 RGB (for face detection and parsing).
        tensor: ``(1, 3, H, W)`` float32 RGB in [0, 1] (for the style's networks).
        array: ``(H, W, 3)`` float32 RGB in [0, 1], a view of ``tensor`` (for compositing).
    """

    image: Image.Image
    size: tuple[int, int]
    rgb: np.ndarray
    tensor: torch.Tensor
    array: np.ndarray

    @classmethod
    def read(cls, source: ImageInput, max_pixels: int | None, max_short_side: int | None = None) -> Picture:
        """Read ``source`` (see :func:`~portrait_stylize.imaging.io.load_image`), scaled down
        (area-averaged) so that its short side is at most ``max_short_side`` when given."""
        image = load_image(source, max_pixels)
        size = image.size
        if max_short_side is not None and min(size) > max_short_side:
            scale = max_short_side / min(size)
            image = image.resize((max(1, round(size[0] * scale)), max(1, round(size[1] * scale))), Image.BOX)
        tensor = pil_to_tensor(image)
        return cls(image, size, np.asarray(image.convert("RGB")), tensor, tensor[0].permute(1, 2, 0).numpy())

    def result(self, out: np.ndarray) -> Image.Image:
        """``out`` (``(H, W, 3)`` float32 RGB in [0, 1] at the working size) as a PIL image of the
        input's size, ``RGBA`` with the input's alpha when it had one."""
        alpha = self.image.getchannel("A") if self.image.mode == "RGBA" else None
        result = tensor_to_pil(torch.from_numpy(out).permute(2, 0, 1)[None], alpha)
        return result if result.size == self.size else result.resize(self.size, Image.LANCZOS)
