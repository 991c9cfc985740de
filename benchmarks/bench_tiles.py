"""Big pictures: does a tiled whole-image pass cost more per pixel than one 512² call?

A DCT-Net-shaped style (random weights) through ``Stylizer.stylize_image``, one 512² call against
a ``--side`` × ``--height`` picture (default 2048²) run each way the package can run it with
``--backend``:

* **Stylizer**: as the pipeline runs it for this backend (``runtime.runners.tiling``): streamed
  by rows in even tiles of 4 × 512 px (``torch`` and ``torch-bf16`` on the CPU:
  :mod:`portrait_stylize.runtime.row_stream`), exact tiles in as few windows as cores of at
  most 2 × 512 px allow, of one shape per picture (the int8 and bf16 OpenVINO graphs), or exact
  tiles in fixed windows of 512 px plus context (the rest);
* **exact tiles, fixed** windows of 512 and 1024 px plus the network's 64 px of context on each
  side, one size whatever the picture's (what every backend did before 2026-12-07);
* **untiled**: the network on the whole picture at once.

Rounds alternate the ways (median of ``--repeats``, after a warm-up; the 512² call timed as the
second of two in a row), with the CPU flags; "per pixel vs one 512² call" > 1 means the big
picture costs more per pixel.

Run:  .venv/bin/python benchmarks/bench_tiles.py [--side 2048] [--height H] [--threads 2] [--backend torch-bf16]
      [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

import portrait_stylize as ps
from portrait_stylize.imaging.tiling import run_tiled
from portrait_stylize.models import TTNStyle
from portrait_stylize.runtime.cpu import cpu_description
from portrait_stylize.runtime.runners import make_runner, tiling

#: How the pipeline cuts the picture (``tiling.CORE_PLANS``), in the table's words.
REFERENCE = "one 512x512 call"
CORE_WAYS = {"tight": "streamed by rows, even", "even": "exact tiles, even", "fixed": "exact tiles, fixed"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=2048, help="the picture's width (and height, unless --height)")
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backend", default="torch-bf16")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = TTNStyle(channel_order="bgr")
    height = args.height or args.side
    image = torch.rand(1, 3, height, args.side)
    spec = ps.StyleSpec(name="bench", kind="local")
    st = ps.Stylizer(model, spec, backend=args.backend)
    print(f"CPU: {cpu_description()}")
    print(f"{args.side}x{height}, backend {args.backend}, {args.threads} threads, median of {args.repeats}\n")

    # The network as the backend runs it, without streaming: for the tiled and untiled ways.
    plain = make_runner(model.head, args.backend, torch.device("cpu"))
    plain = getattr(plain, "net", plain)

    def network(x: torch.Tensor) -> torch.Tensor:
        return model(x, "image", None, {"head": plain})

    ways: dict[str, Callable[[], object]] = {REFERENCE: lambda: st.stylize_image(image[..., :512, :512], None, False)}
    factor, cores = tiling(model.head, args.backend, torch.device("cpu"))
    ways[f"Stylizer: {CORE_WAYS[cores]} {512 * factor}-px cores"] = lambda: st.stylize_image(image, None, False)
    for core in (512, 1024):
        ways[f"exact tiles, fixed {core}-px cores"] = lambda core=core: run_tiled(network, image, core, 64, False,
                                                                             model.tiling_context)
    ways["untiled"] = lambda: network(image)
    times: dict[str, list[float]] = {name: [] for name in ways}
    with torch.inference_mode():
        for run in ways.values():
            run()
        for _ in range(args.repeats):
            for name, run in ways.items():
                if name == REFERENCE:
                    # Timed as the second of two: a user's calls in a row, not one right after a
                    # big pass has cooled the caches (that one took 1.2-1.5x as long).
                    run()
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    single = statistics.median(times[REFERENCE]) / 512**2
    print("| way | seconds | per pixel vs one 512² call |")
    print("|---|---:|---:|")
    for name, seconds in times.items():
        median = statistics.median(seconds)
        pixels = 512**2 if name == REFERENCE else args.side * height
        print(f"| {name} | {median:.3f} | {median / pixels / single:.2f} |")


if __name__ == "__main__":
    main()
