"""Our runtime against the TFLite runtime on the same White-box cartoonizer, side by side.

Run:  .venv/bin/python benchmarks/bench_peer_tflite.py [--tflite FILE] [--size 512] [--threads 2] [--repeats 9]

On a CPU with wider units, run it through ``benchmarks/isa_cap.py`` to see what an AVX2-only
machine gets: every runtime in the process (PyTorch, ONNX Runtime, OpenVINO and TFLite's
XNNPACK) then chooses its AVX2 kernels::

    .venv/bin/python benchmarks/isa_cap.py -- .venv/bin/python benchmarks/bench_peer_tflite.py

(``ONEDNN_MAX_CPU_ISA=AVX2`` caps PyTorch's oneDNN kernels only.) The script prints the CPU,
its flags and the kernels the runtimes chose, so every table says which machine it is from.

The TFLite model (``ai-edge-litert``, XNNPACK, dynamic-range int8 by default) is converted with
``portrait_stylize.convert.ttn_releases.read_tflite`` so that every runtime executes the same weights on the same
input (a gradient + noise image in [-1, 1], NHWC for TFLite, NCHW for us). Runs alternate between
runtimes after one warm-up each, and the median of each is reported with its speed ratio to
TFLite (> 1 means faster than TFLite) and its PSNR against our float32 PyTorch output (the peak
is the [-1, 1] range, so the error is measured on the scale of 8-bit pixels), on that input and
on a real portrait (``examples/hopper.jpg``): int8 arithmetic is calibrated on photos and loses
more on noise than on pictures.

``--api`` times what a user's call costs instead: the ``.tflite`` converted to a style folder
(``portrait_stylize.convert``), loaded with ``load_style(folder, backend=...)`` for ``auto`` and
each backend, and called on a 512² picture without a face (scikit-image's coffee cup), so the face
search runs and finds nothing, alternating with TFLite's ``invoke()`` on the same picture; it
prints each call's median, its ratio to TFLite and the face search's own median::

    .venv/bin/python benchmarks/bench_peer_tflite.py --api
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from portrait_stylize.convert.ttn_releases import read_tflite, ttn_from_weights
from portrait_stylize.runtime.backends import auto_backend, cpu_candidates
from portrait_stylize.runtime.cpu import cpu_description, has_native_bf16
from portrait_stylize.runtime.runners import make_runner

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TFLITE = REPO.parent / "shared/fixtures/weights/whitebox_cartoon_gan_dr.tflite"


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 2.0) -> float:
    """PSNR in dB between two arrays of the same shape, for values spanning ``peak``."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def test_input(size: int) -> np.ndarray:
    """``(1, size, size, 3)`` float32 in [-1, 1]: smooth gradients plus texture, like a photo."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([xx, yy, (xx + yy) / 2], axis=-1)
    noise = np.random.default_rng(0).normal(0, 0.1, base.shape)
    return np.clip(base * 2 - 1 + noise, -1, 1).astype(np.float32)[None]


def tflite_runner(path: Path, shape: tuple[int, ...], threads: int):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, list(shape))
    interpreter.allocate_tensors()
    output = interpreter.get_output_details()[0]["index"]

    def run(x: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(index, x)
        interpreter.invoke()
        return interpreter.get_tensor(output)

    return run


@contextlib.contextmanager
def torch_threads(threads: int):
    """PyTorch (and the ONNX Runtime sessions made meanwhile) on ``threads`` threads, restored
    afterwards so a caller such as the test suite keeps its own setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def compare(tflite: Path, size: int, threads: int, repeats: int, backends: list[str]) -> list[dict]:
    """Median seconds, speed ratio to TFLite and PSNR to float32 PyTorch for each runtime."""
    with torch_threads(threads):
        return _compare(tflite, size, threads, repeats, backends)


def portrait_input(size: int) -> np.ndarray:
    """``(1, size, size, 3)`` float32 in [-1, 1]: the public-domain Grace Hopper example photo."""
    from PIL import Image

    with Image.open(REPO / "examples" / "hopper.jpg") as image:
        rgb = np.asarray(image.convert("RGB").resize((size, size), Image.BICUBIC), np.float32)
    return (rgb / 127.5 - 1.0)[None]


