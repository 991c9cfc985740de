"""Everything a front end decides, so that ``app.py`` (and other UIs) stay thin.

Style labels, the regions a face backend can offer, per-region strength parsing, face
thumbnails, mask overlays, size limits, and :func:`run_photo` / :func:`run_video`, which take the
raw values of UI widgets and return what to show. Errors a user can cause come out as
:class:`UserError` with a plain-language message.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import ImageTooLargeError, PortraitStylizeError
from .faces import detect_faces, get_face_backend
from .options import DEFAULT_MAX_PIXELS
from .imaging.io import load_image, save_image
from .loading import list_styles
from .pipeline import Stylizer, StylizeDetails, cached_stylizer
from .sources.registry import StyleSpec, load_registry

logger = logging.getLogger(__name__)

DEFAULT_MAX_SIDE = 1024
#: Clips are bounded by the work they need here, estimated from their first frames before
#: anything else runs (a 2-core Space does a 480p frame in about 0.3 s), and by length.
MAX_VIDEO_WORK_SECONDS = 180.0
MAX_VIDEO_SECONDS = 60.0
NO_PHOTO = "Upload a photo first (or take one with the webcam, or paste one)."
#: What each kind of unusable upload is told: what is wrong, then what to do.
EMPTY_UPLOAD = "This file is empty (0 bytes); the upload may have been cut off. Please upload the photo again."
NOT_A_PICTURE = ("This file is not a picture (a document, or another kind of file renamed .png or .jpg?). "
                 "Please upload a photo: JPEG, PNG, WebP, BMP or TIFF.")
DAMAGED_PICTURE = ("This picture is damaged or incomplete: its data is cut off or corrupt (an interrupted download "
                   "or copy?). Please upload an intact copy of the photo.")
TOO_MANY_PIXELS = (f"This picture has more than {DEFAULT_MAX_PIXELS:,} pixels ({DEFAULT_MAX_PIXELS / 1e6:g} "
                   "megapixels), the most this demo takes. Please downscale it (for example to 4000 pixels on the "
                   "long side) and upload it again.")
#: Overlay colour per region (mask previews).
REGION_COLOURS = {"skin": (255, 190, 140), "brows": (140, 70, 10), "eyes": (0, 220, 255), "nose": (230, 0, 230),
                  "lips": (230, 20, 20), "mouth": (20, 20, 230), "hair": (40, 200, 60), "ears": (255, 150, 0),
                  "neck": (200, 120, 255), "clothes": (90, 90, 255), "background": (120, 120, 120),
                  "head": (255, 220, 0)}  # the chosen faces' heads, when faces are picked without regions


class UserError(PortraitStylizeError):
    """Something the user can fix (bad file, bad setting); the message says what and how."""


#: Where each kind of style comes from on first use, for the style's description line.
FIRST_USE = {"hub": "downloads from the Hugging Face Hub on first use",
             "modelscope": "downloads from ModelScope (two ~6 MB graphs) and converts on first use",
             "url": "downloads from its publisher and converts on first use"}


def is_non_commercial(spec: StyleSpec) -> bool:
    """Whether the style's licence forbids commercial use (Creative Commons ``-nc`` licences)."""
    return "-nc" in spec.licence.lower()


def style_choices() -> list[tuple[str, str]]:
    """``(label, name)`` for every registered style; downloads and non-commercial licences are marked."""
    choices = []
    for s in list_styles():
        notes = [] if s.available_offline else ["downloads on first use"]
        notes += ["non-commercial"] if is_non_commercial(s) else []
        choices.append((f"{s.name} ({', '.join(notes)})" if notes else s.name, s.name))
    return choices


def default_style() -> str:
    return load_registry().default


def style_markdown(name: str) -> str:
    """One line about a style: description, licence (non-commercial ones in capitals), where it comes from."""
    spec = next((s for s in list_styles() if s.name == name), None)
    if spec is None:
        return ""
    where = "ready offline" if spec.available_offline else FIRST_USE.get(spec.kind, "downloads on first use")
    licence = f"**{spec.licence}: NON-COMMERCIAL use only**" if is_non_commercial(spec) else f"**{spec.licence}**"
    source = f" · [source]({spec.source})" if spec.source.startswith("https://") else ""
    return f"{spec.description} · licence {licence}{source} · {where}"


#: The face the style previews show: a bundled crop of the public-domain astronaut photo
#: (``data/calibration/README.md``).
PREVIEW_PORTRAIT = Path(__file__).parent / "data" / "calibration" / "astronaut.jpg"


