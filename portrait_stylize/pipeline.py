"""The user-facing pipeline: :func:`load_style` returns a :class:`Stylizer`, which stylizes images.

``Stylizer.__call__`` runs numbered steps, each a short method: check inputs -> faces -> whole
image -> face pass -> regions -> composite -> output. It talks to the style only through the
:class:`~portrait_stylize.models.base.StyleNetwork` interface, so every architecture and every
source kind goes through the same code.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

import cv2
import numpy as np
import torch
from PIL import Image

from .backends import Runners, auto_fallback, resolve_backend
from .devices import resolve_device
from .errors import InvalidArgumentError, InvalidStyleError, PortraitStylizeError
from .faces import OFF_HEAD_REGIONS, Face, align, get_face_backend, resolve_face_backend
from .image_quality import MIN_MEASURED_SIDE
from .io import DEFAULT_MAX_PIXELS, ImageInput, load_image, pil_to_tensor, tensor_to_pil
from .loading import load_network, resolve_spec
from .models import StyleNetwork
from .models.base import bounded_int
from .options import DEFAULT_TILE_SIZE
from .regions import (FACE_FEATHER, IMAGE_FEATHER, check_regions, composite, feather, feather_width, harmonize,
                      histogram_luts, mix, region_weights)
from .registry import StyleSpec
from .tiling import run_tiled

logger = logging.getLogger(__name__)

MIN_FACE_SIZE = 32
DEFAULT_TILE_OVERLAP = 64


class Smoother(Protocol):
    """Carries faces and the region coverage from one video frame to the next
    (:class:`portrait_stylize.video.TemporalState`)."""

    def track_faces(self, detect: Callable[[], list[Face]]) -> list[Face]:
        """This frame's faces: from ``detect()`` (when due), smoothed, or carried over."""

    def smooth_coverage(self, coverage: np.ndarray) -> np.ndarray: ...

    def adapted_model(self, model: StyleNetwork, photo: torch.Tensor,
                      face_sizes: Callable[[], list[float]]) -> StyleNetwork:
        """``model`` adapted once per clip (see :meth:`StyleNetwork.adapted_to`)."""


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

    @contextlib.contextmanager
    def timed(self, stage: str):
        """``with details.timed("stage"):`` adds the block's wall time (seconds) to :attr:`timings`."""
        start = time.perf_counter()
        yield
        self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - start


@dataclass
class Request:
    """The checked options of one :meth:`Stylizer.__call__`.

    Attributes:
        regions: region names, or ``None`` for everything (or, with ``faces``, their heads).
        strengths: region name (``"all"`` for everything, ``"head"`` for the chosen faces' heads)
            -> strength in [0, 1].
        harmonize: in [0, 1].
        faces: face indices, or ``None`` for all.
        reference: ``(1, 3, H, W)`` RGB in [0, 1] style reference, or ``None``.
    """

    regions: list[str] | None
    strengths: dict[str, float]
    harmonize: float
    faces: list[int] | None
    reference: torch.Tensor | None


def _unit_number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise InvalidArgumentError(f"{what} must be a number in [0, 1], got {value!r}")
    return float(value)


