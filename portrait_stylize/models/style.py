"""``StyleModel``: one style's networks and conventions, saved as ``config.json`` + ``model.safetensors``.

A style holds a ``head`` TTN (for aligned faces) and optionally a ``bg`` TTN (for whole images);
without ``bg`` the head serves both. Constructor arguments are JSON values, so
``huggingface_hub.PyTorchModelHubMixin`` records them as ``config.json`` and ``save_pretrained`` /
``from_pretrained`` / ``push_to_hub`` work out of the box. Loading accepts safetensors only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import ModelCard, ModelCardData, PyTorchModelHubMixin
from safetensors.torch import load_model
from torch import nn

from ..errors import InvalidStyleError
from ..hub import CONFIG_NAME, WEIGHTS_NAME, check_safetensors, fetch_style_files
from .ttn import TTN
from .u2lffm import U2LFFMGenerator

REPO_URL = "https://github.com/portrait-stylize/portrait-stylize"
ARCHS = ("ttn", "u2lffm")
CHANNEL_ORDERS = ("rgb", "bgr")
FORMAT_VERSION = 1

MODEL_CARD = """---
{{ card_data }}
---

# {{ title }}

{{ description }}

A [portrait-stylize]({{ repo_url }}) style: DCT-Net texture translation network(s) stored as
`config.json` + `model.safetensors`.

```python
import portrait_stylize as ps
st = ps.load_style("{{ load_name }}")
st("photo.jpg").save("stylized.png")
```