def style_preview(name: str) -> Image.Image | None:
    """A 192-px preview of ``name`` on a bundled portrait, for styles ready offline (``None`` for
    one that would download first, or cannot run without a reference: nothing is fetched for a
    thumbnail; once the style is on disk it gets one)."""
    spec = next((s for s in list_styles() if s.name == name), None)
    if spec is None or not spec.available_offline or is_reference_style(name):
        return None
    try:
        return _preview(name)
    except PortraitStylizeError as exc:
        logger.warning("no preview for style %r: %s", name, exc)
        return None


@functools.lru_cache(maxsize=64)
def _preview(name: str) -> Image.Image:
    return cached_stylizer(name)(PREVIEW_PORTRAIT)


def is_reference_style(name: str) -> bool:
    """Whether the style takes a style reference image (u2lffm). Styles that are not on disk yet are
    not loaded for this (choosing one in the dropdown must not start a download): False, as for
    unknown or unloadable styles."""
    spec = next((s for s in list_styles() if s.name == name), None)
    if spec is not None and not spec.available_offline:
        return False
    try:
        return cached_stylizer(name, face_backend=None).reference_based
    except PortraitStylizeError:
        return False


def face_backend_choices() -> list[str]:
    """The face backends that can run here: facexlib only once its weights are on disk (it
    downloads them from GitHub, which a Space or an offline machine may not reach)."""
    from .faces.facexlib_backend import weights_present

    return ["auto", "mediapipe"] + (["facexlib"] if weights_present() else [])


def regions_for(face_backend: str | None = None) -> list[str]:
    """Region names the face backend (``None``/``auto`` resolved) can see, in display order.

    Raises:
        UserError: the backend cannot run here (e.g. facexlib without its weights, offline).
    """
    try:
        return list(get_face_backend(face_backend).regions)
    except PortraitStylizeError as exc:
        raise UserError(_plain(exc)) from None


def parse_region_strengths(text: str, regions: list[str]) -> dict[str, float]:
    """``"lips=0.5, hair=0.8"`` -> ``{"lips": 0.5, "hair": 0.8}``; names must be among ``regions``."""
    strengths: dict[str, float] = {}
    for item in (text or "").replace(";", ",").split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        try:
            strengths[name] = float(value) if sep else float("nan")
        except ValueError:
            strengths[name] = float("nan")
        if name not in regions:
            raise UserError(f"per-region strength for {name!r}: tick that region first (ticked: {', '.join(regions) or 'none'})")
        if not 0.0 <= strengths[name] <= 1.0:
            raise UserError(f"per-region strength for {name!r} must be a number from 0 to 1, like lips=0.5")
    return strengths


def fit_within(image: Image.Image, max_side: int | None) -> Image.Image:
    """Downscale so the longest side is at most ``max_side`` (never upscales; ``None``: as it is).

    Raises:
        UserError: ``max_side`` is not a whole number of at least 16 (NaN, negative, text ...).
    """
    if max_side is not None and (isinstance(max_side, bool) or not isinstance(max_side, (int, float))
                                 or not math.isfinite(max_side) or max_side < 16 or max_side != int(max_side)):
        raise UserError(f"the largest side must be a whole number of pixels, at least 16; got {max_side!r}")
    if not max_side or max(image.size) <= max_side:
        return image
    scale = max_side / max(image.size)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.LANCZOS)


def open_photo(path, max_side: int | None = DEFAULT_MAX_SIDE) -> Image.Image:
    """Load an uploaded file with our checks, then fit it within ``max_side``.

    Raises:
        UserError: no file, or one that cannot be used; the message says which kind of problem it
            is (empty, not a picture, damaged, too many pixels) and what to do.
    """
    if path is None:
        raise UserError(NO_PHOTO)
    try:
        image = load_image(path)
    except ImageTooLargeError:
        raise UserError(TOO_MANY_PIXELS) from None
    except PortraitStylizeError as exc:
        raise UserError(_unreadable_upload(path, exc)) from None
    return fit_within(image, max_side)


def _unreadable_upload(path, exc: PortraitStylizeError) -> str:
    """The message for a file that :func:`load_image` could not read: empty, not a picture
    (Pillow does not recognise it), or damaged (recognised, but its data does not decode)."""
    try:
        if os.path.getsize(path) == 0:
            return EMPTY_UPLOAD
        Image.open(path).close()
    except UnidentifiedImageError:
        return NOT_A_PICTURE
    except OSError:  # gone, or not a file
        return f"This file cannot be used: {_plain(exc)}"
    return DAMAGED_PICTURE


