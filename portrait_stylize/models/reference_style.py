"""The reference-based, region-aware style (``arch: u2lffm``): paper 2's U²-Net encoders + LFFM
generator, with a default style reference stored in the weights file."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from ..common.numbers import bounded_int
from .base import Runner, StyleNetwork, register_architecture
from .u2lffm import U2LFFMGenerator


@register_architecture
class ReferenceStyle(StyleNetwork):
    """A photo -> style generator steered by a style reference image.

    Args:
        generator: :class:`~portrait_stylize.models.u2lffm.U2LFFMGenerator` keyword arguments.
        reference_size: side of the default reference stored with the weights (uint8 RGB buffer
            ``reference``, ``(3, S, S)``).
        **conventions: see :class:`~portrait_stylize.models.base.StyleNetwork`.

    Shapes:
        ``forward(image, reference=ref)``: ``(B, 3, H, W)`` RGB in [0, 1] and ``(1, 3, Hs, Ws)``
        RGB in [0, 1] (default: the stored reference) -> ``(B, 3, H, W)`` RGB in [0, 1].
    """

    arch = "u2lffm"
    takes_reference = True
    legacy_keys = ("head", "bg")

    def __init__(self, generator: dict[str, Any] | None = None, reference_size: int = 256,
                 **conventions: Any) -> None:
        super().__init__(**conventions)
        bounded_int("reference_size", reference_size, 8, 4096)
        if generator is not None and not isinstance(generator, dict):
            raise ValueError("generator must be an object of U2LFFMGenerator arguments, "
                             f"got {type(generator).__name__}")
        self._generator_args = dict(generator or {})
        _check_generator_args(self._generator_args)
        self.generator = U2LFFMGenerator(**self._generator_args)
        self.register_buffer("reference", torch.full((3, reference_size, reference_size), 128, dtype=torch.uint8))

    def architecture_config(self) -> dict[str, Any]:
        return {"generator": self._generator_args, "reference_size": self.reference.shape[-1]}

    def set_reference(self, image: torch.Tensor) -> None:
        """Store ``(3, H, W)`` RGB in [0, 1] (resized, area-averaged) as the default reference."""
        size = self.reference.shape[-1]
        resized = F.interpolate(image[None].float(), size=(size, size), mode="area")[0]
        self.reference.copy_((resized.clamp(0, 1) * 255).round().to(torch.uint8))

    def forward(self, image: torch.Tensor, part: str = "image", reference: torch.Tensor | None = None,
                runners: Mapping[str, Runner] | None = None) -> torch.Tensor:
        self.check_call(part, None)
        reference = self.reference[None].float() / 255.0 if reference is None else reference
        reference = self.to_network(reference.to(image.device, image.dtype)).expand(len(image), -1, -1, -1)
        stylized, _ = self.generator(self.to_network(image), reference)
        return self.from_network(stylized)

    def card_rows(self) -> dict[str, str]:
        return {"networks": "photo -> style generator with a stored default reference"}


def _check_generator_args(args: dict[str, Any]) -> None:
    """Bounds for ``U2LFFMGenerator`` arguments from an untrusted ``config.json`` (far beyond the
    paper's sizes), checked before anything is allocated."""
    unknown = set(args) - {"content_stages", "style_stages", "attn_tokens"}
    if unknown:
        raise ValueError(f"generator has unknown arguments {sorted(unknown)}")
    if "attn_tokens" in args:
        bounded_int("generator.attn_tokens", args["attn_tokens"], 16, 65536)
    for key in ("content_stages", "style_stages"):
        stages = args.get(key)
        if stages is None:
            continue
        if not isinstance(stages, (list, tuple)) or not 1 <= len(stages) <= 8:
            raise ValueError(f"generator.{key} must be a list of 1 to 8 stages, got {stages!r}")
        for stage in stages:
            if not isinstance(stage, (list, tuple)) or len(stage) != 3:
                raise ValueError(f"generator.{key}: each stage is [height, mid, out], got {stage!r}")
            bounded_int(f"generator.{key} height", stage[0], 2, 8)
            for channels in stage[1:]:
                bounded_int(f"generator.{key} channels", channels, 1, 512)
