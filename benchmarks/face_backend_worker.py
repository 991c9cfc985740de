"""Times ``get_face_backend("mediapipe")`` of whichever ``portrait_stylize`` comes first on ``sys.path``
(detect + parse, median of REPEATS) on the pictures of ``bench_pipeline.py --faces`` (a portrait,
a 512² picture without a face, the 4K group photo), and prints ``{picture: seconds}`` as JSON. ``bench_pipeline.py
--faces-against REV`` runs it on an older revision and on this tree, in turn, so that the backend
as it was (its own code around MediaPipe's solutions) is timed beside the backend as it is.

Uses only what every revision of the package has (``get_face_backend``, ``detect``, ``parse``).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data

from portrait_stylize.faces import get_face_backend

GROUP_PHOTO = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "faces" / "whole" / "10045.png"


def pictures() -> dict[str, np.ndarray]:
    """The pictures ``bench_pipeline.py --faces`` times: a 1024² portrait, a 512² picture without a
    face (what every call on one pays for the search) and the group photo at 4K."""
    found = {"1024x1024 portrait": np.asarray(Image.fromarray(data.astronaut()).resize((1024, 1024), Image.BICUBIC)),
             "512x512 coffee cup, no face": np.asarray(Image.fromarray(data.coffee()).resize((512, 512),
                                                                                           Image.BICUBIC))}
    if GROUP_PHOTO.is_file():
        group = Image.open(GROUP_PHOTO).convert("RGB")
        scale = 3840 / max(group.size)
        found[f"4K group photo ({GROUP_PHOTO.name} scaled {scale:.2f}x)"] = np.asarray(
            group.resize((round(group.width * scale), round(group.height * scale)), Image.BICUBIC))
    return found


def main() -> None:
    threads, repeats = int(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(threads)
    backend = get_face_backend("mediapipe")
    medians = {}
    for label, image in pictures().items():
        backend.parse(image, backend.detect(image))  # warm-up: models loaded
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            backend.parse(image, backend.detect(image))
            times.append(time.perf_counter() - start)
        medians[label] = statistics.median(times)
    print(json.dumps(medians))


if __name__ == "__main__":
    main()
