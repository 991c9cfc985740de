"""Peak memory of the AnimeGANv2 generator on a whole picture, which it must see whole (its
norms' statistics and align-corners resizes span the picture): what sets
``portrait_stylize.models.animegan.WHOLE_PIXELS``.

Each size runs in a fresh process (random weights, float32 PyTorch, 2 threads, inference mode),
which prints its peak RSS before and after one forward pass; the difference is what the pass costs.

Run:  .venv/bin/python benchmarks/bench_animegan_memory.py [--sizes 512x512 1024x768 1536x1024]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

_CHILD = """
import resource, sys, time, torch
from portrait_stylize.models.animegan import AnimeGANGenerator
torch.set_num_threads(2)
net = AnimeGANGenerator().eval()
h, w = map(int, sys.argv[1].split("x"))
x = torch.rand(1, 3, h, w) * 2 - 1
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.perf_counter()
with torch.inference_mode():
    net(x)
print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, time.perf_counter() - start)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["512x512", "1024x768", "1536x1024"])
    args = parser.parse_args()
    from portrait_stylize.runtime.cpu import cpu_description

    print(f"CPU: {cpu_description()}; load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"{'size':>10} {'Mpx':>5} {'peak before MB':>15} {'peak after MB':>14} {'pass MB':>8} {'B/px':>6} {'s':>6}")
    for size in args.sizes:
        out = subprocess.run([sys.executable, "-c", _CHILD, size], capture_output=True, text=True, check=True)
        before, after, seconds = map(float, out.stdout.split())
        h, w = map(int, size.split("x"))
        print(f"{size:>10} {h * w / 1e6:5.2f} {before:15.0f} {after:14.0f} {after - before:8.0f} "
              f"{(after - before) * 2**20 / (h * w):6.0f} {seconds:6.1f}")


if __name__ == "__main__":
    main()
