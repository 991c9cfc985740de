"""The exact guided filter on the CPU in bands of rows against the same filter on the whole
picture at once, side by side in one run: a TTN's filter (radius 1, 3 channels, float32) at
several picture sizes, alternating twice, the better of two medians of ``--repeats`` calls,
with the CPU line; the outputs are checked to be bit-identical.

Run:  .venv/bin/python benchmarks/bench_guided_filter.py [--threads 2] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from portrait_stylize.imaging import ops
from portrait_stylize.runtime.cpu import cpu_description

SIZES = ((512, 512), (1024, 1024), (2048, 2048), (2160, 3840))


def timed(run, repeats: int) -> tuple[float, torch.Tensor]:
    """Median seconds of ``run()`` over ``repeats`` calls after a warm-up, and its output."""
    out = run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    banded_values = ops.BAND_VALUES
    print(f"CPU: {cpu_description()}")
    print(f"guided filter, radius 1, 3 channels, float32, {args.threads} threads, "
          f"better of two medians of {args.repeats}\n")
    print("| picture | whole picture ms | in bands ms | speed-up | identical |")
    print("|---|---:|---:|---:|---|")
    with torch.inference_mode():
        for height, width in SIZES:
            guide = torch.rand(1, 3, height, width, generator=generator) * 2 - 1
            src = torch.rand(1, 3, height, width, generator=generator) * 2 - 1
            results = {}
            for _ in range(2):  # alternate, so that neither always runs on a warmer machine
                for name, values in (("whole", 1 << 62), ("bands", banded_values)):
                    ops.BAND_VALUES = values
                    seconds, out = timed(lambda g=guide, s=src: ops.guided_filter(g, s, 1, 5e-3), args.repeats)
                    results.setdefault(name, ([], out))[0].append(seconds)
            ops.BAND_VALUES = banded_values
            whole, bands = (min(results[name][0]) * 1000 for name in ("whole", "bands"))
            same = torch.equal(results["whole"][1], results["bands"][1])
            print(f"| {width}x{height} | {whole:.1f} | {bands:.1f} | {whole / bands:.2f}x | {same} |")


if __name__ == "__main__":
    main()
