"""Do the built-in styles keep the face? Landmarks found on the result against the photo's.

Issue 29: on low-quality face crops the built-ins lost the person (eyes turned into black holes
or vanished, mouths smeared, ``poster`` painted skin one flat colour). This measures it offline
with the MediaPipe face stack, which ships inside its wheel: the fixture face crops (512 px) and
selfies (scaled to 256 px on the short side) are stylized by each built-in style through the
ordinary pipeline (``load_style(name)(picture)``), clean and on each degraded copy of
:data:`portrait_stylize.imaging.quality.DEGRADATIONS` (4x down and up, blur sigma 2, JPEG 20) and on
a copy 4x down and up then saved as JPEG 20 (a face cut from a phone photo of a group), and the
face detector runs on every result. Per style and copy it prints

* **found**: the share of the photos' faces found again on the result (a face whose box holds
  the photo's nose tip, :func:`portrait_stylize.evaluation.metrics.landmark_error`);
* **lm**: their mean 5-landmark error over the photo's distance between the eyes (that function);
* **features**: the mean error of the face mesh's points on the features (eye, brow and lip
  contours and the irises: 102 of its 478 points) on the same scale: whether the eyes, brows and
  mouth are drawn where they are in the photo.

The reference landmarks are always the clean photo's, so the row ``photo`` (no style: the
degraded copy itself) shows what the detector alone loses on each copy. Lower errors and a found
share of 1 mean the result still shows the same face in the same place.

Run:  .venv/bin/python benchmarks/bench_builtin_faces.py [--threads 2] [--fixtures ../shared/fixtures]
      [--styles toon sketch] [--sets cropped selfies]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import portrait_stylize as ps
from portrait_stylize.evaluation.metrics import landmark_error
from portrait_stylize.faces.face import Face
from portrait_stylize.faces.mesh_topology import FACEMESH_LEFT_EYE, FACEMESH_LIPS, FACEMESH_RIGHT_EYE
from portrait_stylize.imaging.quality import DEGRADATIONS, degrade
from portrait_stylize.models.builtin import BUILTIN_STYLES
from portrait_stylize.runtime.cpu import cpu_description

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
#: The sets: folder under ``faces/`` and the short side the photos are scaled to.
SETS = {"cropped": 512, "selfies": 256}
COPIES = ("sharp", *DEGRADATIONS, "down4+jpeg20")
#: Mesh points on the features: eye and lip contours, the brows (as ``mediapipe_backend``
#: outlines them) and the irises (points 468-477).
FEATURE_POINTS = np.array(sorted({i for edge in FACEMESH_LEFT_EYE | FACEMESH_RIGHT_EYE | FACEMESH_LIPS for i in edge}
                                 | {70, 63, 105, 66, 107, 55, 65, 52, 53, 46, 300, 293, 334, 296, 336, 285, 295, 282,
                                    283, 276} | set(range(468, 478))))


def copy_of(photo: Image.Image, how: str) -> Image.Image:
    """:func:`degrade`, where ``"a+b"`` applies ``a`` then ``b``."""
    for step in how.split("+"):
        photo = degrade(photo, step)
    return photo


@dataclass
class Tally:
    """Faces asked for, found again, and the errors of those found."""

    asked: int = 0
    landmark: list[float] = field(default_factory=list)
    features: list[float] = field(default_factory=list)

    def row(self) -> str:
        found = len(self.landmark) / max(self.asked, 1)
        lm = f"{np.mean(self.landmark):.3f}" if self.landmark else "-"
        features = f"{np.mean(self.features):.3f}" if self.features else "-"
        return f"{found:.2f} / {lm} / {features}"


def photos(fixtures: Path, folder: str, side: int) -> list[tuple[str, Image.Image]]:
    """The set's photos, scaled (Lanczos) to ``side`` px on the short side."""
    out = []
    for path in sorted((fixtures / "faces" / folder).iterdir()):
        if path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            continue
        photo = ps.load_image(path).convert("RGB")
        factor = side / min(photo.size)
        out.append((path.name, photo.resize((round(photo.width * factor), round(photo.height * factor)),
                                            Image.LANCZOS)))
    return out


def main_face(faces: list[Face]) -> Face | None:
    """The largest face (each fixture photo shows one person)."""
    return max(faces, key=lambda f: f.size, default=None)


def score(reference: Face, found: list[Face]) -> tuple[float, float] | None:
    """``(landmark error, feature mesh error)`` of the face in ``found`` that is the reference's (its box
    holds the reference's nose tip; the nearest such), both over the reference's inter-eye
    distance; ``None`` when there is none."""
    error = landmark_error(reference.landmarks, found)
    if error is None:
        return None
    eyes = float(np.linalg.norm(reference.landmarks[0] - reference.landmarks[1]))
    (nx, ny) = reference.landmarks[2]
    candidates = [f for f in found if f.box[0] <= nx <= f.box[2] and f.box[1] <= ny <= f.box[3]]
    best = min(candidates, key=lambda f: float(np.linalg.norm(f.landmarks - reference.landmarks, axis=1).mean()))
    if best.mesh is None or reference.mesh is None:
        return error, float("nan")
    moved = best.mesh[FEATURE_POINTS] - reference.mesh[FEATURE_POINTS]
    return error, float(np.linalg.norm(moved, axis=1).mean()) / eyes


def evaluate(fixtures: Path, styles: list[str], sets: dict[str, int] = SETS,
             copies: tuple[str, ...] = COPIES) -> dict[tuple[str, str, str], Tally]:
    """``{(set, style or "photo", copy): Tally}``."""
    loaded = {name: ps.load_style(name, device="cpu") for name in styles}
    tallies: dict[tuple[str, str, str], Tally] = {}
    for folder, side in sets.items():
        for _, photo in photos(fixtures, folder, side):
            reference = main_face(ps.detect_faces(photo, backend="mediapipe"))
            if reference is None:
                continue
            for how in copies:
                copy = copy_of(photo, how)
                results = {"photo": copy, **{name: style(copy) for name, style in loaded.items()}}
                for name, result in results.items():
                    tally = tallies.setdefault((folder, name, how), Tally())
                    tally.asked += 1
                    got = score(reference, ps.detect_faces(result, backend="mediapipe"))
                    if got is not None:
                        tally.landmark.append(got[0])
                        tally.features.append(got[1])
    return tallies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fixtures", type=Path, default=FIXTURES)
    parser.add_argument("--styles", nargs="*", default=list(BUILTIN_STYLES))
    parser.add_argument("--sets", nargs="*", default=list(SETS), choices=list(SETS))
    args = parser.parse_args()
    sets = {name: SETS[name] for name in args.sets}
    torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_description()}")
    start = time.perf_counter()
    tallies = evaluate(args.fixtures, args.styles, sets)
    for folder, side in sets.items():
        print(f"\n{folder} ({side} px), found / landmark error / feature error (over the inter-eye distance)\n")
        print("| style | " + " | ".join(COPIES) + " |")
        print("|---|" + "---:|" * len(COPIES))
        for name in ["photo", *args.styles]:
            cells = [tallies[(folder, name, how)].row() if (folder, name, how) in tallies else "-" for how in COPIES]
            print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
