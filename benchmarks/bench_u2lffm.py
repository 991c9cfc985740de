"""U²-Net + LFFM generator at 1024²: time and peak memory of one inference, in a fresh process.

Run:  .venv/bin/python benchmarks/bench_u2lffm.py [--size 1024] [--threads 2]

Prints the parameter count, the per-stage channel table and a Markdown row with the wall time
and the subprocess's own peak RSS (random weights: cost does not depend on them).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from bench_inference import PEAK_MB

_SCRIPT = PEAK_MB + """
import json, time, torch
from portrait_stylize.models.u2lffm import U2LFFMGenerator
torch.set_num_threads({threads})
torch.manual_seed(0)
g = U2LFFMGenerator().eval()
x = torch.rand(1, 3, {size}, {size}) * 2 - 1
ref = torch.rand(1, 3, 256, 256) * 2 - 1
mask = torch.ones(1, 1, {size}, {size})
start = time.perf_counter()
with torch.inference_mode():
    y, _ = g(x, ref, mask)
assert y.shape == x.shape
print(json.dumps({{"seconds": time.perf_counter() - start,
                   "peak_mb": peak_mb()}}))
"""


def measure(size: int = 1024, threads: int = 2) -> dict:
    """``{"seconds", "peak_mb"}`` of one ``size``² inference (with a 256² reference) in a subprocess."""
    out = subprocess.run([sys.executable, "-c", _SCRIPT.format(size=size, threads=threads)], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from portrait_stylize.models.u2lffm import U2LFFMGenerator, stage_table

    g = U2LFFMGenerator()
    print(f"generator parameters: {sum(p.numel() for p in g.parameters()):,}\n")
    print("| encoder | stage | parameters |\n|---|---|---:|")
    for encoder, stage, params in stage_table(g):
        print(f"| {encoder} | {stage} | {params:,} |")
    parts = (("LFFM", g.fusion), ("decoder", g.decoder), ("reconstruction decoder", g.reconstruction_decoder))
    for name, module in parts:
        print(f"| {name} | | {sum(p.numel() for p in module.parameters()):,} |")
    r = measure(args.size, args.threads)
    print(f"\n| {args.size}² inference ({args.threads} threads) | time | peak RSS |\n|---|---|---|")
    print(f"| U2LFFMGenerator, 256² reference | {r['seconds']:.1f} s | {r['peak_mb']:.0f} MB |")


if __name__ == "__main__":
    main()
