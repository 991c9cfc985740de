"""What the demo offers to choose: styles (labels, one-line descriptions, previews, whether one
takes a style reference), face backends and the regions each can see, and the stylizer for a choice."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from PIL import Image

from ..errors import PortraitStylizeError
from ..faces import get_face_backend
from ..faces.facexlib_backend import weights_present
from ..loading import list_styles
from ..pipeline import Stylizer, cached_stylizer
from ..sources.registry import StyleSpec, load_registry
from .errors import UserError, user_message

logger = logging.getLogger(__name__)

#: Where each kind of style comes from on first use, for the style's description line.
FIRST_USE = {"hub": "downloads from the Hugging Face Hub on first use",
             "modelscope": "downloads from ModelScope (two ~6 MB graphs) and converts on first use",
             "url": "downloads from its publisher and converts on first use",
             "github": "downloads from GitHub (one ~9 MB checkpoint) and converts on first use"}
#: The face the style previews show: a bundled crop of the public-domain astronaut photo
#: (``data/calibration/README.md``).
PREVIEW_PORTRAIT = Path(__file__).parents[1] / "data" / "calibration" / "astronaut.jpg"


def is_non_commercial(spec: StyleSpec) -> bool:
    """Whether the style's licence forbids commercial use (Creative Commons ``-nc`` licences)."""
    return "-nc" in spec.licence.lower()


def _spec(name: str) -> StyleSpec | None:
    return next((s for s in list_styles() if s.name == name), None)


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
    spec = _spec(name)
    if spec is None:
        return ""
    where = "ready offline" if spec.available_offline else FIRST_USE.get(spec.kind, "downloads on first use")
    licence = f"**{spec.licence}: NON-COMMERCIAL use only**" if is_non_commercial(spec) else f"**{spec.licence}**"
    source = f" · [source]({spec.source})" if spec.source.startswith("https://") else ""
    return f"{spec.description} · licence {licence}{source} · {where}"


def style_preview(name: str) -> Image.Image | None:
    """A 192-px RGB preview of ``name`` on :data:`PREVIEW_PORTRAIT`, for styles ready offline
    (``None`` for one that would download first, or cannot run without a reference: nothing is
    fetched for a thumbnail; once the style is on disk it gets one). Made once per style."""
    spec = _spec(name)
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
    spec = _spec(name)
    if spec is not None and not spec.available_offline:
        return False
    try:
        return cached_stylizer(name).reference_based
    except PortraitStylizeError:
        return False


def stylizer_for(style: str, face_backend: str | None) -> Stylizer:
    """The loaded stylizer for the chosen style and face backend (``None``: the default one).

    Raises:
        UserError: the style cannot be loaded here (unknown, not downloadable offline, broken).
    """
    try:
        return cached_stylizer(style, face_backend=face_backend)
    except PortraitStylizeError as exc:
        raise UserError(f"The style {style!r} is not available: {exc}") from None


def face_backend_choices() -> list[str]:
    """The face backends that can run here: facexlib only once its weights are on disk (it
    downloads them from GitHub, which a Space or an offline machine may not reach)."""
    return ["auto", "mediapipe"] + (["facexlib"] if weights_present() else [])


def regions_for(face_backend: str | None = None) -> list[str]:
    """Region names the face backend (``None``/``auto`` resolved) can see, in display order.

    Raises:
        UserError: the backend cannot run here (e.g. facexlib without its weights, offline).
    """
    try:
        return list(get_face_backend(face_backend).regions)
    except PortraitStylizeError as exc:
        raise UserError(user_message(exc)) from None