class Stylizer:
    """A loaded style, ready to stylize images. Create it with :func:`load_style`.

    Args:
        model: the style's network (:class:`~portrait_stylize.models.base.StyleNetwork`).
        spec: what the style is (name, kind, licence, source ...).
        device: where the model runs (default: :func:`~portrait_stylize.devices.default_device`).
        tile_size: images larger than this (either side) run in tiles, bounding memory; ``None``
            never tiles. Styles that know their reach (networks, built-in filters) tile exactly
            (``tile_size`` cores with the full reach as context, the same result as untiled);
            others in overlapping tiles of this side, cross-faded (see
            :mod:`portrait_stylize.tiling`).
        tile_overlap: cross-faded tiling: pixels shared by neighbouring tiles.
        max_pixels: refuse larger inputs (decompression-bomb guard); ``None`` for no limit.
        backend: how the style's sub-networks run: ``"auto"`` (fastest here), ``"torch"``,
            ``"torch-bf16"``, ``"onnx"``, ``"onnx-int8"`` or ``"openvino"`` (see
            :mod:`portrait_stylize.backends`). Styles without
            sub-networks (built-in filters, reference-based styles) always use torch.
        face_backend: ``"auto"``, ``"mediapipe"`` or ``"facexlib"`` (default: the
            ``PORTRAIT_STYLIZE_FACE_BACKEND`` environment variable, else auto).
        min_face_size: faces smaller than this (pixels, box side) are not stylized separately.
        max_short_side: work on a copy whose short side is at most this many pixels and scale the
            result back, as the official DCT-Net pipeline does (720); ``None`` (default) works at
            full resolution, in tiles.
    """

    def __init__(self, model: StyleNetwork, spec: StyleSpec, device: str | torch.device | None = None,
                 tile_size: int | None = DEFAULT_TILE_SIZE, tile_overlap: int = DEFAULT_TILE_OVERLAP,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, backend: str = "auto", face_backend: str | None = None,
                 min_face_size: int = MIN_FACE_SIZE, max_short_side: int | None = None) -> None:
        if tile_size is not None:
            # Tiles at least twice their overlap: each step then advances half a tile or more
            # (a 65-px tile with 64 px of overlap would advance one pixel per tile).
            bounded_int("tile_overlap", tile_overlap, 0, 1 << 15)
            bounded_int("tile_size", tile_size, max(32, 2 * tile_overlap), 1 << 16)
        if max_pixels is not None:
            bounded_int("max_pixels", max_pixels, 1, 1 << 40)
        bounded_int("min_face_size", min_face_size, 0, 1 << 16)
        self.max_short_side = None if max_short_side is None else bounded_int("max_short_side", max_short_side, 16, 1 << 16)
        self.spec = spec
        self.model = model.eval()
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap
        self.max_pixels = max_pixels
        self._backend_choice = backend
        self._face_backend_choice = resolve_face_backend(face_backend)
        self.min_face_size = min_face_size
        self.to(device)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def reference_based(self) -> bool:
        """Whether the style takes a style reference image (``style_image=``)."""
        return self.model.takes_reference

    @property
    def face_backend(self):
        """The face detection/parsing backend (created on first use; see :mod:`portrait_stylize.faces`)."""
        return get_face_backend(self._face_backend_choice)

    def __repr__(self) -> str:
        return (f"Stylizer(style={self.spec.name!r}, kind={self.spec.kind!r}, arch={self.model.arch!r}, "
                f"device={str(self.device)!r}, backend={self.backend!r})")

    def to(self, device: str | torch.device | None) -> "Stylizer":
        """Move the model to ``device`` (``None``: the best available), re-pick the backend, return ``self``."""
        self.device = resolve_device(device)
        self.model.to(self.device)
        subnetworks = self.model.subnetworks()
        backend = resolve_backend(self._backend_choice, self.device) if subnetworks else "torch"
        fallback = auto_fallback(self.device) if backend == "onnx-int8" and self._backend_choice in (None, "auto") else None
        self._runners = Runners(subnetworks, backend, self.device, fallback)
        return self

    @property
    def backend(self) -> str:
        """How the style's networks run (see :mod:`portrait_stylize.backends`)."""
        return self._runners.backend

    @torch.inference_mode()
    def __call__(self, image: ImageInput, regions: list[str] | str | None = None,
                 strength: float | dict[str, float] = 1.0, harmonize: float = 0.0, faces: list[int] | None = None,
                 return_details: bool = False, progress: bool = False, temporal: Smoother | None = None,
                 style_image: ImageInput | None = None):
        """Stylize one image, optionally only some regions of some faces.

        Args:
            image: a path, encoded bytes, PIL image or uint8 array (see
                :func:`portrait_stylize.io.load_image`; EXIF orientation is applied, grayscale,
                palette, 16-bit and CMYK are converted).
            regions: ``None`` stylizes everything (with ``faces``: only those faces' heads);
                otherwise names from :data:`portrait_stylize.faces.REGIONS` (``"hair"``,
                ``"lips"``, ...) and only those change. Which names a face backend can see:
                :attr:`face_backend` ``.regions``.
            strength: in [0, 1], how far to go from the photo to the stylized result (1 = fully
                stylized); with ``regions``, also a dict ``{region: strength}`` (unlisted: 1).
            harmonize: in [0, 1]; histogram-matches the untouched area towards the stylized
                colours by this much, so a partly stylized picture reads as one (0 = untouched
                pixels stay exactly as they were).
            faces: indices of the faces to stylize (sorted left to right; see
                :func:`portrait_stylize.detect_faces`); ``None`` = all, ``[]`` = none. Without
                ``regions``, only these faces' heads change (the style's head paste mask). An
                index not in the picture raises :class:`InvalidArgumentError` naming the faces
                found. Faces smaller than ``min_face_size`` pixels are skipped and reported.
            return_details: also return a :class:`StylizeDetails` (faces, masks, crops, timings).
            progress: show a progress bar over tiles for large images.
            temporal: for video frames: a :class:`~portrait_stylize.video.TemporalState` carried
                from frame to frame, which smooths face landmarks and region masks over time (no
                flicker). The exact pixel guarantees of ``regions`` then hold for the smoothed masks.
            style_image: the style reference of a reference-based style (default: the reference
                stored with its weights); an error for other styles.

        Returns:
            PIL image of the input's (upright) size: ``RGB``, or ``RGBA`` with the input's alpha;
            with ``return_details``, ``(image, details)``.
        """
        # 1. Check inputs (before any image is decoded) and read the image.
        request = self.check_inputs(regions, strength, harmonize, faces, style_image)
        details = StylizeDetails()
        img = load_image(image, self.max_pixels)
        size = img.size
        img = _cap_short_side(img, self.max_short_side)
        rgb = np.asarray(img.convert("RGB"))
        photo_t = pil_to_tensor(img)
        photo = photo_t[0].permute(1, 2, 0).numpy()
        # 2. Faces: detect, smooth over time, choose.
        chosen = self.find_faces(rgb, request, details, temporal)
        # 3. The whole image through the style (tiled when large), adapted to this picture.
        with details.timed("whole image"):
            stylized = self.stylize_image(photo_t, request.reference, progress, temporal,
                                          lambda: self.face_sizes(rgb, details))
        # 4. The face pass: aligned crops through the face network, pasted back (not when only
        #    regions away from the head change: its work would be thrown away).
        if chosen and self.model.has_face_pass and _reaches_heads(request.regions):
            with details.timed("face network"):
                stylized = self.stylize_faces(rgb, stylized, chosen, details)
        # 5. Regions: which pixels change (everything, the regions, or the chosen heads), how far.
        if request.regions is None and request.faces is None:
            out = mix(photo, stylized, request.strengths["all"], out=stylized)
        else:
            with details.timed("parse regions"):
                details.masks = self.region_masks(rgb, chosen, request.regions) if request.regions \
                    else {"head": self.head_masks(rgb.shape[:2], chosen)}
            # 6. Composite the stylized regions into the photo.
            with details.timed("composite"):
                out = self.composite(photo, stylized, request, chosen, details, temporal)
        # 7. Output: the input's size, with its alpha.
        alpha = img.getchannel("A") if img.mode == "RGBA" else None
        result = tensor_to_pil(torch.from_numpy(out).permute(2, 0, 1)[None], alpha)
        if result.size != size:
            result = result.resize(size, Image.LANCZOS)
        return (result, details) if return_details else result

    def check_inputs(self, regions, strength, harmonize, faces, style_image) -> Request:
        """Validate the options of a call (no image is read here) into a :class:`Request`.

        Raises:
            InvalidArgumentError: naming the option and the accepted values.
        """
        if regions is not None:
            regions = [regions] if isinstance(regions, str) else list(regions)
            if not regions:
                raise InvalidArgumentError("regions is empty; pass None for the whole image or names such as ['hair', 'lips']")
            backend = self.face_backend
            regions = check_regions(regions, backend.regions, backend.name)
        if isinstance(strength, dict):
            if regions is None:
                raise InvalidArgumentError("a per-region strength dict needs regions=[...]")
            unknown = set(strength) - set(regions)
            if unknown:
                raise InvalidArgumentError(f"strength names regions that are not selected: {sorted(unknown)}")
            strengths = {r: strength.get(r, 1.0) for r in regions}
        else:
            strengths = {r: strength for r in (regions or (["head"] if faces is not None else ["all"]))}
        strengths = {name: _unit_number(value, "strength" + ("" if name == "all" else f" for {name!r}"))
                     for name, value in strengths.items()}
        harmonize = _unit_number(harmonize, "harmonize")
        if faces is not None and not all(isinstance(i, int) and not isinstance(i, bool) for i in faces):
            raise InvalidArgumentError(f"faces must be a list of face indices (0 = leftmost), got {faces!r}")
        if style_image is not None and not self.reference_based:
            raise InvalidArgumentError(f"style {self.name!r} does not take a style image; only reference-based (u2lffm) styles do")
        reference = pil_to_tensor(load_image(style_image, self.max_pixels)) if style_image is not None else None
        return Request(regions, strengths, harmonize, None if faces is None else list(faces), reference)

    def find_faces(self, rgb: np.ndarray, request: Request, details: StylizeDetails,
                   temporal: Smoother | None) -> list[Face]:
        """Detect faces (only when regions or the style's face pass need them), smooth them over
        video frames, and return the chosen ones that are large enough (``details`` records all)."""
        if request.faces == [] or (request.regions is None and request.faces is None and not self.model.has_face_pass):
            return []  # none chosen, or none needed
        backend = self.face_backend
        details.face_backend = backend.name
        with details.timed("detect faces"):
            details.faces = backend.detect(rgb) if temporal is None else temporal.track_faces(lambda: backend.detect(rgb))
        found = details.faces
        if request.faces is not None:
            bad = [i for i in request.faces if not 0 <= i < len(found)]
            if bad:
                raise InvalidArgumentError(f"face index {bad[0]} is out of range: {len(found)} face(s) detected"
                                           + (f" (0-{len(found) - 1}, left to right)" if found else ""))
        chosen = []
        for i in range(len(found)) if request.faces is None else sorted(set(request.faces)):
            if found[i].size < self.min_face_size:
                details.skipped.append((i, f"face {i} is {found[i].size:.0f} px, below min_face_size={self.min_face_size}"))
                logger.warning(details.skipped[-1][1])
            else:
                details.stylized_faces.append(i)
                chosen.append(found[i])
        return chosen

    def stylize_image(self, photo: torch.Tensor, reference: torch.Tensor | None, progress: bool,
                      temporal: Smoother | None = None,
                      face_sizes: Callable[[], list[float]] = list) -> np.ndarray:
        """``(1, 3, H, W)`` RGB in [0, 1] -> ``(H, W, 3)`` float32 stylized, tiled when large; the
        style adapted to this picture (whose faces measure ``face_sizes()`` pixels), or to a
        video's first frame with ``temporal``."""
        reference = reference.to(self.device) if reference is not None else None
        model = self.model.adapted_to(photo, face_sizes()) if temporal is None \
            else temporal.adapted_model(self.model, photo, face_sizes)

        def forward(x: torch.Tensor) -> torch.Tensor:
            return model(x.to(self.device), "image", reference, self._runners)

        stylized = run_tiled(forward, photo, self.tile_size, self.tile_overlap, progress, model.tiling_context)
        return self._finite(stylized[0].permute(1, 2, 0).cpu().float().numpy())

    def face_sizes(self, rgb: np.ndarray, details: StylizeDetails) -> list[float]:
        """Box sides of the faces in ``rgb`` for a style that scales with them
        (:attr:`StyleNetwork.adapts_to_faces`): those step 2 found, else detected now (not
        recorded in ``details``: nothing was asked of them). Empty for other styles."""
        if not self.model.adapts_to_faces or min(rgb.shape[:2]) < MIN_MEASURED_SIDE:
            return []
        if details.face_backend:
            return [face.size for face in details.faces]
        try:
            return [face.size for face in self.face_backend.detect(rgb)]
        except PortraitStylizeError as exc:  # e.g. facexlib chosen, its weights missing offline
            logger.warning("faces not measured for the style's scale (%s); using the picture's size", exc)
            return []

    def _finite(self, array: np.ndarray) -> np.ndarray:
        """``array`` if every value is finite; a broken style (NaN weights or conventions) must
        fail, not return a black picture."""
        if not np.isfinite(array).all():
            raise InvalidStyleError(f"style {self.name!r} produced NaN or infinite values; its weights or "
                                    "config.json are broken")
        return array

    def stylize_faces(self, rgb: np.ndarray, stylized: np.ndarray, faces: list[Face],
                      details: StylizeDetails) -> np.ndarray:
        """DCT-Net's face pass: aligned crops through the face network in one batch, warped back
        over the whole-image result ``(H, W, 3)`` float32 with the style's own paste mask (the
        official ``alpha.jpg`` for DCT-Net styles), else a feathered ellipse. ``stylized`` is
        updated in place and returned."""
        matrices = [align.crop_transform(f.landmarks) for f in faces]
        crops = np.stack([align.warp_to_crop(rgb, m) for m in matrices])
        x = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(255.0).to(self.device)
        heads = self._finite(self.model(x, "face", None, self._runners).permute(0, 2, 3, 1).float().cpu().numpy())
        mask = self._paste_mask()
        out = stylized
        for crop, head, matrix in zip(crops, heads, matrices):
            x0, y0, x1, y1 = window = align.crop_footprint(matrix, rgb.shape[:2])
            paste = align.warp_from_crop(head, matrix, window)
            alpha = align.warp_from_crop(mask, matrix, window)[..., None]
            out[y0:y1, x0:x1] = alpha * paste + (1 - alpha) * out[y0:y1, x0:x1]
            details.crops.append((Image.fromarray(crop), Image.fromarray((head * 255).round().clip(0, 255).astype(np.uint8))))
        return out

    def _paste_mask(self) -> np.ndarray:
        """``(CROP_SIZE, CROP_SIZE)`` float32 in [0, 1]: the head in an aligned crop (the style's own
        paste mask, e.g. DCT-Net's ``alpha.jpg``, else a feathered ellipse)."""
        mask = self.model.face_paste_mask()
        return _head_mask() if mask is None else cv2.resize(mask, (align.CROP_SIZE, align.CROP_SIZE),
                                                             interpolation=cv2.INTER_AREA)

    def head_masks(self, shape: tuple[int, int], faces: list[Face]) -> np.ndarray:
        """``(H, W)`` float32 coverage of the ``faces``' heads: the paste mask of the face pass
        warped back from each aligned crop (max over faces)."""
        coverage = np.zeros(shape, np.float32)
        mask = self._paste_mask()
        for face in faces:
            matrix = align.crop_transform(face.landmarks)
            x0, y0, x1, y1 = window = align.crop_footprint(matrix, shape)
            np.maximum(coverage[y0:y1, x0:x1], align.warp_from_crop(mask, matrix, window), out=coverage[y0:y1, x0:x1])
        return coverage

    def region_masks(self, rgb: np.ndarray, faces: list[Face], regions: list[str]) -> dict[str, np.ndarray]:
        """Feathered ``(H, W)`` float32 masks of ``regions`` on the chosen ``faces``."""
        parsing = self.face_backend.parse(rgb, faces)
        return region_weights(parsing, faces, regions, rgb.shape[:2])

    def composite(self, photo: np.ndarray, stylized: np.ndarray, request: Request, faces: list[Face],
                  details: StylizeDetails, temporal: Smoother | None) -> np.ndarray:
        """Blend ``stylized`` into ``photo`` (both ``(H, W, 3)`` float32 in [0, 1]) inside the region
        masks, band by band, after harmonizing the untouched area's colours.

        Works in place to keep a 4K picture's memory low: ``photo`` becomes the result and
        ``stylized`` the strength-scaled target; both are the caller's scratch arrays."""
        # Coverage (where) and strength (how far) stay separate, so a region at strength s is
        # exactly photo + s * (stylized - photo) inside and still blends band-wise. Where regions
        # overlap, the strongest mask decides the strength (the first on ties).
        masks = list(details.masks.values())
        strengths = [request.strengths[name] for name in details.masks]
        coverage = masks[0].copy()
        amount = np.full(coverage.shape, strengths[0], np.float32) if len(set(strengths)) > 1 else np.float32(strengths[0])
        for mask, strength in zip(masks[1:], strengths[1:]):
            if amount.ndim:
                amount[mask > coverage] = strength
            np.maximum(coverage, mask, out=coverage)
        if temporal is not None:
            coverage = temporal.smooth_coverage(coverage)
        # The untouched area's colour mapping comes from the pure stylized image, before it
        # becomes the strength-scaled target.
        luts = histogram_luts(photo, stylized, coverage < 1) if request.harmonize > 0 else None
        target = mix(photo, stylized, amount, out=stylized)
        base = harmonize(photo, luts, request.harmonize, out=photo)
        sizes = [f.size for f in faces] or [min(photo.shape[:2]) * IMAGE_FEATHER / FACE_FEATHER]
        details.weight = coverage * amount
        return composite(base, target, coverage, feather_width(min(sizes), FACE_FEATHER), out=base)


