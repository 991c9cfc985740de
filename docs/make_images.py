"""Regenerate the README and docs pictures from the public-domain photos in ``examples/``.

Run:  .venv/bin/python docs/make_images.py
"""

from pathlib import Path

import numpy as np
from PIL import Image

import portrait_stylize as ps
from portrait_stylize.imaging.quality import DEGRADATIONS, degrade

SIDE, GAP = 384, 8
OUT = Path(__file__).parent / "images"
EXAMPLES = Path(__file__).parents[1] / "examples"
# Overlay colours for the region-mask panel.
COLOURS = {"hair": (40, 200, 60), "skin": (255, 190, 140), "eyes": (0, 220, 255), "brows": (140, 70, 10),
           "nose": (230, 0, 230), "lips": (230, 20, 20), "mouth": (20, 20, 230)}


def strip(panels: list[Image.Image], name: str) -> None:
    """Panels side by side, each scaled to SIDE pixels high."""
    panels = [p.convert("RGB").resize((round(p.width * SIDE / p.height), SIDE), Image.LANCZOS) for p in panels]
    canvas = Image.new("RGB", (sum(p.width + GAP for p in panels) - GAP, SIDE), "white")
    x = 0
    for panel in panels:
        canvas.paste(panel, (x, 0))
        x += panel.width + GAP
    canvas.save(OUT / name, quality=88)
    print(f"wrote {OUT / name}")


def overlay(photo: Image.Image, masks: dict[str, np.ndarray]) -> Image.Image:
    out = np.asarray(photo, np.float32).copy()
    for name, mask in masks.items():
        a = mask[..., None] * 0.6
        out = out * (1 - a) + np.array(COLOURS[name], np.float32) * a
    return Image.fromarray(out.round().astype(np.uint8))


#: The built-in styles, in the gallery's row order.
BUILTINS = ("toon", "sketch", "comic", "watercolour", "poster")
#: Learned styles the gallery shows once they are on this machine (nothing is downloaded for it).
LEARNED_KINDS = ("modelscope", "url", "github", "hub")
THUMB = 256


def gallery_styles() -> list[str]:
    """The built-in styles, then every learned style already downloaded here (a reference-based
    style is left out: its look depends on the reference given)."""
    learned = [s.name for s in ps.list_styles() if s.kind in LEARNED_KINDS and s.available_offline]
    return [*BUILTINS, *(name for name in learned if not ps.load_style(name).reference_based)]


def gallery(photos: list[Image.Image], path: Path, styles: list[str]) -> None:
    """One row per style (the photos first), one column per photo, THUMB pixels high."""
    rows = [photos] + [[ps.load_style(style)(p) for p in photos] for style in styles]
    widths = [round(p.width * THUMB / p.height) for p in photos]
    canvas = Image.new("RGB", (sum(widths) + GAP * (len(photos) - 1), len(rows) * (THUMB + GAP) - GAP), "white")
    for r, row in enumerate(rows):
        x = 0
        for image, width in zip(row, widths):
            canvas.paste(image.convert("RGB").resize((width, THUMB), Image.LANCZOS), (x, r * (THUMB + GAP)))
            x += width + GAP
    canvas.save(path, quality=88)
    print(f"wrote {path}: {', '.join(styles)}")


def main() -> None:
    photo = Image.open(EXAMPLES / "astronaut.jpg").convert("RGB")
    strip([photo] + [ps.load_style(name)(photo) for name in BUILTINS], "builtin-styles.jpg")
    hopper = Image.open(EXAMPLES / "hopper.jpg").convert("RGB")
    gallery([photo, hopper], OUT.parent / "gallery.png", gallery_styles())
    hopper = hopper.resize((512, round(512 * hopper.height / hopper.width)), Image.LANCZOS)
    gallery([degrade(hopper, how) for how in ("sharp", *DEGRADATIONS)], OUT / "degraded.jpg", list(BUILTINS))
    toon = ps.load_style("toon", face_backend="mediapipe")
    picked, details = toon(photo, regions=["hair", "lips", "eyes"], return_details=True)
    _, everything = toon(photo, regions=list(COLOURS), return_details=True)
    strip([photo, toon(photo), picked, overlay(photo, everything.masks)], "regions.jpg")
    examples = [Image.open(EXAMPLES / name).convert("RGB") for name in ("hopper.jpg", "group.jpg")]
    strip([overlay(p, toon(p, regions=list(COLOURS), return_details=True)[1].masks) for p in examples],
          "region-masks.jpg")


if __name__ == "__main__":
    main()
