"""Exact tiling: does the core size matter, and does a big picture cost more per pixel than one
512² call? A 2048² image through a DCT-Net-shaped style's whole-image pass with 512, 768 and
1024-px cores (each plus the network's 64 px of context) and untiled, and a single 512² call,
best of 2 after a warm-up, with the CPU flags; "per pixel vs one 512² call" > 1 means the big
picture costs more per pixel.

Run:  .venv/bin/python benchmarks/bench_tiles.py [--side 2048] [--threads 2] [--backend torch-bf16]
"""

from __future__ import annotations

import argparse
import time

import torch

import portrait_stylize as ps
from portrait_stylize.models import TTNStyle
from portrait_stylize.runtime.cpu import cpu_description


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backend", default="torch-bf16")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = TTNStyle(channel_order="bgr")
    image = torch.rand(1, 3, args.side, args.side)
    print(f"CPU: {cpu_description()}")
    print(f"{args.side}x{args.side}, backend {args.backend}, {args.threads} threads, best of 2\n")

    def best_of_two(st: ps.Stylizer, picture: torch.Tensor) -> float:
        with torch.inference_mode():
            st.stylize_image(picture[..., :600, :600], None, False)  # warm-up: runner, reach
            best = float("inf")
            for _ in range(2):
                start = time.perf_counter()
                st.stylize_image(picture, None, False)
                best = min(best, time.perf_counter() - start)
        return best

    spec = ps.StyleSpec(name="bench", kind="local")
    single = best_of_two(ps.Stylizer(model, spec, tile_size=None, backend=args.backend), image[..., :512, :512])
    print(f"one 512x512 call: {single:.3f} s\n")
    print("| tile core | seconds | vs 512 | per pixel vs one 512² call |")
    print("|---|---:|---:|---:|")
    first = None
    for tile in (512, 768, 1024, None):
        best = best_of_two(ps.Stylizer(model, spec, tile_size=tile, backend=args.backend), image)
        first = first or best
        per_pixel = (best / args.side**2) / (single / 512**2)
        print(f"| {tile or 'untiled'} | {best:.2f} | {first / best:.2f}× | {per_pixel:.2f} |")


if __name__ == "__main__":
    main()
