"""Cost of the face and region machinery next to the bare whole-image network pass.

Run:  .venv/bin/python benchmarks/bench_pipeline.py [--repeats 5] [--threads 2] [--backend auto]
      .venv/bin/python benchmarks/bench_pipeline.py --backend all   # one row per backend
      .venv/bin/python benchmarks/bench_pipeline.py --faces         # the face backend: MediaPipe vs ours
      .venv/bin/python benchmarks/bench_pipeline.py --faces-against aaba9db   # ... vs the backend at a revision

On a 1024² portrait with one face (the public-domain astronaut photo from scikit-image, upscaled),
a DCT-Net-sized style (random weights: speed does not depend on them) runs

* bare: the whole-image network pass only (``Stylizer.stylize_image``, step 3), and
* full: detection, the aligned face pass, parsing and compositing of hair, skin, eyes and lips,

alternating, and prints the median of each, their ratio and the median time of every stage.
"added" is the full pipeline's time outside its own whole-image pass (detection, face network,
parsing, compositing, bookkeeping) relative to the bare pass: the same quantity with the
machine's noise on the whole-image pass taken out; its ratio is the median of each round's
added time over the same round's bare pass (a busy spell slows both).

``--faces`` times the ``mediapipe`` face backend alone (detection with its mesh, then parsing with
selfie segmentation) on the same portrait and on a 4K group photo (``../shared/fixtures``'
``faces/whole/10045.png``, 3 faces, scaled to 3840 px), twice: with the graphs of
``faces/mediapipe_graphs.py`` (PyTorch) and, while ``mediapipe`` 0.10.21 is installed, with
MediaPipe's own solutions in their place (the backend as it was before it stopped needing
MediaPipe), alternating, and prints the medians and their ratio; and on four frames of the
portrait detected together (``detect_many``, as video does), per frame.

``--faces-against REVISION`` times the face backend as it was at a git revision (its own code
around MediaPipe's solutions: ``aaba9db`` is the last one before the face models were converted)
beside this tree's, each in fresh processes in turn (``face_backend_worker.py``); it needs
``mediapipe`` 0.10.21 for the old revision.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from face_backend_worker import pictures as face_pictures
from PIL import Image
from skimage import data

import portrait_stylize as ps
from portrait_stylize.faces import mediapipe_graphs as graphs
from portrait_stylize.faces.mediapipe_backend import MediapipeBackend
from portrait_stylize.imaging.io import pil_to_tensor
from portrait_stylize.models import TTNStyle
from portrait_stylize.runtime.backends import cpu_candidates
from portrait_stylize.runtime.cpu import cpu_description

REGIONS = ["hair", "skin", "eyes", "lips"]


def measure(repeats: int, backend: str) -> dict:
    """Median seconds of the bare and full pipelines, and per-stage medians of the full one."""
    torch.manual_seed(0)
    photo = Image.fromarray(data.astronaut()).resize((1024, 1024), Image.BICUBIC)
    st = ps.Stylizer(TTNStyle(channel_order="bgr"), ps.StyleSpec(name="bench", kind="local"), backend=backend,
                     face_backend="mediapipe")
    pixels = pil_to_tensor(photo)

    @torch.inference_mode()
    def bare():
        return st.stylize_image(pixels, None, False)

    full = lambda: st(photo, regions=REGIONS, return_details=True)[1]  # noqa: E731
    bare(), full()  # warm-up: model copies, MediaPipe graphs
    times: dict[str, list[float]] = {"bare": [], "full": []}
    stages: dict[str, list[float]] = {}
    for _ in range(repeats):
        for name, run in (("bare", bare), ("full", full)):
            start = time.perf_counter()
            details = run()
            times[name].append(time.perf_counter() - start)
        for stage, seconds in details.timings.items():
            stages.setdefault(stage, []).append(seconds)
    added = [t - w for t, w in zip(times["full"], stages["whole image"], strict=True)]
    return {"bare": statistics.median(times["bare"]), "full": statistics.median(times["full"]),
            "added": statistics.median(added),
            # Each round's added time over the same round's bare pass: a busy spell slows both.
            "added_share": statistics.median(a / b for a, b in zip(added, times["bare"], strict=True)),
            "stages": {k: statistics.median(v) for k, v in stages.items()}, "backend": st.backend,
            "faces": len(details.faces)}


class SolutionsBackend(MediapipeBackend):
    """The backend on MediaPipe 0.10.21's solutions, configured as it configured them before
    ``faces/mediapipe_graphs.py`` replaced them (same passes, same region code around them)."""

    def __init__(self) -> None:
        import mediapipe as mp

        super().__init__()
        s = mp.solutions
        self._detectors = {graphs.FULL_RANGE: s.face_detection.FaceDetection(model_selection=1),
                           graphs.SHORT_RANGE: s.face_detection.FaceDetection(model_selection=0)}
        self._mesh = s.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                                          min_detection_confidence=0.3)
        self._selfie = s.selfie_segmentation.SelfieSegmentation(model_selection=0)

    def _detections(self, images, detector):
        found = []
        for image in images:
            detections = self._detectors[detector].process(np.ascontiguousarray(image)).detections or []
            boxes = [(b.xmin, b.ymin, b.xmin + b.width, b.ymin + b.height)
                     for b in (d.location_data.relative_bounding_box for d in detections)]
            points = [[(k.x, k.y) for k in d.location_data.relative_keypoints] for d in detections]
            found.append(graphs.Detections(np.array(boxes, np.float32).reshape(-1, 4),
                                           np.array(points, np.float32).reshape(-1, graphs.NUM_KEYPOINTS, 2),
                                           np.array([d.score[0] for d in detections], np.float32)))
        return found

    def _meshes(self, crops):
        results = [self._mesh.process(crop).multi_face_landmarks for crop in crops]
        return [None if not r else np.array([(p.x, p.y, p.z) for p in r[0].landmark], np.float32) for r in results]

    def _person(self, image):
        return self._selfie.process(np.ascontiguousarray(image)).segmentation_mask


def measure_faces(repeats: int) -> list[dict]:
    """Per picture: median seconds of ``detect`` and ``parse`` of the face backend with our graphs and,
    while MediaPipe is installed, with its solutions (alternating). A picture may be several video
    frames, detected together (``detect_many``); its times are then per frame."""
    pictures = {label: [image] for label, image in face_pictures().items()}
    # Video: the portrait moving 8 px a frame, four frames detected together, per frame.
    portrait = pictures["1024x1024 portrait"][0]
    pictures["4 video frames of the portrait, together (per frame)"] = [
        np.ascontiguousarray(np.roll(portrait, 8 * i, axis=1)) for i in range(4)]
    backends = {"ours": MediapipeBackend()}
    if importlib.util.find_spec("mediapipe") is not None:
        backends["mediapipe"] = SolutionsBackend()
    rows = []
    for label, frames in pictures.items():
        times: dict[str, dict[str, list[float]]] = {name: {"detect": [], "parse": []} for name in backends}
        for backend in backends.values():  # warm-up: models loaded, graphs initialised
            backend.parse(frames[0], backend.detect(frames[0]))
        for _ in range(repeats):
            for name, backend in backends.items():
                start = time.perf_counter()
                found = backend.detect_many(frames)
                middle = time.perf_counter()
                for frame, faces in zip(frames, found):
                    backend.parse(frame, faces)
                times[name]["detect"].append((middle - start) / len(frames))
                times[name]["parse"].append((time.perf_counter() - middle) / len(frames))
        rows.append({"picture": label, "faces": len(found[0]), **{
            f"{name} {stage}": statistics.median(values) for name, stages in times.items()
            for stage, values in stages.items()}})
    return rows


def print_faces(repeats: int, threads: int) -> None:
    rows = measure_faces(repeats)
    print(f"face backend mediapipe: detect (passes, small-face search, mesh) + parse (selfie segmentation, "
          f"regions); PyTorch "
          f"{threads} threads, median of {repeats}\n")
    if "mediapipe detect" not in rows[0]:
        print("(mediapipe is not installed: MediaPipe's own solutions cannot be timed beside ours)\n")
    print("| picture | faces | stage | MediaPipe 0.10.21 solutions ms | ours (PyTorch) ms | ours / MediaPipe |")
    print("|---|---:|---|---:|---:|---:|")
    for row in rows:
        for stage in ("detect", "parse", "total"):
            ours = row["ours parse"] + row["ours detect"] if stage == "total" else row[f"ours {stage}"]
            theirs = (row["mediapipe parse"] + row["mediapipe detect"] if stage == "total"
                      else row[f"mediapipe {stage}"]) if "mediapipe detect" in row else None
            print(f"| {row['picture']} | {row['faces']} | {stage} | "
                  f"{'-' if theirs is None else f'{theirs * 1000:.0f}'} | {ours * 1000:.0f} | "
                  f"{'-' if theirs is None else f'{ours / theirs:.2f}'} |")


def measure_against(revision: str, threads: int, repeats: int, rounds: int = 3) -> dict[str, dict[str, float]]:
    """Median seconds per picture of ``face_backend_worker.py`` on ``revision``'s package (``git archive``
    into a temporary folder) and on this tree's, each in fresh processes, in turn, ``rounds`` times."""
    repo = Path(__file__).resolve().parents[1]
    worker = [sys.executable, str(repo / "benchmarks" / "face_backend_worker.py"), str(threads), str(repeats)]
    results: dict[str, dict[str, list[float]]] = {revision: {}, "this tree": {}}
    with tempfile.TemporaryDirectory() as old:
        archive = subprocess.run(["git", "-C", str(repo), "archive", revision, "portrait_stylize"], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
        for _ in range(rounds):
            for name, root in ((revision, old), ("this tree", str(repo))):
                out = subprocess.run(worker, capture_output=True, text=True, check=True,
                                     env={**os.environ, "PYTHONPATH": root}).stdout
                for label, seconds in json.loads(out.splitlines()[-1]).items():
                    results[name].setdefault(label, []).append(seconds)
    return {name: {label: statistics.median(v) for label, v in by_picture.items()}
            for name, by_picture in results.items()}


def print_against(revision: str, threads: int, repeats: int) -> None:
    results = measure_against(revision, threads, repeats)
    print(f"face backend mediapipe, detect + parse, as of {revision} and as of this tree (fresh processes in turn, "
          f"{threads} threads, median of 3 x {repeats})\n")
    print(f"| picture | {revision} ms | this tree ms | this tree / {revision} |")
    print("|---|---:|---:|---:|")
    for label, old in results[revision].items():
        new = results["this tree"][label]
        print(f"| {label} | {old * 1000:.0f} | {new * 1000:.0f} | {new / old:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backend", default="auto", help="a backend, auto, or all (every backend installed here)")
    parser.add_argument("--faces", action="store_true",
                        help="time the mediapipe face backend alone: MediaPipe's solutions vs our PyTorch graphs")
    parser.add_argument("--faces-against", metavar="REVISION",
                        help="time the face backend as of a git revision (e.g. aaba9db, before the face models were "
                             "converted) beside this tree's, each in fresh processes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_description()}")
    if args.faces_against:
        print_against(args.faces_against, args.threads, args.repeats)
        return
    if args.faces:
        print_faces(args.repeats, args.threads)
        return
    if args.backend == "all":
        print(f"1024x1024 portrait, 1 face, regions {', '.join(REGIONS)}, {args.threads} threads, "
              f"median of {args.repeats}\n")
        print("| backend | whole-image pass ms | full pipeline ms |")
        print("|---|---:|---:|")
        for backend in ["torch", "torch-bf16", *[b for b in cpu_candidates() if b not in ("torch", "torch-bf16")]]:
            r = measure(args.repeats, backend)
            print(f"| {backend} | {r['bare'] * 1000:.0f} | {r['full'] * 1000:.0f} |")
        return
    r = measure(args.repeats, args.backend)
    print(f"1024x1024, {r['faces']} face, backend {r['backend']}, {args.threads} threads, median of {args.repeats}\n")
    print("| pipeline | ms | / bare |")
    print("|---|---:|---:|")
    print(f"| bare whole-image pass | {r['bare'] * 1000:.0f} | 1.00 |")
    print(f"| full: faces + regions ({', '.join(REGIONS)}) | {r['full'] * 1000:.0f} | {r['full'] / r['bare']:.2f} |")
    print(f"| added by faces + regions (full minus its whole-image pass) | {r['added'] * 1000:.0f} | "
          f"{r['added_share']:.2f} |")
    print("\n| stage (full pipeline) | ms |")
    print("|---|---:|")
    for stage, seconds in r["stages"].items():
        print(f"| {stage} | {seconds * 1000:.0f} |")


if __name__ == "__main__":
    main()