def _plain(exc: Exception) -> str:
    """The message without the temporary upload path that starts it."""
    text = str(exc)
    head, sep, tail = text.partition(": ")
    return tail if sep and ("/" in head or "\\" in head) else text


def face_labels(count: int) -> list[str]:
    return [f"face {i + 1}" for i in range(count)]


def face_indices(labels: list[str | int] | None) -> list[int] | None:
    """Face picker values back to 0-based indices: ``"face 2"``, ``"2"`` or ``2`` all mean the
    second face from the left (as numbered in the gallery). ``None`` or ``[]``: all faces.

    Raises:
        UserError: a value that is not a face number.
    """
    if not labels:
        return None
    indices = []
    for label in labels:
        text = str(label).strip().lower().removeprefix("face").strip()
        if not text.isdigit() or int(text) < 1:
            raise UserError(f"Faces: {label!r} is not a face; use the numbers shown under the faces found, "
                            "like 'face 1' or 2 (1 = leftmost).")
        indices.append(int(text) - 1)
    return indices


def face_gallery(path, face_backend: str | None = None, max_side: int | None = DEFAULT_MAX_SIDE):
    """``(thumbnails with captions, labels)`` of the faces in an uploaded photo, left to right."""
    photo = open_photo(path, max_side).convert("RGB")
    faces = detect_faces(photo, backend=face_backend)
    thumbs = []
    for label, face in zip(face_labels(len(faces)), faces):
        x0, y0, x1, y1 = (round(v) for v in _square(face.box, 1.4, photo.size))
        thumbs.append((photo.crop((x0, y0, x1, y1)).resize((128, 128)), label))
    return thumbs, face_labels(len(faces))


def _square(box, factor: float, size: tuple[int, int]):
    x0, y0, x1, y1 = box
    half = max(x1 - x0, y1 - y0) * factor / 2
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return max(cx - half, 0), max(cy - half, 0), min(cx + half, size[0]), min(cy + half, size[1])


def mask_overlay(photo: Image.Image, details: StylizeDetails) -> Image.Image:
    """The photo with each region mask tinted in its colour and face boxes outlined."""
    out = np.asarray(photo.convert("RGB"), np.float32).copy()
    for name, mask in details.masks.items():
        alpha = mask[..., None] * 0.55
        out = out * (1 - alpha) + np.array(REGION_COLOURS[name], np.float32) * alpha
    for i, face in enumerate(details.faces):
        x0, y0, x1, y1 = (int(round(v)) for v in face.box)
        colour = (60, 220, 60) if i in details.stylized_faces else (220, 60, 60)
        out[max(y0, 0):y1, max(x0, 0):max(x0, 0) + 2] = colour
        out[max(y0, 0):y1, max(x1 - 2, 0):x1] = colour
        out[max(y0, 0):max(y0, 0) + 2, max(x0, 0):x1] = colour
        out[max(y1 - 2, 0):y1, max(x0, 0):x1] = colour
    return Image.fromarray(out.round().clip(0, 255).astype(np.uint8))


def _stylizer(style: str, face_backend: str | None) -> Stylizer:
    try:
        return cached_stylizer(style, face_backend=face_backend)
    except PortraitStylizeError as exc:
        raise UserError(f"The style {style!r} is not available: {exc}") from None


@functools.lru_cache(maxsize=1)
def _results_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="portrait-stylize-results-"))


#: Results kept for download; older ones are deleted as new ones arrive (bounded disk use).
MAX_RESULTS = 200


def _result_path(name: str) -> Path:
    """A fresh path for one result, all in one per-process folder (a sub-folder per result keeps
    the download's file name readable); only the newest :data:`MAX_RESULTS` are kept."""
    root = _results_dir()
    folders = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for old in folders[:max(0, len(folders) - MAX_RESULTS + 1)]:
        shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=root)) / name


@dataclass
class PhotoResult:
    """What the photo tab shows: before/after, the mask preview, a PNG to download, a status line."""

    before: Image.Image
    after: Image.Image
    overlay: Image.Image
    png: str
    status: str


