"""What every style network offers the pipeline, and the registry of architectures.

A style network maps ``(B, 3, H, W)`` **RGB** in [0, 1] to a stylized image of the same shape and
range. The pipeline asks it for no more than this interface:

* :meth:`StyleNetwork.forward` with ``part="image"`` (the whole picture) or ``part="face"`` (an
  aligned face crop; only when :attr:`~StyleNetwork.has_face_pass`), and a style ``reference``
  image for styles with :attr:`~StyleNetwork.takes_reference`;
* :meth:`StyleNetwork.subnetworks`: the pieces a compute backend (ONNX Runtime, bfloat16) or
  ``export-onnx`` may run in its place. Each maps ``(B, 3, H, W)`` float in the network's colour
  order and ``input_range`` to the same, has ``forward_aligned`` for ``H, W`` multiples of its
  ``size_multiple`` (the exported graph) and ``forward`` for any size.

Like timm's model registry, each architecture registers its class under the name that
``config.json`` stores in ``arch`` (``ttn`` when absent, so every older style folder loads), and
:func:`build_network` turns a config back into a network. Adding an architecture is one class with
:func:`register_architecture`; nothing else changes.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import InvalidStyleError
from ..options import CHANNEL_ORDERS

FORMAT_VERSION = 1
DEFAULT_ARCH = "ttn"
PARTS = ("image", "face")
#: A callable standing in for a sub-network: same input and output as the sub-network itself.
Runner = Callable[[torch.Tensor], torch.Tensor]


class StyleNetwork(nn.Module, ABC):
    """Base class of every style: conventions, provenance and the pipeline-facing interface.

    Args:
        channel_order: ``"rgb"`` or ``"bgr"``, the order the weights were trained on (official
            DCT-Net and White-box weights: ``"bgr"``).
        input_range: ``[lo, hi]`` value range the sub-networks expect (default ``[-1, 1]``).
        name, description, licence, source: provenance, repeated in the model card.
        format_version: version of the ``config.json`` layout.

    Class attributes:
        arch: the name stored in ``config.json`` (``"arch"``).
        takes_reference: ``forward`` accepts a style reference image.
        has_face_pass: aligned face crops get their own ``part="face"`` pass (DCT-Net's head
            network), pasted over the whole-image result.
        adapts_to_faces: :meth:`adapted_to` wants the sizes of the picture's faces (the
            pipeline detects them for it).
        legacy_keys: ``config.json`` keys that format version 1 wrote for other architectures'
            unused slots; ignored when loading.
    """

    arch: ClassVar[str] = ""
    takes_reference: ClassVar[bool] = False
    has_face_pass: ClassVar[bool] = False
    adapts_to_faces: ClassVar[bool] = False
    legacy_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, channel_order: str = "rgb", input_range: list[float] | None = None, name: str = "",
                 description: str = "", licence: str = "apache-2.0", source: str = "",
                 format_version: int = FORMAT_VERSION) -> None:
        super().__init__()
        if channel_order not in CHANNEL_ORDERS:
            raise InvalidStyleError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
        if format_version != FORMAT_VERSION:
            raise InvalidStyleError(f"format_version {format_version} is not supported (expected {FORMAT_VERSION}); "
                                    "upgrade portrait-stylize")
        self.input_range = tuple(input_range or (-1.0, 1.0))
        if len(self.input_range) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v)
                                                 for v in self.input_range) \
                or not -1e3 <= self.input_range[0] < self.input_range[1] <= 1e3:
            raise InvalidStyleError(f"input_range must be [lo, hi] with finite -1000 <= lo < hi <= 1000, "
                                    f"got {input_range!r}")
        self.channel_order = channel_order
        self.meta = {"name": name, "description": description, "licence": licence, "source": source}

    # --- what subclasses provide ------------------------------------------------------------

    @abstractmethod
    def architecture_config(self) -> dict[str, Any]:
        """The architecture's own constructor arguments, resolved (no ``None`` placeholders for
        defaults), so a saved style never depends on the defaults of the version that loads it."""

    @abstractmethod
    def forward(self, image: torch.Tensor, part: str = "image", reference: torch.Tensor | None = None,
                runners: Mapping[str, Runner] | None = None) -> torch.Tensor:
        """Stylize ``(B, 3, H, W)`` RGB in [0, 1] -> the same shape, RGB in [0, 1].

        Args:
            part: ``"image"`` (whole picture) or ``"face"`` (aligned crop, see :attr:`has_face_pass`).
            reference: ``(1, 3, Hs, Ws)`` RGB in [0, 1], the style reference (only with
                :attr:`takes_reference`; ``None`` = the style's default).
            runners: stand-ins for :meth:`subnetworks` by name (a compute backend); ``None``
                runs the sub-networks themselves in PyTorch.
        """

    def subnetworks(self) -> dict[str, nn.Module]:
        """Sub-networks that a compute backend or ONNX export may run on their own, by name
        (see the module docstring); empty when the style runs only as a whole in PyTorch."""
        return {}

    def card_rows(self) -> dict[str, str]:
        """Architecture-specific rows of the model card's table (label -> value)."""
        return {}

    def face_paste_mask(self) -> np.ndarray | None:
        """The style's own ``(S, S)`` float32 mask in [0, 1] over the aligned face crop, saying where
        the face pass replaces the whole-image result; ``None``: the pipeline's default."""
        return None

    def adapted_to(self, image: torch.Tensor, face_sizes: Sequence[float] = ()) -> StyleNetwork:
        """The style as it runs on the whole ``(1, 3, H, W)`` RGB picture ``image`` in [0, 1]
        whose faces' boxes measure ``face_sizes`` pixels (given only to styles with
        :attr:`adapts_to_faces`): styles that adapt their filters to the picture (its size, blur,
        noise, faces) measure it here, once, so the tiles of a large picture all get the same
        settings. Default: ``self``."""
        return self

    def tiling_context(self) -> tuple[int, int] | None:
        """``(halo, align)`` for exact tiling of whole images: tiles whose offsets and inner sides
        are multiples of ``align``, run with ``halo`` pixels of context on every side, reproduce
        the untiled result. ``None`` (the default): the reach is unknown, so large images are
        cross-faded from overlapping tiles instead (:func:`portrait_stylize.imaging.tiling.run_tiled`)."""
        return None

    # --- shared behaviour -------------------------------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        """Everything ``config.json`` stores: ``arch``, the architecture's arguments, conventions
        and provenance (JSON values only)."""
        return {"arch": self.arch, **self.architecture_config(), "channel_order": self.channel_order,
                "input_range": list(self.input_range), **self.meta, "format_version": FORMAT_VERSION}

    def check_call(self, part: str, reference: torch.Tensor | None) -> None:
        """Raise ``ValueError`` for a ``part`` or ``reference`` this style does not take."""
        if part not in PARTS or (part == "face" and not self.has_face_pass):
            allowed = PARTS if self.has_face_pass else ("image",)
            raise ValueError(f"part must be one of {allowed} for a {self.arch!r} style, got {part!r}")
        if reference is not None and not self.takes_reference:
            raise ValueError(f"a {self.arch!r} style does not take a style reference image")

    def to_network(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` RGB in [0, 1] -> the sub-networks' channel order and ``input_range``."""
        lo, hi = self.input_range
        # One new tensor, changed in place (a whole 4K picture is 100 MB per float copy).
        x = image.mul(hi - lo).add_(lo)
        return x.flip(1) if self.channel_order == "bgr" else x

    def from_network(self, y: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_network`, clipped to [0, 1]."""
        lo, hi = self.input_range
        y = y.sub(lo).div_(hi - lo).clamp_(0.0, 1.0)
        return y.flip(1) if self.channel_order == "bgr" else y


#: ``arch`` name -> class; filled by :func:`register_architecture`.
ARCHITECTURES: dict[str, type[StyleNetwork]] = {}


def register_architecture(cls: type[StyleNetwork]) -> type[StyleNetwork]:
    """Class decorator: make ``cls`` loadable from a ``config.json`` whose ``arch`` is ``cls.arch``."""
    if not cls.arch:
        raise ValueError(f"{cls.__name__} needs a non-empty class attribute 'arch'")
    if ARCHITECTURES.get(cls.arch, cls) is not cls:
        raise ValueError(f"architecture {cls.arch!r} is already registered by {ARCHITECTURES[cls.arch].__name__}")
    ARCHITECTURES[cls.arch] = cls
    return cls


def build_network(config: Any, where: str = "config.json") -> StyleNetwork:
    """A new (untrained) network from a ``config.json`` document (already JSON-decoded).

    Raises:
        InvalidStyleError: naming ``where`` and what is wrong (unknown ``arch``, bad arguments).
    """
    if not isinstance(config, dict):
        raise InvalidStyleError(f"{where}: must be a JSON object, got {type(config).__name__}")
    arch = config.get("arch", DEFAULT_ARCH)
    cls = ARCHITECTURES.get(arch) if isinstance(arch, str) else None
    if cls is None:
        raise InvalidStyleError(f"{where}: unsupported arch {arch!r}; "
                                f"this version knows {', '.join(sorted(ARCHITECTURES))}")
    kwargs = {k: v for k, v in config.items() if k != "arch" and k not in cls.legacy_keys}
    try:
        return cls(**kwargs)
    except InvalidStyleError as exc:
        raise InvalidStyleError(f"{where}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise InvalidStyleError(f"{where}: cannot build a {arch!r} style from it ({exc})") from None