def _compare(tflite: Path, size: int, threads: int, repeats: int, backends: list[str]) -> list[dict]:
    device = torch.device("cpu")
    net = ttn_from_weights(read_tflite(tflite), str(tflite))
    # Each input as (NHWC for TFLite, NCHW for us); timed on the first, PSNR on both.
    inputs = {}
    for kind, nhwc in (("test", test_input(size)), ("portrait", portrait_input(size))):
        inputs[kind] = (nhwc, torch.from_numpy(nhwc).permute(0, 3, 1, 2).contiguous())
    tflite_run = tflite_runner(tflite, inputs["test"][0].shape, threads)
    runs = {"tflite": lambda kind: tflite_run(inputs[kind][0]).transpose(0, 3, 1, 2)}
    for backend in backends:
        runner = make_runner(net, backend, device)
        runs[backend] = lambda kind, runner=runner: runner(inputs[kind][1]).float().numpy()
    times: dict[str, list[float]] = {name: [] for name in runs}
    with torch.inference_mode():
        references = {kind: net(pair[1]).numpy() for kind, pair in inputs.items()}
        outputs = {kind: {name: run(kind) for name, run in runs.items()} for kind in inputs}  # also the warm-up
        for _ in range(repeats):
            for name, run in runs.items():
                start = time.perf_counter()
                run("test")
                times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    return [{"runtime": name, "ms": medians[name] * 1000, "ratio": medians["tflite"] / medians[name],
             "psnr": psnr(outputs["test"][name], references["test"]),
             "psnr_portrait": psnr(outputs["portrait"][name], references["portrait"])} for name in runs]


def compare_api(tflite: Path, size: int, threads: int, repeats: int, backends: list[str]) -> list[dict]:
    """Median seconds of ``Stylizer(picture)`` per backend (``auto`` first) and of the face search
    alone, against TFLite's ``invoke()``, on a ``size``² picture without a face."""
    import tempfile

    from PIL import Image
    from skimage import data

    import portrait_stylize as ps
    from portrait_stylize.convert.ttn_releases import convert

    picture = Image.fromarray(data.coffee()).resize((size, size), Image.BICUBIC)
    nhwc = (np.asarray(picture, np.float32) / 127.5 - 1.0)[None]
    with torch_threads(threads), tempfile.TemporaryDirectory() as folder:
        convert([tflite], Path(folder) / "whitebox", channel_order="rgb")
        stylizers = {b: ps.load_style(str(Path(folder) / "whitebox"), backend=b) for b in ["auto", *backends]}
        tflite_run = tflite_runner(tflite, nhwc.shape, threads)
        pixels = np.asarray(picture)
        runs = {"tflite": lambda: tflite_run(nhwc),
                "face search": lambda: stylizers["auto"].face_backend.detect(pixels)}
        runs.update({name: (lambda st=st: st(picture)) for name, st in stylizers.items()})
        times: dict[str, list[float]] = {name: [] for name in runs}
        for run in runs.values():
            run()  # warm-up
        for _ in range(repeats):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
        auto = stylizers["auto"].backend
    medians = {name: statistics.median(t) for name, t in times.items()}
    return [{"runtime": f"auto ({auto})" if name == "auto" else name, "ms": medians[name] * 1000,
             "ratio": medians["tflite"] / medians[name]} for name in runs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tflite", type=Path, default=DEFAULT_TFLITE)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--api", action="store_true", help="time Stylizer calls on a picture without a face")
    args = parser.parse_args()
    if not args.tflite.is_file():
        parser.error(f"{args.tflite} not found; pass --tflite with a White-box cartoonizer .tflite file")
    device = torch.device("cpu")
    backends = ["torch", "torch-bf16", *[b for b in cpu_candidates() if b not in ("torch", "torch-bf16")]]
    if args.api:
        rows = compare_api(args.tflite, args.size, args.threads, args.repeats, cpu_candidates())
        print(f"CPU: {cpu_description()}")
        print(f"Stylizer(picture) on a {args.size}x{args.size} picture without a face (face search included), "
              f"{args.threads} threads, median of {args.repeats}\n")
        print("| call | ms | speed vs TFLite invoke() |")
        print("|---|---:|---:|")
        for row in rows:
            print(f"| {row['runtime']} | {row['ms']:.0f} | {row['ratio']:.2f}x |")
        return
    rows = compare(args.tflite, args.size, args.threads, args.repeats, backends)
    with torch_threads(args.threads):
        auto = auto_backend(device)
    print(f"CPU: {cpu_description()}; ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', '(not set)')}")
    print(f"{args.size}x{args.size}, {args.threads} threads, median of {args.repeats}; "
          f"native bf16: {has_native_bf16(device)}; auto backend: {auto}\n")
    print("| runtime | ms | speed vs TFLite | PSNR vs float32 (dB) | on a portrait (dB) |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['runtime']} | {row['ms']:.0f} | {row['ratio']:.2f}x | {row['psnr']:.1f} | "
              f"{row['psnr_portrait']:.1f} |")


if __name__ == "__main__":
    main()
