"""The exported TTN graph with and without its two rewrites, side by side in one run: the output
convolution as a sub-pixel convolution (``runtime/subpixel.py``) and the stride-2 convolutions'
pads inside ``Conv`` (``models/ttn.py``, ``_PaddedConv``). The White-box network, 512², each
graph backend run as ``make_runner`` builds it, alternating between the two graphs, median of
``--repeats``, with the CPU line; "as exported before" patches the two rewrites out of the export
for that column only (and quantizes into its own temporary cache).

Run:  .venv/bin/python benchmarks/bench_graph_rewrites.py [--tflite FILE] [--repeats 9]

and through ``benchmarks/isa_cap.py --level LEVEL --`` for the narrower CPU classes.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F

from portrait_stylize.convert.ttn_releases import read_tflite, ttn_from_weights
from portrait_stylize.models import ttn
from portrait_stylize.runtime import onnx_export, quantize
from portrait_stylize.runtime.backends import cpu_candidates
from portrait_stylize.runtime.cpu import cpu_description
from portrait_stylize.runtime.runners import make_runner

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TFLITE = REPO.parent / "shared/fixtures/weights/whitebox_cartoon_gan_dr.tflite"
GRAPH_BACKENDS = ("onnx", "onnx-int8", "openvino", "openvino-bf16", "openvino-int8")


def _pad_then_conv(x, weight, bias, stride, before, after):
    """The export as it was: an explicit ``Pad`` node before a ``Conv`` without pads."""
    return F.conv2d(F.pad(x, (before, after, before, after)), weight, bias, stride)


@contextlib.contextmanager
def export_as_before(cache: Path):
    """Exports without the two rewrites, int8 graphs quantized into ``cache``."""
    with mock.patch.object(onnx_export, "with_subpixel_output", lambda net: net), \
            mock.patch.object(ttn._PaddedConv, "apply", _pad_then_conv), \
            mock.patch.object(quantize, "cache_dir", lambda: cache):
        yield


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tflite", type=Path, default=DEFAULT_TFLITE)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    if not args.tflite.is_file():
        parser.error(f"{args.tflite} not found; pass --tflite with a White-box cartoonizer .tflite file")
    torch.set_num_threads(args.threads)
    net = ttn_from_weights(read_tflite(args.tflite), str(args.tflite)).eval()
    x = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(0)) * 2 - 1
    device = torch.device("cpu")
    backends = [b for b in GRAPH_BACKENDS if b in cpu_candidates(net)]
    with tempfile.TemporaryDirectory() as before_cache, tempfile.TemporaryDirectory() as now_cache:
        runners = {}
        for backend in backends:
            with export_as_before(Path(before_cache)):
                before = make_runner(net, backend, device)
            with mock.patch.object(quantize, "cache_dir", lambda: Path(now_cache)):
                runners[backend] = (before, make_runner(net, backend, device))
        times = {backend: ([], []) for backend in backends}
        with torch.inference_mode():
            for backend, pair in runners.items():
                outputs = [run(x) for run in pair]  # warm-up (compiles)
                assert (outputs[0] - outputs[1]).abs().max() < 1e-2, backend
            for _ in range(args.repeats):
                for backend, pair in runners.items():
                    for run, kept in zip(pair, times[backend]):
                        start = time.perf_counter()
                        run(x)
                        kept.append(time.perf_counter() - start)
    print(f"CPU: {cpu_description()}")
    print(f"White-box network, 512x512, {args.threads} threads, median of {args.repeats}\n")
    print("| backend | as exported before, ms | with the rewrites, ms | speed-up |")
    print("|---|---:|---:|---:|")
    for backend, (before, now) in times.items():
        b, n = statistics.median(before) * 1000, statistics.median(now) * 1000
        print(f"| {backend} | {b:.0f} | {n:.0f} | {b / n:.2f}x |")


if __name__ == "__main__":
    main()
