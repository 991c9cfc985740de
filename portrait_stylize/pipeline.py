"""The user-facing pipeline: resolve a style, load it, and stylize images.

``load_style(name)`` accepts a registry name (``list_styles()``), a local style folder, or a Hub
repo id ``org/name`` (optionally ``org/name@revision``, or prefixed ``hf-hub:``) and returns a
:class:`Stylizer`. Registry names win over folders of the same name.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from .backends import Runner, make_runner, resolve_backend
from .errors import StyleNotFoundError
from .hub import fetch_spec, fetch_style_files, is_cached
from .io import DEFAULT_MAX_PIXELS, ImageInput, load_image, pil_to_tensor, tensor_to_pil
from .models.builtin import BuiltinStyle
from .models.style import StyleModel, load_style_folder
from .registry import StyleSpec, load_registry
from .tiling import run_tiled

logger = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^(?:hf-hub:)?(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<rev>[\w./-]+))?$")

DEFAULT_TILE_SIZE = 512
DEFAULT_TILE_OVERLAP = 64


def _is_available(kind: str) -> bool:
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        return mps is not None and mps.is_available()
    return True


def default_device() -> torch.device:
    """CUDA when available, else Apple MPS, else CPU."""
    return torch.device(next((kind for kind in ("cuda", "mps") if _is_available(kind)), "cpu"))


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Parse ``device`` (``None`` = :func:`default_device`) and check that it exists here."""
    if device is None:
        return default_device()
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"invalid device {device!r} ({exc}); use cpu, cuda, cuda:N or mps") from None
    if not _is_available(resolved.type):
        raise ValueError(f"device {device!r} is not available on this machine; use cpu")
    return resolved


class Stylizer:
    """A loaded style, ready to stylize images. Create it with :func:`load_style`.

    Args:
        model: a module mapping ``(B, 3, H, W)`` RGB in [0, 1] to the same (a
            :class:`~portrait_stylize.models.style.StyleModel` or a built-in style).
        spec: what the style is (name, licence, source ...).
        device: where the model runs (default: :func:`default_device`).
        tile_size: images larger than this (either side) run in overlapping square tiles of this
            side, bounding memory; ``None`` never tiles.
        tile_overlap: pixels shared by neighbouring tiles.
        max_pixels: refuse larger inputs (decompression-bomb guard); ``None`` for no limit.
        backend: how network styles run: ``"auto"`` (fastest here), ``"torch"``, ``"torch-bf16"``
            or ``"onnx"`` (see :mod:`portrait_stylize.backends`). Built-in styles always use torch.

    Attributes:
        model: the underlying module; for network styles ``model.head`` (and ``model.bg``) are
            the raw TTNs taking ``(B, 3, H, W)`` in [-1, 1].
    """

    def __init__(self, model: nn.Module, spec: StyleSpec, device: str | torch.device | None = None,
                 tile_size: int | None = DEFAULT_TILE_SIZE, tile_overlap: int = DEFAULT_TILE_OVERLAP,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, backend: str = "auto") -> None:
        if tile_size is not None and not 0 <= tile_overlap < tile_size:
            raise ValueError(f"tile_overlap must be in [0, tile_size={tile_size}), got {tile_overlap}")
        self.spec = spec
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap
        self.max_pixels = max_pixels
        self._backend_choice = backend
        self.backend = self._pick_backend()
        self._runners: dict[str, Runner] = {}

    def _pick_backend(self) -> str:
        if not isinstance(self.model, StyleModel):
            return "torch"
        return resolve_backend(self._backend_choice, self.device)

    def _runner(self, part: str) -> Runner:
        if part not in self._runners:
            self._runners[part] = make_runner(self.model.network(part), self.backend, self.device)
        return self._runners[part]

    @property
    def name(self) -> str:
        return self.spec.name

    def __repr__(self) -> str:
        return (f"Stylizer(style={self.spec.name!r}, kind={self.spec.kind!r}, device={str(self.device)!r}, "
                f"backend={self.backend!r})")

    def to(self, device: str | torch.device) -> "Stylizer":
        """Move the model to ``device`` and return ``self``."""
        self.device = resolve_device(device)
        self.model.to(self.device)
        self.backend = self._pick_backend()
        self._runners.clear()
        return self

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        if not isinstance(self.model, StyleModel):
            return self.model(x)
        return self.model.from_network(self._runner("bg")(self.model.to_network(x)))

    @torch.inference_mode()
    def __call__(self, image: ImageInput, strength: float = 1.0, progress: bool = False) -> Image.Image:
        """Stylize one image.

        Args:
            image: a path, encoded bytes, PIL image or uint8 array (see
                :func:`portrait_stylize.io.load_image`; EXIF orientation is applied, grayscale,
                palette, 16-bit and CMYK are converted).
            strength: in [0, 1]; blends the stylized result with the photo (1 = fully stylized).
            progress: show a progress bar over tiles for large images.

        Returns:
            PIL image of the input's (upright) size: ``RGB``, or ``RGBA`` with the input's alpha.
        """
        if not isinstance(strength, (int, float)) or not 0.0 <= float(strength) <= 1.0:
            raise ValueError(f"strength must be a number in [0, 1], got {strength!r}")
        img = load_image(image, self.max_pixels)
        alpha = img.getchannel("A") if img.mode == "RGBA" else None
        photo = pil_to_tensor(img)
        out = run_tiled(self._forward, photo, self.tile_size, self.tile_overlap, progress)
        if strength < 1.0:
            out = photo + (out - photo) * float(strength)
        return tensor_to_pil(out, alpha)


