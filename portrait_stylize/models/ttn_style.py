"""The DCT-Net style (``arch: ttn``): a head TTN for aligned faces and an optional bg TTN for
whole images (without one, the head serves both)."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from .base import Runner, StyleNetwork, register_architecture
from .ttn import TTN


@register_architecture
class TTNStyle(StyleNetwork):
    """DCT-Net texture translation network(s) plus the conventions needed to feed them.

    Args:
        head: :class:`~portrait_stylize.models.ttn.TTN` keyword arguments for the face network.
        bg: keyword arguments for a separate whole-image network, or ``None`` to reuse ``head``.
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
                 **conventions: Any) -> None:
        super().__init__(**conventions)
        self.head = TTN(**(head or {}))
        self.bg = TTN(**bg) if bg is not None else None

    def architecture_config(self) -> dict[str, Any]:
        return {"head": self.head.config, "bg": self.bg.config if self.bg is not None else None}

    def subnetworks(self) -> dict[str, nn.Module]:
        return {"head": self.head, **({"bg": self.bg} if self.bg is not None else {})}

    def network_name(self, part: str) -> str:
        """Which sub-network serves ``part``: ``bg`` (when there is one) for whole images, else ``head``."""
        return "bg" if part == "image" and self.bg is not None else "head"

    def forward(self, image: torch.Tensor, part: str = "image", reference: torch.Tensor | None = None,
                runners: Mapping[str, Runner] | None = None) -> torch.Tensor:
        self.check_call(part, reference)
        name = self.network_name(part)
        run = runners[name] if runners is not None else self.subnetworks()[name]
        return self.from_network(run(self.to_network(image)))

    def card_rows(self) -> dict[str, str]:
        c = self.head.config
        return {"networks": "head + bg" if self.bg is not None else "head (also used for whole images)",
                "upsampling / padding": f"{c['upsample']} / {c['padding']}",
                "guided filter": f"radius {c['gf_radius']}, eps {c['gf_eps']}"}
