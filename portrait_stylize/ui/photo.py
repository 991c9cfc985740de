"""The photo tab's job: the widgets' raw values in, what to show out (before/after, the mask
overlay, a PNG to download and a status line saying what was really done)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from PIL import Image

from ..errors import PortraitStylizeError
from ..imaging.io import save_image
from ..pipeline import StylizeDetails
from .catalogue import stylizer_for
from .errors import UserError, user_message
from .faces import face_numbers
from .idle import serving
from .overlay import mask_overlay
from .result_files import result_path
from .uploads import open_photo


def parse_region_strengths(text: str, regions: list[str]) -> dict[str, float]:
    """``"lips=0.5, hair=0.8"`` -> ``{"lips": 0.5, "hair": 0.8}`` (``;`` separates too); names
    must be among ``regions`` (the ticked ones), values from 0 to 1.

    Raises:
        UserError: a name that is not ticked, or a value that is not a number from 0 to 1.
    """
    strengths: dict[str, float] = {}
    for item in (text or "").replace(";", ",").split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        try:
            strengths[name] = float(value) if sep else float("nan")
        except ValueError:  # not a number: reported with the range below
            strengths[name] = float("nan")
        if name not in regions:
            raise UserError(f"per-region strength for {name!r}: tick that region first "
                            f"(ticked: {', '.join(regions) or 'none'})")
        if not 0.0 <= strengths[name] <= 1.0:
            raise UserError(f"per-region strength for {name!r} must be a number from 0 to 1, like lips=0.5")
    return strengths


@dataclass
class PhotoResult:
    """What the photo tab shows: before/after, the mask preview, a PNG to download, a status line."""

    before: Image.Image
    after: Image.Image
    overlay: Image.Image
    png: str
    status: str


@serving
def run_photo(path: str | os.PathLike | None, style: str, regions: list[str] | None = None, strength: float = 1.0,
              harmonize: float = 0.0, region_strengths: str = "", face_backend: str | None = None,
              max_side: int | None = None, faces: list[str] | None = None, style_image=None, *,
              keep_results: int | None = None) -> PhotoResult:
    """Stylize an uploaded photo with widget values (regions ``[]``/``None`` = everything, faces
    ``[]``/``None`` = all); ``style_image`` is the reference of a reference-based style (ignored by
    the others). The photo is fitted within ``max_side`` first (``None``: as uploaded); the PNG is
    kept among the newest ``keep_results`` results (``None``: all), as
    :func:`~portrait_stylize.ui.result_files.result_path` keeps them.

    Raises:
        UserError: no usable photo, an unavailable style, or settings the library refuses.
    """
    photo = open_photo(path, max_side)
    st = stylizer_for(style, face_backend)
    regions = list(regions or []) or None
    per_region = parse_region_strengths(region_strengths, regions or [])
    amount = {r: per_region.get(r, strength) for r in regions} if regions else strength
    try:
        after, details = st(photo, regions=regions, strength=amount, harmonize=harmonize, faces=face_numbers(faces),
                            style_image=style_image if st.reference_based else None, return_details=True)
    except PortraitStylizeError as exc:
        raise UserError(user_message(exc)) from None
    png = result_path(f"{st.name}.png", keep_results)
    save_image(after, png)
    return PhotoResult(photo, after, mask_overlay(photo, details), str(png), status_line(style, regions, details))


def status_line(style: str, regions: list[str] | None, details: StylizeDetails) -> str:
    """What was really done: which faces (when faces were looked for), which area, how long."""
    found = len(details.faces)
    stylized = ", ".join(f"face {n}" for n in details.stylized_faces) or "none"
    if not details.face_backend:  # neither regions, faces nor a face pass needed them
        done = "the whole picture stylized"
    elif regions or "head" in details.masks:
        done = f"{found} face(s) found, stylized: {stylized}; " + (f"regions {', '.join(regions)}" if regions
                                                                   else "their heads only")
    else:
        done = f"the whole picture stylized; {found} face(s) found, redone by the face pass: {stylized}"
    return (f"{style}: {done}" + "".join(f"; {reason}" for _, reason in details.skipped)
            + f" · {sum(details.timings.values()):.1f} s")