def run_photo(path, style: str, regions: list[str] | None = None, strength: float = 1.0, harmonize: float = 0.0,
              region_strengths: str = "", face_backend: str | None = None, max_side: int | None = DEFAULT_MAX_SIDE,
              faces: list[str] | None = None, style_image=None) -> PhotoResult:
    """Stylize an uploaded photo with widget values (regions ``[]``/``None`` = everything);
    ``style_image`` is the reference of a reference-based style (ignored by the others)."""
    photo = open_photo(path, max_side)
    st = _stylizer(style, face_backend)
    regions = list(regions or []) or None
    per_region = parse_region_strengths(region_strengths, regions or [])
    amount = {r: per_region.get(r, strength) for r in regions} if regions else strength
    try:
        after, details = st(photo, regions=regions, strength=amount, harmonize=harmonize, faces=face_indices(faces),
                            style_image=style_image if st.reference_based else None, return_details=True)
    except (PortraitStylizeError, ValueError) as exc:
        raise UserError(_plain(exc)) from None
    png = _result_path(f"{st.name}.png")
    save_image(after, png)
    return PhotoResult(photo, after, mask_overlay(photo, details), str(png), status_line(style, regions, details))


def status_line(style: str, regions: list[str] | None, details: StylizeDetails) -> str:
    """What was really done: which faces (when faces were looked for), which area, how long."""
    found = len(details.faces)
    stylized = ", ".join(label for i, label in enumerate(face_labels(found)) if i in details.stylized_faces) or "none"
    if details.face_backend is None:  # neither regions, faces nor a face pass needed them
        done = "the whole picture stylized"
    elif regions or "head" in details.masks:
        done = f"{found} face(s) found, stylized: {stylized}; " + (f"regions {', '.join(regions)}" if regions
                                                                   else "their heads only")
    else:
        done = f"the whole picture stylized; {found} face(s) found, redone by the face pass: {stylized}"
    return (f"{style}: {done}" + "".join(f"; {reason}" for _, reason in details.skipped)
            + f" · {sum(details.timings.values()):.1f} s")


def video_estimate(path, style: str, regions: list[str] | None = None, strength: float = 1.0,
                   face_backend: str | None = None):
    """Time the first frames of an uploaded clip with these settings: the
    :class:`~portrait_stylize.video.VideoEstimate`, or :class:`UserError` when the clip is
    unreadable, longer than :data:`MAX_VIDEO_SECONDS` or needs more than
    :data:`MAX_VIDEO_WORK_SECONDS` of work here (the message gives the estimate)."""
    from .video import estimate_video

    if path is None:
        raise UserError("Upload a short video clip first.")
    try:
        estimate = estimate_video(path, _stylizer(style, face_backend), regions=list(regions or []) or None,
                                  strength=strength, max_seconds=MAX_VIDEO_SECONDS)
    except (PortraitStylizeError, ValueError) as exc:
        raise UserError(_plain(exc)) from None
    if estimate.seconds > MAX_VIDEO_WORK_SECONDS:
        longest = MAX_VIDEO_WORK_SECONDS / estimate.seconds_per_frame / estimate.fps
        raise UserError(f"This clip is {estimate.describe()}; this demo takes clips of up to "
                        f"{MAX_VIDEO_WORK_SECONDS / 60:g} min of work. Trim it to about {longest:.0f} s, make it "
                        "smaller, or run `portrait-stylize video` on your own machine.")
    return estimate


def describe_video(path, style: str, regions: list[str] | None = None, strength: float = 1.0,
                   face_backend: str | None = None) -> str:
    """The line shown under an uploaded clip before anything starts: the estimate, or why not."""
    if path is None:
        return ""
    try:
        return f"{video_estimate(path, style, regions, strength, face_backend).describe()}."
    except UserError as exc:
        return str(exc)


def run_video(path, style: str, regions: list[str] | None = None, strength: float = 1.0,
              face_backend: str | None = None, progress=None) -> str:
    """Stylize an uploaded clip after checking its estimate (:func:`video_estimate`); returns the
    MP4 path. ``progress(done, total, estimate)`` is told each frame."""
    from .video import stylize_video

    estimate = video_estimate(path, style, regions, strength, face_backend)
    out = _result_path("stylized.mp4")
    report = (lambda done, total: progress(done, total, estimate)) if progress else False
    try:
        stylize_video(path, out, _stylizer(style, face_backend), regions=list(regions or []) or None,
                      strength=strength, max_seconds=MAX_VIDEO_SECONDS, progress=report)
    except (PortraitStylizeError, ValueError) as exc:
        raise UserError(_plain(exc)) from None
    return str(out)

