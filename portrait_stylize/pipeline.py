"""The user-facing pipeline: resolve a style, load it, and stylize images.

``load_style(name)`` accepts a registry name (``list_styles()``), a local style folder, or a Hub
repo id ``org/name`` (optionally ``org/name@revision``, or prefixed ``hf-hub:``) and returns a
:class:`Stylizer`. Registry names win over folders of the same name.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from .backends import Runner, make_runner, resolve_backend
from .errors import StyleNotFoundError
from .faces import Face, get_face_backend, resolve_face_backend
from .faces.face import box_iou
from .faces import align
from .hub import fetch_spec, fetch_style_files, is_cached
from .io import DEFAULT_MAX_PIXELS, ImageInput, load_image, pil_to_tensor, tensor_to_pil
from .models.builtin import BuiltinStyle
from .models.style import StyleModel, load_style_folder
from .regions import FACE_FEATHER, IMAGE_FEATHER, check_regions, composite, feather, feather_width, region_weights
from .regions import harmonize as harmonize_colours
from .registry import StyleSpec, load_registry
from .tiling import run_tiled

logger = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^(?:hf-hub:)?(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<rev>[\w./-]+))?$")

DEFAULT_TILE_SIZE = 512
MIN_FACE_SIZE = 32
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
        face_backend: ``"auto"``, ``"mediapipe"`` or ``"facexlib"`` (default: the
            ``PORTRAIT_STYLIZE_FACE_BACKEND`` environment variable, else auto).
        min_face_size: faces smaller than this (pixels, box side) are not stylized separately.

    Attributes:
        model: the underlying module; for network styles ``model.head`` (and ``model.bg``) are
            the raw TTNs taking ``(B, 3, H, W)`` in [-1, 1].
    """

    def __init__(self, model: nn.Module, spec: StyleSpec, device: str | torch.device | None = None,
                 tile_size: int | None = DEFAULT_TILE_SIZE, tile_overlap: int = DEFAULT_TILE_OVERLAP,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, backend: str = "auto", face_backend: str | None = None,
                 min_face_size: int = MIN_FACE_SIZE) -> None:
        if tile_size is not None and not 0 <= tile_overlap < tile_size:
            raise ValueError(f"tile_overlap must be in [0, tile_size={tile_size}), got {tile_overlap}")
        self.spec = spec
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap
        self.max_pixels = max_pixels
        self._backend_choice = backend
        self._face_backend_choice = resolve_face_backend(face_backend)
        self.min_face_size = min_face_size
        self.backend = self._pick_backend()
        self._runners: dict[str, Runner] = {}

    @property
    def reference_based(self) -> bool:
        """Whether the style takes a style reference image (``arch: u2lffm``)."""
        return isinstance(self.model, StyleModel) and self.model.generator is not None

    def _pick_backend(self) -> str:
        if not isinstance(self.model, StyleModel) or self.reference_based:
            return "torch"  # built-in filters and u2lffm styles run in PyTorch
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

    def _forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        x = x.to(self.device)
        if not isinstance(self.model, StyleModel) or self.reference_based:
            return self.model(x) if style is None else self.model(x, style_image=style.to(self.device))
        return self.model.from_network(self._runner("bg")(self.model.to_network(x)))

    @property
    def face_backend(self):
        """The face detection/parsing backend (created on first use; see :mod:`portrait_stylize.faces`)."""
        return get_face_backend(self._face_backend_choice)

    def _check_call(self, regions, strength, harmonize, faces) -> tuple[list[str] | None, dict[str, float]]:
        if regions is not None:
            regions = [regions] if isinstance(regions, str) else list(regions)
            if not regions:
                raise ValueError("regions is empty; pass None for the whole image or names such as ['hair', 'lips']")
        if isinstance(strength, dict):
            if regions is None:
                raise ValueError("a per-region strength dict needs regions=[...]")
            unknown = set(strength) - set(regions)
            if unknown:
                raise ValueError(f"strength names regions that are not selected: {sorted(unknown)}")
            strengths = {r: strength.get(r, 1.0) for r in regions}
        else:
            strengths = {r: strength for r in (regions or ["all"])}
        for name, value in strengths.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"strength{'' if name == 'all' else f' for {name!r}'} must be a number in [0, 1], "
                                 f"got {value!r}")
        if isinstance(harmonize, bool) or not isinstance(harmonize, (int, float)) or not 0.0 <= harmonize <= 1.0:
            raise ValueError(f"harmonize must be a number in [0, 1], got {harmonize!r}")
        if faces is not None and not all(isinstance(i, int) and not isinstance(i, bool) for i in faces):
            raise ValueError(f"faces must be a list of face indices (0 = leftmost), got {faces!r}")
        return regions, {k: float(v) for k, v in strengths.items()}

    @torch.inference_mode()
    def __call__(self, image: ImageInput, regions: list[str] | str | None = None,
                 strength: float | dict[str, float] = 1.0, harmonize: float = 0.0, faces: list[int] | None = None,
                 return_details: bool = False, progress: bool = False, temporal: "TemporalState | None" = None,
                 style_image: ImageInput | None = None):
        """Stylize one image, optionally only some regions of some faces.

        Args:
            image: a path, encoded bytes, PIL image or uint8 array (see
                :func:`portrait_stylize.io.load_image`; EXIF orientation is applied, grayscale,
                palette, 16-bit and CMYK are converted).
            regions: ``None`` stylizes everything; otherwise names from
                :data:`portrait_stylize.faces.REGIONS` (``"hair"``, ``"lips"``, ...) and only those
                change. Which names a face backend can see: :attr:`face_backend` ``.regions``.
            strength: in [0, 1], how far to go from the photo to the stylized result (1 = fully
                stylized); with ``regions``, also a dict ``{region: strength}`` (unlisted: 1).
            harmonize: in [0, 1]; histogram-matches the untouched area towards the stylized
                colours by this much, so a partly stylized picture reads as one (0 = untouched
                pixels stay exactly as they were).
            faces: indices of the faces to stylize (sorted left to right; see
                :func:`portrait_stylize.detect_faces`); ``None`` = all, ``[]`` = none. Faces
                smaller than ``min_face_size`` pixels are skipped and reported.
            return_details: also return a :class:`StylizeDetails` (faces, masks, crops, timings).
            progress: show a progress bar over tiles for large images.
            style_image: the style reference of a reference-based style (``arch: u2lffm``; default:
                the reference stored with its weights); an error for other styles.
            temporal: for video frames: a :class:`TemporalState` carried from frame to frame,
                which smooths face landmarks and region masks over time (no flicker). The exact
                pixel guarantees of ``regions`` then hold for the smoothed masks.

        Returns:
            PIL image of the input's (upright) size: ``RGB``, or ``RGBA`` with the input's alpha;
            with ``return_details``, ``(image, details)``.
        """
        regions, strengths = self._check_call(regions, strength, harmonize, faces)
        if style_image is not None and not self.reference_based:
            raise ValueError(f"style {self.name!r} does not take a style image; only reference-based (u2lffm) styles do")
        style = pil_to_tensor(load_image(style_image, self.max_pixels)) if style_image is not None else None
        network = isinstance(self.model, StyleModel) and not self.reference_based
        backend = self.face_backend if regions is not None or (network and faces != []) else None
        if regions is not None:
            regions = check_regions(regions, backend.regions, backend.name)
        details = StylizeDetails()
        clock = _Clock(details.timings)
        img = load_image(image, self.max_pixels)
        alpha = img.getchannel("A") if img.mode == "RGBA" else None
        photo_t = pil_to_tensor(img)
        with clock("whole image"):
            stylized = run_tiled(functools.partial(self._forward, style=style), photo_t, self.tile_size,
                                 self.tile_overlap, progress)
        stylized = stylized[0].permute(1, 2, 0).cpu().float().numpy()
        photo = photo_t[0].permute(1, 2, 0).numpy()
        rgb = np.asarray(img.convert("RGB"))
        chosen: list[Face] = []
        if backend is not None:
            details.face_backend = backend.name
            with clock("detect faces"):
                details.faces = backend.detect(rgb)
                if temporal is not None:
                    details.faces = temporal.smooth_faces(details.faces)
            chosen = self._choose_faces(details, faces)
            if network and chosen:
                with clock("face network"):
                    stylized = self._paste_heads(rgb, stylized, chosen, details)
        if regions is None:
            out = photo + (stylized - photo) * strengths["all"]
        else:
            with clock("parse regions"):
                parsing = backend.parse(rgb, chosen)
                masks = region_weights(parsing, chosen, regions, photo.shape[:2])
            with clock("composite"):
                # Coverage (where) and strength (how far) stay separate, so a region at strength
                # s is exactly photo + s * (stylized - photo) inside and still blends band-wise.
                stack = np.stack([masks[name] for name in regions])
                coverage = stack.max(0) if temporal is None else temporal.smooth_coverage(stack.max(0))
                amount = np.array([strengths[name] for name in regions], np.float32)[stack.argmax(0)]
                target = photo + (stylized - photo) * amount[..., None]
                base = harmonize_colours(photo, stylized, coverage, harmonize)
                sizes = [f.size for f in chosen] or [min(photo.shape[:2]) * IMAGE_FEATHER / FACE_FEATHER]
                out = composite(base, target, coverage, feather_width(min(sizes), FACE_FEATHER))
            details.masks, details.weight = masks, coverage * amount
        result = tensor_to_pil(torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1)[None], alpha)
        return (result, details) if return_details else result

    def _choose_faces(self, details: "StylizeDetails", faces: list[int] | None) -> list[Face]:
        found = details.faces
        if faces is not None:
            bad = [i for i in faces if not 0 <= i < len(found)]
            if bad:
                raise ValueError(f"face index {bad[0]} is out of range: {len(found)} face(s) detected"
                                 + (f" (0-{len(found) - 1}, left to right)" if found else ""))
        wanted = range(len(found)) if faces is None else sorted(set(faces))
        chosen = []
        for i in wanted:
            if found[i].size < self.min_face_size:
                details.skipped.append((i, f"face {i} is {found[i].size:.0f} px, below min_face_size={self.min_face_size}"))
                logger.warning(details.skipped[-1][1])
            else:
                details.stylized_faces.append(i)
                chosen.append(found[i])
        return chosen

    def _paste_heads(self, rgb: np.ndarray, stylized: np.ndarray, faces: list[Face],
                     details: "StylizeDetails") -> np.ndarray:
        """DCT-Net's face pass: aligned crops through the head network in one batch, warped back
        with a feathered elliptical mask over the whole-image result."""
        matrices = [align.crop_transform(f.landmarks) for f in faces]
        crops = np.stack([align.warp_to_crop(rgb, m) for m in matrices])
        x = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(255.0).to(self.device)
        heads = self.model.from_network(self._runner("head")(self.model.to_network(x)))
        heads = heads.permute(0, 2, 3, 1).float().cpu().numpy()
        out = stylized.copy()
        for crop, head, matrix in zip(crops, heads, matrices):
            window = align.crop_footprint(matrix, rgb.shape[:2])
            x0, y0, x1, y1 = window
            paste = align.warp_from_crop(head, matrix, window)
            alpha = align.warp_from_crop(_head_mask(), matrix, window)[..., None]
            out[y0:y1, x0:x1] = alpha * paste + (1 - alpha) * out[y0:y1, x0:x1]
            details.crops.append((Image.fromarray(crop), Image.fromarray((head * 255).round().clip(0, 255).astype(np.uint8))))
        return out