def _model_for_spec(spec: StyleSpec) -> nn.Module:
    if spec.kind == "builtin":
        return BuiltinStyle(spec.builtin, spec.params)
    config, weights = fetch_spec(spec)
    return StyleModel.from_files(config, weights)


def _resolve(name: str) -> tuple[nn.Module, StyleSpec]:
    registry = load_registry()
    spec = registry.get(name)
    if spec is not None:
        return _model_for_spec(spec), spec
    if Path(name).is_dir():
        model = load_style_folder(name)
        meta = model.meta
        return model, StyleSpec(name=meta["name"] or Path(name).name, kind="local", description=meta["description"],
                                licence=meta["licence"], source=str(Path(name).resolve()), available_offline=True)
    match = _HUB_ID.match(name)
    if match:
        repo, revision = match["repo"], match["rev"]
        config, weights = fetch_style_files(repo, revision=revision, label=f"style {name!r}")
        model = StyleModel.from_files(config, weights)
        meta = model.meta
        return model, StyleSpec(name=name, kind="hub", description=meta["description"], licence=meta["licence"],
                                source=meta["source"], repo_id=repo, revision=revision,
                                filename=weights.name, available_offline=True)
    raise StyleNotFoundError(
        f"unknown style {name!r}. Known styles: {', '.join(registry.names())}. "
        "You can also pass a local style folder or a Hub repo id 'org/name'."
    )


def load_style(name: str | os.PathLike | None = None, *, device: str | torch.device | None = None,
               **stylizer_kwargs) -> Stylizer:
    """Load a style by registry name, local folder or Hub repo id.

    Args:
        name: ``"toon"`` (see :func:`list_styles`), ``"path/to/style_folder"``, ``"org/name"``,
            ``"org/name@revision"``; ``None`` loads the registry's default style.
        device: where to run (default: CUDA, MPS, else CPU).
        **stylizer_kwargs: ``tile_size``, ``tile_overlap``, ``max_pixels``, ``backend`` for
            :class:`Stylizer`.

    Raises:
        StyleNotFoundError: unknown name (the message lists the known ones).
        StyleNotCachedError: weights not cached and the Hub unreachable or ``HF_HUB_OFFLINE=1``.
        StyleDownloadError: repository, revision or file missing on the Hub.
        ChecksumMismatchError: downloaded weights differ from the registry's sha256.
        UnsafeWeightsError: the weights are not safetensors.
        RegistryError, InvalidStyleError: malformed registry entry or style folder.
    """
    name = str(name) if name is not None else load_registry().default
    model, spec = _resolve(name)
    logger.info("loaded style %r (%s)", spec.name, spec.kind)
    return Stylizer(model, spec, device=device, **stylizer_kwargs)


def list_styles(pattern: str = "*") -> list[StyleSpec]:
    """Registered styles whose name matches the glob ``pattern``, with ``available_offline`` filled in.

    Never touches the network: availability means built-in, or weights already in the Hub cache.
    """
    registry = load_registry()
    return [registry.styles[n].with_availability(is_cached(registry.styles[n])) for n in registry.names(pattern)]


@functools.lru_cache(maxsize=4)
def _cached_style(name: str | None, device: str | None) -> Stylizer:
    return load_style(name, device=device)


def stylize(image: ImageInput, style: str | None = None, *, device: str | None = None, **kwargs) -> Image.Image:
    """One-call convenience: ``load_style(style)(image, **kwargs)``, reusing recently loaded styles."""
    return _cached_style(style, device)(image, **kwargs)
