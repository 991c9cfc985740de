"""The user-facing pipeline: :func:`load_style` returns a :class:`Stylizer`, which stylizes images.

``Stylizer.__call__`` runs numbered steps, each a short method: check inputs -> faces -> whole
image -> face pass -> regions -> composite -> output. It talks to the style only through the
:class:`~portrait_stylize.models.base.StyleNetwork` interface, so every architecture and every
source kind goes through the same code.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from .common.numbers import bounded_int, bounded_number
from .errors import InvalidArgumentError, InvalidStyleError, PortraitStylizeError
from .faces import OFF_HEAD_REGIONS, Face, FaceBackend, align, get_face_backend, resolve_face_backend, select_faces
from .faces.paste import head_coverage, head_paste_mask, paste_heads
from .faces.regions import check_regions, region_weights
from .imaging.blending import FACE_FEATHER, IMAGE_FEATHER, composite_regions, feather_width, mix
from .imaging.io import ImageInput, load_image, pil_to_tensor
from .imaging.picture import Picture
from .imaging.quality import MIN_MEASURED_SIDE
from .imaging.tiling import run_tiled
from .loading import load_network, resolve_spec
from .models import StyleNetwork
from .options import DEFAULT_MAX_PIXELS, DEFAULT_TILE_SIZE
from .runtime.backends import choose_runners
from .runtime.devices import resolve_device
from .sources.registry import StyleSpec

logger = logging.getLogger(__name__)

MIN_FACE_SIZE = 32
DEFAULT_TILE_OVERLAP = 64


class Smoother(Protocol):
    """Carries faces and the region coverage from one video frame to the next
    (:class:`portrait_stylize.video.TemporalState`)."""

    def track_faces(self, detect: Callable[[], list[Face]]) -> list[Face]:
        """This frame's faces: from ``detect()`` (when due; or found ahead), smoothed, or carried over."""

    def due_frames(self, count: int) -> list[int]:
        """Which of the next ``count`` frames (0 = the next one) are due for a detection on schedule."""

    def found_ahead(self, offset: int, faces: list[Face]) -> None:
        """Faces detected ahead for the frame ``offset`` frames on (see :meth:`Stylizer.detect_ahead`)."""

    def smooth_coverage(self, coverage: np.ndarray) -> np.ndarray: ...

    def adapted_model(self, model: StyleNetwork, photo: torch.Tensor,
                      face_sizes: Callable[[], list[float]]) -> StyleNetwork:
        """``model`` adapted once per clip (see :meth:`StyleNetwork.adapted_to`)."""


@dataclass
class StylizeDetails:
    """What :meth:`Stylizer.__call__` did (``return_details=True``), e.g. for the app to show.

    Attributes:
        faces: every detected face, left to right.
        stylized_faces: numbers of the faces that were stylized (1 = leftmost: ``faces[n - 1]``).
        skipped: ``(number, reason)`` for faces left out (too small).
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
        faces: face numbers (1 = leftmost), or ``None`` for all.
        reference: ``(1, 3, H, W)`` RGB in [0, 1] style reference, or ``None``.
    """

    regions: list[str] | None
    strengths: dict[str, float]
    harmonize: float
    faces: list[int] | None
    reference: torch.Tensor | None

    @classmethod
    def check(cls, regions, strength, harmonize, faces, style_image, *, stylizer: Stylizer) -> Request:
        """Validate the options of a call for ``stylizer`` (no image is read here).

        Raises:
            InvalidArgumentError: naming the option and the accepted values.
        """
        if regions is not None:
            if not isinstance(regions, (str, list, tuple)):
                raise InvalidArgumentError(f"regions must be a region name or a list of them, got {regions!r}")
            regions = [regions] if isinstance(regions, str) else list(regions)
            if not regions:
                raise InvalidArgumentError("regions is empty; pass None for the whole image or names such as "
                                           "['hair', 'lips']")
            backend = stylizer.face_backend
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
        strengths = {name: bounded_number("strength" + ("" if name == "all" else f" for {name!r}"), value, 0, 1)
                     for name, value in strengths.items()}
        if faces is not None and (not isinstance(faces, (list, tuple))
                                  or not all(isinstance(i, int) and not isinstance(i, bool) for i in faces)):
            raise InvalidArgumentError(f"faces must be a list of face numbers (1 = leftmost), got {faces!r}")
        if style_image is not None and not stylizer.reference_based:
            raise InvalidArgumentError(f"style {stylizer.name!r} does not take a style image; only reference-based "
                                       "(u2lffm) styles do")
        reference = None if style_image is None else pil_to_tensor(load_image(style_image, stylizer.max_pixels))
        return cls(regions, strengths, bounded_number("harmonize", harmonize, 0, 1),
                   None if faces is None else list(faces), reference)


