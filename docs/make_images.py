"""Regenerate the README pictures from the public-domain astronaut photo (scikit-image).

Run:  .venv/bin/python docs/make_images.py
"""

from pathlib import Path

from PIL import Image
from skimage import data

import portrait_stylize as ps

SIDE, GAP = 384, 8


def main() -> None:
    photo = Image.fromarray(data.astronaut()).resize((SIDE, SIDE), Image.LANCZOS)
    panels = [photo] + [ps.load_style(name)(photo) for name in ("toon", "sketch")]
    canvas = Image.new("RGB", (len(panels) * (SIDE + GAP) - GAP, SIDE), "white")
    for i, panel in enumerate(panels):
        canvas.paste(panel, (i * (SIDE + GAP), 0))
    out = Path(__file__).parent / "images" / "builtin-styles.jpg"
    canvas.save(out, quality=88)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
