"""Regenerate the README pictures from the public-domain astronaut photo (scikit-image).

Run:  .venv/bin/python docs/make_images.py
"""

from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

import portrait_stylize as ps

SIDE, GAP = 384, 8
OUT = Path(__file__).parent / "images"
# Overlay colours for the region-mask panel.
COLOURS = {"hair": (40, 200, 60), "skin": (255, 190, 140), "eyes": (0, 220, 255), "brows": (140, 70, 10),
           "nose": (230, 0, 230), "lips": (230, 20, 20), "mouth": (20, 20, 230)}


def strip(panels: list[Image.Image], name: str) -> None:
    canvas = Image.new("RGB", (len(panels) * (SIDE + GAP) - GAP, SIDE), "white")
    for i, panel in enumerate(panels):
        canvas.paste(panel.convert("RGB").resize((SIDE, SIDE), Image.LANCZOS), (i * (SIDE + GAP), 0))
    canvas.save(OUT / name, quality=88)
    print(f"wrote {OUT / name}")


def overlay(photo: Image.Image, masks: dict[str, np.ndarray]) -> Image.Image:
    out = np.asarray(photo, np.float32).copy()
    for name, mask in masks.items():
        a = mask[..., None] * 0.6
        out = out * (1 - a) + np.array(COLOURS[name], np.float32) * a
    return Image.fromarray(out.round().astype(np.uint8))


def main() -> None:
    photo = Image.fromarray(data.astronaut())
    strip([photo] + [ps.load_style(name)(photo) for name in ("toon", "sketch")], "builtin-styles.jpg")
    toon = ps.load_style("toon", face_backend="mediapipe")
    picked, details = toon(photo, regions=["hair", "lips", "eyes"], return_details=True)
    _, everything = toon(photo, regions=list(COLOURS), return_details=True)
    strip([photo, toon(photo), picked, overlay(photo, everything.masks)], "regions.jpg")


if __name__ == "__main__":
    main()
