"""The DCT-Net style (``arch: ttn``): a head TTN for aligned faces and an optional bg TTN for
whole images (without one, the head serves both)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..common.numbers import bounded_int, bounded_number
from .base import Runner, StyleNetwork, register_architecture
from .ttn import TTN


@register_architecture
class TTNStyle(StyleNetwork):
    """DCT-Net texture translation network(s) plus the conventions needed to feed them.

    Args:
        head: :class:`~portrait_stylize.models.ttn.TTN` keyword arguments for the face network.
        bg: keyword arguments for a separate whole-image network, or ``None`` to reuse ``head``.
        image_pad_multiple: when > 0, whole images are padded at the bottom/right with the colour
            ``image_pad_value`` (RGB in [0, 1]) to a multiple of this before the network, as the
            official DCT-Net pipeline does (16, white); 0 leaves padding to the TTN (edge
            replication to a multiple of 4).
        image_pad_value: the padding colour, grey level in [0, 1].
        face_mask_size: when > 0, the style carries its own paste mask for the face pass
            (``face_mask``, uint8 ``(S, S)`` in the aligned crop, e.g. DCT-Net's ``alpha.jpg``);
            0 uses the pipeline's feathered ellipse.
        **conventions: see :class:`~portrait_stylize.models.base.StyleNetwork`.

    Shapes:
        ``forward(image, part)``: ``(B, 3, H, W)`` RGB in [0, 1] -> same; ``part="image"`` runs
        ``bg`` (or ``head``), ``part="face"`` runs ``head``. ``self.head``/``self.bg`` are the raw
        TTNs on ``(B, 3, H, W)`` in ``input_range`` and ``channel_order``.
    """

    arch = "ttn"
    has_face_pass = True
    legacy_keys = ("generator", "reference_size")

    def __init__(self, head: dict[str, Any] | None = None, bg: dict[str, Any] | None = None,
                 image_pad_multiple: int = 0, image_pad_value: float = 1.0, face_mask_size: int = 0,
                 **conventions: Any) -> None:
        super().__init__(**conventions)
        self.image_pad_multiple = bounded_int("image_pad_multiple", image_pad_multiple, 0, 256)
        self.image_pad_value = bounded_number("image_pad_value", image_pad_value, 0.0, 1.0)
        face_mask_size = bounded_int("face_mask_size", face_mask_size, 0, 4096)
        for part, kwargs in (("head", head), ("bg", bg)):
            if kwargs is not None and not isinstance(kwargs, dict):
                raise ValueError(f"{part} must be an object of TTN arguments, got {type(kwargs).__name__}")
        self.head = TTN(**(head or {}))
        self.bg = TTN(**bg) if bg is not None else None
        if face_mask_size:
            self.register_buffer("face_mask", torch.full((face_mask_size, face_mask_size), 255, dtype=torch.uint8))

    def architecture_config(self) -> dict[str, Any]:
        return {"head": self.head.config, "bg": self.bg.config if self.bg is not None else None,
                "image_pad_multiple": self.image_pad_multiple, "image_pad_value": self.image_pad_value,
                "face_mask_size": self.face_mask.shape[-1] if hasattr(self, "face_mask") else 0}

    def set_face_mask(self, mask: np.ndarray) -> None:
        """Store ``(H, W)`` grey levels in [0, 255] (resized, area-averaged) as the face-pass paste mask."""
        size = self.face_mask.shape[-1]
        resized = F.interpolate(torch.as_tensor(mask, dtype=torch.float32)[None, None], size=(size, size), mode="area")
        self.face_mask.copy_(resized[0, 0].round().clamp(0, 255).to(torch.uint8))

    def face_paste_mask(self) -> np.ndarray | None:
        return self.face_mask.float().div(255.0).cpu().numpy() if hasattr(self, "face_mask") else None

    def subnetworks(self) -> dict[str, nn.Module]:
        return {"head": self.head, **({"bg": self.bg} if self.bg is not None else {})}

    def tiling_context(self) -> tuple[int, int]:
        net = self.subnetworks()[self.network_name("image")]
        align = math.lcm(net.size_multiple, self.image_pad_multiple or 1)
        return -(-net.receptive_radius() // align) * align, align

    def network_name(self, part: str) -> str:
        """Which sub-network serves ``part``: ``bg`` (when there is one) for whole images, else ``head``."""
        return "bg" if part == "image" and self.bg is not None else "head"

    def forward(self, image: torch.Tensor, part: str = "image", reference: torch.Tensor | None = None,
                runners: Mapping[str, Runner] | None = None) -> torch.Tensor:
        self.check_call(part, reference)
        name = self.network_name(part)
        run = runners[name] if runners is not None else self.subnetworks()[name]
        h, w = image.shape[-2:]
        multiple = self.image_pad_multiple if part == "image" else 0
        if multiple:
            image = F.pad(image, (0, -w % multiple, 0, -h % multiple), value=self.image_pad_value)
        return self.from_network(run(self.to_network(image)))[..., :h, :w]

    def card_rows(self) -> dict[str, str]:
        c = self.head.config
        return {"networks": "head + bg" if self.bg is not None else "head (also used for whole images)",
                "upsampling / padding": f"{c['upsample']} / {c['padding']}",
                "guided filter": f"radius {c['gf_radius']}, eps {c['gf_eps']}"}
