"""Cost of the face and region machinery next to the bare whole-image network pass.

Run:  .venv/bin/python benchmarks/bench_pipeline.py [--repeats 5] [--threads 2] [--backend auto]
      .venv/bin/python benchmarks/bench_pipeline.py --backend all   # one row per backend

On a 1024² portrait with one face (the public-domain astronaut photo from scikit-image, upscaled),
a DCT-Net-sized style (random weights: speed does not depend on them) runs

* bare: the whole-image network pass only (``Stylizer.stylize_image``, step 3), and
* full: detection, the aligned face pass, parsing and compositing of hair, skin, eyes and lips,

alternating, and prints the median of each, their ratio and the median time of every stage.
"added" is the full pipeline's time outside its own whole-image pass (detection, face network,
parsing, compositing, bookkeeping) relative to the bare pass: the same quantity with the
machine's noise on the whole-image pass taken out.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from PIL import Image
from skimage import data

import portrait_stylize as ps
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
    added = statistics.median(t - w for t, w in zip(times["full"], stages["whole image"], strict=True))
    return {"bare": statistics.median(times["bare"]), "full": statistics.median(times["full"]), "added": added,
            "stages": {k: statistics.median(v) for k, v in stages.items()}, "backend": st.backend,
            "faces": len(details.faces)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backend", default="auto", help="a backend, auto, or all (every backend installed here)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_description()}")
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
          f"{r['added'] / r['bare']:.2f} |")
    print("\n| stage (full pipeline) | ms |")
    print("|---|---:|")
    for stage, seconds in r["stages"].items():
        print(f"| {stage} | {seconds * 1000:.0f} |")


if __name__ == "__main__":
    main()