| | |
|---|---|
| architecture | {{ arch }} ({{ n_params }} parameters) |
| networks | {{ networks }} |
| channel order | {{ channel_order }} |
| input range | {{ input_range }} |
| upsampling / padding | {{ upsample }} / {{ padding }} |
| guided filter | radius {{ gf_radius }}, eps {{ gf_eps }} |
| licence | {{ licence }} |
| source | {{ source }} |
{{ extra }}
"""


class StyleModel(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="portrait-stylize",
    tags=["portrait-stylize", "image-to-image", "style-transfer", "dct-net"],
    license="apache-2.0",
    repo_url=REPO_URL,
    model_card_template=MODEL_CARD,
):
    """Networks of one style plus the conventions needed to feed them.

    Args:
        head: :class:`~portrait_stylize.models.ttn.TTN` keyword arguments for the face network.
        bg: keyword arguments for a separate whole-image network, or ``None`` to reuse ``head``.
        arch: ``"ttn"`` (DCT-Net TTNs) or ``"u2lffm"`` (paper 2's reference-based generator,
            :class:`~portrait_stylize.models.u2lffm.U2LFFMGenerator`; ``head``/``bg`` unused).
        generator: ``U2LFFMGenerator`` keyword arguments (``arch="u2lffm"``).
        reference_size: side of the default style reference stored with the weights (``u2lffm``).
        channel_order: ``"rgb"`` or ``"bgr"``, the order the weights were trained on
            (official DCT-Net and White-box weights: ``"bgr"``).
        input_range: ``[lo, hi]`` value range the networks expect (``[-1, 1]``).
        name, description, licence, source: provenance, repeated in the model card.
        format_version: version of this config layout.

    Shapes:
        ``forward(image, part)``: ``(B, 3, H, W)`` **RGB** in [0, 1] -> ``(B, 3, H, W)`` RGB in
        [0, 1]. ``part="bg"`` uses the whole-image network, ``part="head"`` the face network.
        Colour order and range conversions happen here; ``self.head``/``self.bg`` are the raw TTNs.
    """

    def __init__(self, head: dict[str, Any] | None = None, bg: dict[str, Any] | None = None, arch: str = "ttn",
                 channel_order: str = "rgb", input_range: list[float] | None = None, name: str = "",
                 description: str = "", licence: str = "apache-2.0", source: str = "",
                 format_version: int = FORMAT_VERSION, generator: dict[str, Any] | None = None,
                 reference_size: int = 256) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise InvalidStyleError(f"unsupported arch {arch!r}; this version knows {', '.join(ARCHS)}")
        if channel_order not in CHANNEL_ORDERS:
            raise InvalidStyleError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
        if format_version != FORMAT_VERSION:
            raise InvalidStyleError(f"format_version {format_version} is not supported (expected {FORMAT_VERSION}); upgrade portrait-stylize")
        self.input_range = tuple(input_range or (-1.0, 1.0))
        if len(self.input_range) != 2 or self.input_range[0] >= self.input_range[1]:
            raise InvalidStyleError(f"input_range must be [lo, hi] with lo < hi, got {input_range!r}")
        self.arch = arch
        self.generator = U2LFFMGenerator(**(generator or {})) if arch == "u2lffm" else None
        self.head = TTN(**(head or {})) if arch == "ttn" else None
        self.bg = TTN(**bg) if bg is not None and arch == "ttn" else None
        if self.generator is not None:
            # The default style reference travels with the weights (uint8 RGB, in the safetensors).
            self.register_buffer("reference", torch.full((3, reference_size, reference_size), 128, dtype=torch.uint8))
        self.channel_order = channel_order
        self.meta = {"name": name, "description": description, "licence": licence, "source": source}
        # Save resolved values rather than None placeholders, so a saved style never depends on
        # the defaults of the version that loads it.
        if isinstance(self._hub_mixin_config, dict):
            self._hub_mixin_config.update(
                head=self.head.config if self.head is not None else None,
                bg=self.bg.config if self.bg is not None else None,
                input_range=list(self.input_range),
            )

    def config_dict(self) -> dict[str, Any]:
        """The resolved configuration, exactly as ``save_pretrained`` writes it to ``config.json``."""
        return json.loads(json.dumps(self._hub_mixin_config))

    def network(self, part: str = "bg") -> TTN:
        """The raw TTN used for ``part`` (``"bg"`` falls back to ``head`` when there is no bg network)."""
        if self.generator is not None:
            raise ValueError("a u2lffm style has no TTN; call the model with a style image instead")
        if part not in ("bg", "head"):
            raise ValueError(f"part must be 'bg' or 'head', got {part!r}")
        return self.bg if part == "bg" and self.bg is not None else self.head

    def to_network(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` RGB in [0, 1] -> the networks' channel order and ``input_range``."""
        lo, hi = self.input_range
        x = image.flip(1) if self.channel_order == "bgr" else image
        return x * (hi - lo) + lo

    def from_network(self, y: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_network`, clipped to [0, 1]."""
        lo, hi = self.input_range
        y = (y - lo) / (hi - lo)
        return (y.flip(1) if self.channel_order == "bgr" else y).clamp(0.0, 1.0)

    def set_reference(self, image: torch.Tensor) -> None:
        """Store ``(3, H, W)`` RGB in [0, 1] (resized) as the default style reference (``u2lffm``)."""
        size = self.reference.shape[-1]
        resized = torch.nn.functional.interpolate(image[None].float(), size=(size, size), mode="area")[0]
        self.reference.copy_((resized.clamp(0, 1) * 255).round().to(torch.uint8))

    def forward(self, image: torch.Tensor, part: str = "bg", style_image: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, 3, H, W)`` RGB in [0, 1] -> stylized, same shape. ``style_image`` ``(1, 3, Hs, Ws)``
        RGB in [0, 1] is the reference of a ``u2lffm`` style (default: the stored one)."""
        if self.generator is None:
            if style_image is not None:
                raise ValueError("style_image is only for reference-based styles (arch 'u2lffm')")
            return self.from_network(self.network(part)(self.to_network(image)))
        reference = self.reference[None].float() / 255.0 if style_image is None else style_image
        reference = self.to_network(reference.to(image.device, image.dtype)).expand(len(image), -1, -1, -1)
        stylized, _ = self.generator(self.to_network(image), reference)
        return self.from_network(stylized)

    # --- loading (safetensors only) -------------------------------------------------------

    @staticmethod
    def _load_weights(model: "StyleModel", weights: Path, map_location: str = "cpu") -> "StyleModel":
        check_safetensors(weights)
        try:
            load_model(model, str(weights), strict=True, device=map_location)
        except RuntimeError as exc:
            raise InvalidStyleError(f"{weights}: weights do not match config.json ({exc})") from None
        return model.eval()

    @classmethod
    def from_files(cls, config_path: str | Path, weights_path: str | Path, map_location: str = "cpu") -> "StyleModel":
        """Build from a ``config.json`` and a ``.safetensors`` file (both local)."""
        config_path = Path(config_path)
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
            model = cls(**config)
        except (OSError, json.JSONDecodeError, TypeError, ValueError) as exc:
            raise InvalidStyleError(f"{config_path}: cannot build a style from it ({exc})") from None
        return cls._load_weights(model, Path(weights_path), map_location)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None, cache_dir: Any, force_download: bool,
                         local_files_only: bool, token: Any, map_location: str = "cpu", strict: bool = True,
                         **model_kwargs: Any) -> "StyleModel":
        # Overrides the mixin so that no pickle fallback exists and loading is always strict.
        if Path(model_id).is_dir():
            weights = Path(model_id) / WEIGHTS_NAME
            if not weights.is_file():
                raise InvalidStyleError(f"{model_id}: no {WEIGHTS_NAME} in this folder")
        else:
            _, weights = fetch_style_files(model_id, WEIGHTS_NAME, revision)
        return cls._load_weights(cls(**model_kwargs), weights, map_location)

    # --- model card -----------------------------------------------------------------------

    def generate_model_card(self, *args: Any, **kwargs: Any) -> ModelCard:
        conventions = self.head.config if self.head is not None else \
            {"upsample": "bilinear", "padding": "zero", "gf_radius": "none", "gf_eps": "-"}
        data = ModelCardData(
            library_name="portrait-stylize",
            license=self.meta["licence"] or "other",
            tags=["portrait-stylize", "image-to-image", "style-transfer", "dct-net"],
            pipeline_tag="image-to-image",
        )
        values = {
            "title": self.meta["name"] or "portrait-stylize style",
            "description": self.meta["description"],
            "repo_url": REPO_URL,
            "load_name": kwargs.pop("load_name", self.meta["name"] or "ORG/REPO"),
            "arch": "DCT-Net TTN" if self.generator is None else "U²-Net encoders + LFFM (reference-based)",
            "n_params": f"{sum(p.numel() for p in self.parameters()):,}",
            "networks": ("photo -> style generator with a stored default reference" if self.generator is not None
                         else "head + bg" if self.bg is not None else "head (also used for whole images)"),
            "channel_order": self.channel_order,
            "input_range": list(self.input_range),
            "upsample": conventions["upsample"],
            "padding": conventions["padding"],
            "gf_radius": conventions["gf_radius"],
            "gf_eps": conventions["gf_eps"],
            "licence": self.meta["licence"],
            "source": self.meta["source"] or "not recorded",
            "extra": kwargs.pop("extra", ""),
        }
        return ModelCard.from_template(card_data=data, template_str=MODEL_CARD, **values, **kwargs)


def load_style_folder(folder: str | Path, map_location: str = "cpu") -> StyleModel:
    """Load a local style folder (``config.json`` + ``model.safetensors``) with clear errors."""
    folder = Path(folder)
    config, weights = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not weights.is_file():
        others = sorted(p.name for p in folder.iterdir() if p.is_file())
        raise InvalidStyleError(
            f"{folder}: no {WEIGHTS_NAME} (found: {', '.join(others) or 'nothing'}). A style folder holds "
            f"{CONFIG_NAME} + {WEIGHTS_NAME}; pickle checkpoints (.bin/.pt/.ckpt) are never loaded."
        )
    if not config.is_file():
        raise InvalidStyleError(f"{folder}: no {CONFIG_NAME}; a style folder holds {CONFIG_NAME} + {WEIGHTS_NAME}")
    return StyleModel.from_files(config, weights, map_location)
