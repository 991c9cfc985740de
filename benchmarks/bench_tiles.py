"""Exact tiling: does the core size matter? A 2048² image through a DCT-Net-shaped style's
whole-image pass with 512, 768 and 1024-px cores (each plus the network's 64 px of context) and
untiled, best of 2 after a warm-up, with the CPU flags.

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
    print("| tile core | seconds | vs 512 |")
    print("|---|---:|---:|")
    first = None
    for tile in (512, 768, 1024, None):
        st = ps.Stylizer(model, ps.StyleSpec(name="bench", kind="local"), tile_size=tile, backend=args.backend)
        with torch.inference_mode():
            st.stylize_image(image[..., :600, :600], None, False)  # warm-up: runner, reach
            best = float("inf")
            for _ in range(2):
                start = time.perf_counter()
                st.stylize_image(image, None, False)
                best = min(best, time.perf_counter() - start)
        first = first or best
        print(f"| {tile or 'untiled'} | {best:.2f} | {first / best:.2f}× |")


if __name__ == "__main__":
    main()