def _reaches_heads(regions: list[str] | None) -> bool:
    """Whether changing ``regions`` (``None``: everything) changes any pixel of a head."""
    return regions is None or any(r not in OFF_HEAD_REGIONS for r in regions)


def _cap_short_side(image: Image.Image, limit: int | None) -> Image.Image:
    """``image`` scaled down (area-averaged) so that its short side is at most ``limit``."""
    if limit is None or min(image.size) <= limit:
        return image
    scale = limit / min(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BOX)


@functools.lru_cache(maxsize=1)
def _head_mask(size: int = align.CROP_SIZE) -> np.ndarray:
    """Feathered ellipse over the face in the aligned crop: where the head result replaces the
    whole-image result (DCT-Net pastes with a similar soft mask)."""
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size
    inside = ((xx - 0.5) / 0.40) ** 2 + ((yy - 0.52) / 0.46) ** 2 <= 1.0
    return feather(inside, round(0.08 * size))


def load_style(name: str | os.PathLike | None = None, *, device: str | torch.device | None = None,
               **stylizer_kwargs) -> Stylizer:
    """Load a style by registry name, local folder or Hub repo id.

    Args:
        name: ``"toon"`` (see :func:`list_styles`), ``"path/to/style_folder"``, ``"org/name"``,
            ``"org/name@revision"``; ``None`` loads the registry's default style. Registry names
            win over folders of the same name.
        device: where to run (default: CUDA, MPS, else CPU).
        **stylizer_kwargs: ``tile_size``, ``tile_overlap``, ``max_pixels``, ``backend``,
            ``face_backend``, ``min_face_size``, ``max_short_side`` for :class:`Stylizer`.

    Raises:
        StyleNotFoundError: unknown name (the message lists the known ones).
        StyleNotCachedError: weights not cached and the Hub unreachable or ``HF_HUB_OFFLINE=1``.
        StyleDownloadError: repository, revision or file missing on the Hub.
        ChecksumMismatchError: downloaded weights differ from the registry's sha256.
        UnsafeWeightsError: the weights are not safetensors.
        RegistryError, InvalidStyleError: malformed registry entry or style folder.
    """
    network, spec = load_network(resolve_spec(name))
    return Stylizer(network, spec, device=device, **stylizer_kwargs)


@functools.lru_cache(maxsize=4)
def cached_stylizer(name: str | None = None, device: str | None = None, face_backend: str | None = None) -> Stylizer:
    """:func:`load_style`, keeping the four most recently used styles loaded (loading weights is
    the slow part). The one cache behind :func:`stylize` and the web app."""
    return load_style(name, device=device, face_backend=face_backend)


def stylize(image: ImageInput, style: str | None = None, *, device: str | None = None, **kwargs) -> Image.Image:
    """One-call convenience: ``load_style(style)(image, **kwargs)``, reusing recently loaded styles."""
    return cached_stylizer(style, device)(image, **kwargs)
