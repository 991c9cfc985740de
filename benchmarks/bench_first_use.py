"""First use versus cached use of a style that is converted on first use.

Run:  .venv/bin/python benchmarks/bench_first_use.py [--tflite FILE] [--repeats 3]

Serves the real White-box TFLite release (``../shared/fixtures/weights``) from a local HTTP server
under a registry entry of kind ``url`` (the built-in ``whitebox`` entry with its address replaced),
so the download costs next to nothing and what is measured is verification, conversion, saving
and loading. Each repeat starts from an empty cache: ``load_style`` (first use), then
``load_style`` again in a fresh process state (cached use: read the converted safetensors), then
one 512² image through the style. Prints the CPU and the median seconds of each.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

DEFAULT_TFLITE = Path(__file__).resolve().parents[2] / "shared/fixtures/weights/whitebox_cartoon_gan_dr.tflite"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def measure(tflite: Path, repeats: int) -> dict[str, float]:
    import portrait_stylize as ps
    from portrait_stylize import pipeline
    from portrait_stylize.sources.registry import builtin_registry_path

    entry = json.loads(builtin_registry_path().read_text())["styles"]["whitebox"]
    server, url = serve(tflite.parent)
    times: dict[str, list[float]] = {"first use (download local)": [], "cached use": [],
                                     "first 512² image (torch float32)": []}
    image = (np.random.default_rng(0).random((512, 512, 3)) * 255).astype(np.uint8)
    try:
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as tmp:
                registry = Path(tmp) / "registry.json"
                registry.write_text(json.dumps({"styles": {"whitebox": {**entry, "url": f"{url}/{tflite.name}"}}}))
                os.environ.update(PORTRAIT_STYLIZE_CHECKPOINTS=str(registry), PORTRAIT_STYLIZE_CACHE=f"{tmp}/cache")
                os.environ.pop("HF_HUB_OFFLINE", None)
                pipeline.STYLIZERS.clear()
                start = time.perf_counter()
                ps.load_style("whitebox", device="cpu")
                times["first use (download local)"].append(time.perf_counter() - start)
                start = time.perf_counter()
                st = ps.load_style("whitebox", device="cpu", backend="torch")
                times["cached use"].append(time.perf_counter() - start)
                start = time.perf_counter()
                st(image)
                times["first 512² image (torch float32)"].append(time.perf_counter() - start)
    finally:
        server.shutdown()
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tflite", type=Path, default=DEFAULT_TFLITE)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not args.tflite.is_file():
        raise SystemExit(f"{args.tflite}: not found (the White-box TFLite fixture); pass --tflite FILE")
    from portrait_stylize.runtime.cpu import cpu_description

    print(f"CPU: {cpu_description()}")
    results = measure(args.tflite, args.repeats)
    print(f"\n| step | seconds (median of {args.repeats}) |\n|---|---:|")
    for step, seconds in results.items():
        print(f"| {step} | {seconds:.2f} |")
    print(f"\nfirst use / cached use: {results['first use (download local)'] / results['cached use']:.1f}x")


if __name__ == "__main__":
    main()