@functools.lru_cache(maxsize=1)
def _head_mask(size: int = align.CROP_SIZE) -> np.ndarray:
    """Feathered ellipse over the face in the aligned crop: where the head result replaces the
    whole-image result (DCT-Net pastes with a similar soft mask)."""
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size
    inside = ((xx - 0.5) / 0.40) ** 2 + ((yy - 0.52) / 0.46) ** 2 <= 1.0
    return feather(inside, round(0.08 * size))


@dataclass
class StylizeDetails:
    """What :meth:`Stylizer.__call__` did (``return_details=True``), e.g. for the app to show.

    Attributes:
        faces: every detected face, left to right.
        stylized_faces: indices of the faces that were stylized.
        skipped: ``(index, reason)`` for faces left out (too small).
        face_backend: which face backend ran (``""`` when none was needed).
        masks: region name -> ``(H, W)`` float32 feathered mask (only with ``regions``).
        weight: ``(H, W)`` float32 how far each pixel moved towards the stylized result
            (feathered masks × strengths), or ``None`` without regions.
        crops: ``(aligned input crop, stylized crop)`` PIL pairs per stylized face.
        timings: stage name -> seconds.
    """

    faces: list[Face] = field(default_factory=list)
    stylized_faces: list[int] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    face_backend: str = ""
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    weight: np.ndarray | None = None
    crops: list[tuple[Image.Image, Image.Image]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class TemporalState:
    """Carries faces and the region coverage from one video frame to the next.

    ``smoothing`` in [0, 1) is the weight of the past in an exponential moving average: faces
    (box, landmarks, mesh) are matched to the previous frame's by box overlap and averaged;
    the coverage mask is averaged pixel-wise. 0 disables smoothing.
    """

    smoothing: float = 0.6
    faces: list[Face] = field(default_factory=list)
    coverage: np.ndarray | None = None

    def _mix(self, old, new):
        return None if old is None or new is None else self.smoothing * old + (1 - self.smoothing) * new

    def smooth_faces(self, faces: list[Face]) -> list[Face]:
        smoothed = []
        for face in faces:
            prev = max(self.faces, key=lambda p: box_iou(p.box, face.box), default=None)
            if prev is not None and box_iou(prev.box, face.box) > 0.3 and self.smoothing > 0:
                mesh = self._mix(prev.mesh, face.mesh) if prev.mesh is not None and face.mesh is not None \
                    and prev.mesh.shape == face.mesh.shape else face.mesh
                face = Face(box=tuple(self._mix(np.array(prev.box), np.array(face.box))),
                            landmarks=self._mix(prev.landmarks, face.landmarks), score=face.score, mesh=mesh)
            smoothed.append(face)
        self.faces = smoothed
        return smoothed

    def smooth_coverage(self, coverage: np.ndarray) -> np.ndarray:
        if self.coverage is not None and self.coverage.shape == coverage.shape and self.smoothing > 0:
            coverage = self._mix(self.coverage, coverage).astype(np.float32)
        self.coverage = coverage
        return coverage


class _Clock:
    """``with clock("stage"):`` adds the stage's wall time (seconds) to a dict."""

    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings

    @contextlib.contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        yield
        self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - start


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