class Stylizer:
    """A loaded style, ready to stylize images: call it on a picture. Create it with :func:`load_style`,
    which documents the options; ``model`` is the style's network
    (:class:`~portrait_stylize.models.base.StyleNetwork`) and ``spec`` what the style is.
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
        self.max_short_side = (None if max_short_side is None
                               else bounded_int("max_short_side", max_short_side, 16, 1 << 16))
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
    def face_backend(self) -> FaceBackend:
        """The face detection/parsing backend, on this stylizer's device (created on first use; see
        :mod:`portrait_stylize.faces`)."""
        return get_face_backend(self._face_backend_choice, self.device)

    def __repr__(self) -> str:
        return (f"Stylizer(style={self.spec.name!r}, kind={self.spec.kind!r}, arch={self.model.arch!r}, "
                f"device={str(self.device)!r}, backend={self.backend!r})")

    def to(self, device: str | torch.device | None) -> Stylizer:
        """Move the model to ``device`` (``None``: the best available), re-pick the backend, return ``self``."""
        self.device = resolve_device(device)
        self.model.to(self.device)
        self._runners = choose_runners(self.model.subnetworks(), self._backend_choice, self.device, self.tile_size)
        return self

    @property
    def backend(self) -> str:
        """How the style's networks run (see :mod:`portrait_stylize.runtime.backends`)."""
        return self._runners.backend

    @torch.inference_mode()
    def __call__(self, image: ImageInput, regions: list[str] | str | None = None,
                 strength: float | dict[str, float] = 1.0, harmonize: float = 0.0, faces: list[int] | None = None,
                 return_details: bool = False, progress: bool = False, temporal: Smoother | None = None,
                 style_image: ImageInput | None = None):
        """Stylize one image, optionally only some regions of some faces.

        Args:
            image: a path, encoded bytes, PIL image or uint8 array (see
                :func:`portrait_stylize.imaging.io.load_image`; EXIF orientation is applied, grayscale,
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
            faces: numbers of the faces to stylize, 1 = leftmost, as the app and the CLI number
                them (face ``n`` is :func:`portrait_stylize.detect_faces`'s ``[n - 1]``); ``None`` =
                all, ``[]`` = none. Without ``regions``, only these faces' heads change (the style's
                head paste mask). A number not in the picture raises :class:`InvalidArgumentError` naming the faces
                found. Faces smaller than ``min_face_size`` pixels are skipped and reported.
                ``[]`` without ``regions`` or ``harmonize`` changes nothing: the picture comes back
                as it is (upright), at once.
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
        if request.faces == [] and request.regions is None and not request.harmonize:
            # Nothing chosen to change: the picture as it is, without running any network.
            unchanged = load_image(image, self.max_pixels)  # upright, RGB or RGBA
            return (unchanged, details) if return_details else unchanged
        picture = Picture.read(image, self.max_pixels, self.max_short_side)
        rgb, photo = picture.rgb, picture.array
        # 2. Faces: detect, smooth over time, choose.
        chosen = self.find_faces(rgb, request, details, temporal)
        # 3. The whole image through the style (tiled when large), adapted to this picture.
        with details.timed("whole image"):
            stylized = self.stylize_image(picture.tensor, request.reference, progress, temporal,
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
                details.masks = self.region_masks(rgb, chosen, request.regions)
            # 6. Composite the stylized regions into the photo (feathered over the smallest face).
            with details.timed("composite"):
                sizes = [f.size for f in chosen] or [min(rgb.shape[:2]) * IMAGE_FEATHER / FACE_FEATHER]
                out, details.weight = composite_regions(
                    photo, stylized, list(details.masks.values()), [request.strengths[n] for n in details.masks],
                    request.harmonize, feather_width(min(sizes), FACE_FEATHER),
                    None if temporal is None else temporal.smooth_coverage)
        # 7. Output: the input's size, with its alpha.
        result = picture.result(out)
        return (result, details) if return_details else result

    def check_inputs(self, regions, strength, harmonize, faces, style_image) -> Request:
        """Step 1 alone: the call's options checked (see :meth:`Request.check`), no image read."""
        return Request.check(regions, strength, harmonize, faces, style_image, stylizer=self)

    def find_faces(self, rgb: np.ndarray, request: Request, details: StylizeDetails,
                   temporal: Smoother | None) -> list[Face]:
        """Detect faces (only when regions or the style's face pass need them), smooth them over
        video frames, and return the chosen ones that are large enough (``details`` records all)."""
        if not self._needs_faces(request):
            return []
        backend = self.face_backend
        details.face_backend = backend.name
        with details.timed("detect faces"):
            details.faces = (backend.detect(rgb) if temporal is None
                             else temporal.track_faces(lambda: backend.detect(rgb)))
        details.stylized_faces, details.skipped = select_faces(details.faces, request.faces, self.min_face_size)
        for _, reason in details.skipped:
            logger.warning(reason)
        return [details.faces[n - 1] for n in details.stylized_faces]

    def _needs_faces(self, request: Request) -> bool:
        """Whether a call finds faces: not when none are chosen, nor when neither regions nor the
        style's face pass need them."""
        return request.faces != [] and not (request.regions is None and request.faces is None
                                            and not self.model.has_face_pass)

    def detect_ahead(self, frames: list[ImageInput], temporal: Smoother, regions: list[str] | str | None = None,
                     faces: list[int] | None = None) -> None:
        """Video: find the faces of those of the next ``frames`` that ``temporal`` will detect on, in
        one batch for the face backend (:meth:`FaceBackend.detect_many`), and leave them in
        ``temporal`` for those frames' calls (with the same ``regions`` and ``faces``)."""
        if not self._needs_faces(self.check_inputs(regions, 1.0, 0.0, faces, None)):
            return
        due = temporal.due_frames(len(frames))
        rgbs = [Picture.read(frames[i], self.max_pixels, self.max_short_side).rgb for i in due]
        for offset, found in zip(due, self.face_backend.detect_many(rgbs)):
            temporal.found_ahead(offset, found)

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

        # Networks that hold less than a float32 tile's activations (streamed by rows, int8 or
        # bf16 graphs) take larger tiles, as few and even as that allows (runners.tiling).
        factor, cores = self._runners.tiling
        tile_size = self.tile_size and self.tile_size * factor
        stylized = run_tiled(forward, photo, tile_size, self.tile_overlap, progress, model.tiling_context, cores)
        self._runners.release()  # a large tile's buffers, not held through the face pass and regions
        return _finite(self.name, stylized[0].permute(1, 2, 0).cpu().float().numpy())

    def face_sizes(self, rgb: np.ndarray, details: StylizeDetails) -> list[float]:
        """Box sides of the faces in ``rgb`` for a style that scales with them
        (:attr:`StyleNetwork.adapts_to_faces`): those step 2 found, else detected now (not
        recorded in ``details``: nothing was asked of them). Empty for other styles."""
        if not self.model.adapts_to_faces or min(rgb.shape[:2]) < MIN_MEASURED_SIDE:
            return []
        if details.face_backend:
            return [face.size for face in details.faces]
        try:
            return self.face_backend.face_sizes(rgb)
        except PortraitStylizeError as exc:  # e.g. facexlib chosen, its weights missing offline
            logger.warning("faces not measured for the style's scale (%s); using the picture's size", exc)
            return []

    def stylize_faces(self, rgb: np.ndarray, stylized: np.ndarray, faces: list[Face],
                      details: StylizeDetails) -> np.ndarray:
        """DCT-Net's face pass: aligned crops through the face network in one batch, pasted over the
        whole-image result ``(H, W, 3)`` float32 (updated in place and returned) with the style's
        paste mask (:func:`~portrait_stylize.faces.paste.head_paste_mask`)."""
        matrices = [align.crop_transform(f.landmarks) for f in faces]
        crops = np.stack([align.warp_to_crop(rgb, m) for m in matrices])
        x = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(255.0).to(self.device)
        heads = _finite(self.name, self.model(x, "face", None, self._runners).permute(0, 2, 3, 1).float().cpu().numpy())
        details.crops += [(Image.fromarray(crop), Image.fromarray((head * 255).round().clip(0, 255).astype(np.uint8)))
                          for crop, head in zip(crops, heads)]
        return paste_heads(stylized, heads, matrices, head_paste_mask(self.model.face_paste_mask()))

    def region_masks(self, rgb: np.ndarray, faces: list[Face], regions: list[str] | None) -> dict[str, np.ndarray]:
        """Feathered ``(H, W)`` float32 masks of ``regions`` on the chosen ``faces``; without regions,
        ``{"head": ...}``: the chosen heads as the face pass pastes them."""
        if regions is None:
            return {"head": head_coverage(rgb.shape[:2], faces, head_paste_mask(self.model.face_paste_mask()))}
        return region_weights(self.face_backend.parse(rgb, faces), faces, regions, rgb.shape[:2])


def _finite(style: str, array: np.ndarray) -> np.ndarray:
    """``array`` if every value is finite; a broken style (NaN weights or conventions) must fail,
    not return a black picture."""
    if not np.isfinite(array).all():
        raise InvalidStyleError(f"style {style!r} produced NaN or infinite values; its weights or config.json are "
                                "broken")
    return array


def _reaches_heads(regions: list[str] | None) -> bool:
    """Whether changing ``regions`` (``None``: everything) changes any pixel of a head."""
    return regions is None or any(r not in OFF_HEAD_REGIONS for r in regions)


def load_style(name: str | os.PathLike | None = None, *, device: str | torch.device | None = None,
               **stylizer_kwargs) -> Stylizer:
    """Load a style by registry name, local folder or Hub repo id.

    Args:
        name: ``"toon"`` (see :func:`list_styles`), ``"path/to/style_folder"``, ``"org/name"``,
            ``"org/name@revision"``; ``None`` loads the registry's default style. Registry names
            win over folders of the same name.
        device: where the model runs (default: CUDA, then Apple MPS, else CPU).
        tile_size: images larger than this (either side) run in tiles, bounding memory; ``None``
            never tiles. Styles that know their reach (networks, built-in filters) tile exactly
            (``tile_size`` cores with the full reach as context, the same result as untiled);
            others in overlapping tiles of this side, cross-faded (see
            :mod:`portrait_stylize.imaging.tiling`). DCT-Net networks run by ``torch`` or
            ``torch-bf16`` on the CPU stream large pictures by rows
            (:mod:`portrait_stylize.runtime.row_stream`: the same result, no context computed
            twice, memory that does not grow with the height), in exact tiles
            ``runners.STREAM_TILE_FACTOR`` (4) times ``tile_size``; their int8 and bf16 OpenVINO
            graphs in as few and even exact tiles as ``runners.GRAPH_TILE_FACTOR`` (2) times
            ``tile_size`` allows.
        tile_overlap: cross-faded tiling: pixels shared by neighbouring tiles.
        max_pixels: refuse larger inputs (decompression-bomb guard); ``None`` for no limit.
        backend: how the style's sub-networks run: ``"auto"`` (fastest here), ``"torch"``,
            ``"torch-bf16"``, ``"onnx"``, ``"onnx-int8"`` or ``"openvino"`` (see
            :mod:`portrait_stylize.runtime.backends`). Styles without
            sub-networks (built-in filters, reference-based styles) always use torch.
        face_backend: ``"auto"``, ``"mediapipe"`` or ``"facexlib"`` (default: the
            ``PORTRAIT_STYLIZE_FACE_BACKEND`` environment variable, else auto).
        min_face_size: faces smaller than this (pixels, box side) are not stylized separately.
        max_short_side: work on a copy whose short side is at most this many pixels and scale the
            result back, as the official DCT-Net pipeline does (720); ``None`` (default) works at
            full resolution, in tiles.

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


class StylizerCache:
    """The most recently used stylizers (loading weights is the slow part), keyed by the resolved
    style and every :class:`Stylizer` option after defaults and resolution, so one style is
    loaded once however it is asked for (``None`` or the default style's name, ``face_backend=None``
    or the backend it resolves to, ``device=None`` or the device chosen). Thread-safe: web servers
    ask from several threads, and a style being loaded is not loaded again beside it.

    Args:
        size: how many stylizers stay loaded (least recently used dropped first).
    """

    def __init__(self, size: int = 4) -> None:
        self.size = bounded_int("size", size, 1, 1024)
        self._stylizers: OrderedDict[tuple, Stylizer] = OrderedDict()
        self._lock = threading.Lock()
        #: One lock per key being loaded: a slow load (a first download) holds back only the
        #: requests for that same stylizer, never the others.
        self._loading: dict[tuple, threading.Lock] = {}
        #: How many stylizers this cache has loaded (for tests and benchmarks).
        self.loads = 0

    def get(self, name: str | os.PathLike | None = None, **options) -> Stylizer:
        """:func:`load_style` ``(name, **options)``, or the stylizer loaded before for the same key."""
        spec = resolve_spec(name)
        try:
            bound = _STYLIZER_OPTIONS.bind(**options)
        except TypeError as exc:
            raise InvalidArgumentError(f"{exc}; Stylizer options are {', '.join(_STYLIZER_OPTIONS.parameters)}") \
                from None
        bound.apply_defaults()
        settings = dict(bound.arguments)
        settings["device"] = str(resolve_device(settings["device"]))
        settings["face_backend"] = resolve_face_backend(settings["face_backend"])
        key = (repr(spec), tuple(sorted((k, repr(v)) for k, v in settings.items())))
        with self._lock:
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:  # the same stylizer asked twice at once is loaded once
            try:
                with self._lock:
                    if key in self._stylizers:
                        self._stylizers.move_to_end(key)
                        return self._stylizers[key]
                network, spec = load_network(spec)
                stylizer = Stylizer(network, spec, **settings)
                with self._lock:
                    self._stylizers[key] = stylizer
                    self.loads += 1
                    while len(self._stylizers) > self.size:
                        self._stylizers.popitem(last=False)
                return stylizer
            finally:
                with self._lock:
                    if self._loading.get(key) is loading:
                        del self._loading[key]

    def clear(self) -> None:
        """Drop every loaded stylizer."""
        with self._lock:
            self._stylizers.clear()


#: The options a :class:`Stylizer` takes besides its network and spec.
_STYLIZER_OPTIONS = inspect.Signature(list(inspect.signature(Stylizer.__init__).parameters.values())[3:])
#: The one cache behind :func:`cached_stylizer`, :func:`stylize` and the web demo.
STYLIZERS = StylizerCache(4)


def cached_stylizer(name: str | os.PathLike | None = None, **options) -> Stylizer:
    """:func:`load_style` through :data:`STYLIZERS`, which keeps the four most recently used
    stylizers loaded; ``options`` as :func:`load_style` takes them."""
    return STYLIZERS.get(name, **options)


def stylize(image: ImageInput, style: str | None = None, *, device: str | None = None, **kwargs) -> Image.Image:
    """One-call convenience: ``load_style(style)(image, **kwargs)``, reusing recently loaded styles."""
    return cached_stylizer(style, device=device)(image, **kwargs)
