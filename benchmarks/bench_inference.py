"""TTN inference speed (default vs channels_last) and tiled 4K time / peak memory.

Run:  .venv/bin/python benchmarks/bench_inference.py [--repeats 5] [--device cpu]

Both memory formats are timed alternately in the same process (machines here are noisy), and the
4K run happens in a fresh subprocess so its peak RSS is its own. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

from portrait_stylize.models.ttn import TTN

_4K_SCRIPT = """
import json, resource, time, numpy as np, torch
from PIL import Image
from portrait_stylize.models import TTNStyle
from portrait_stylize.pipeline import Stylizer
from portrait_stylize.registry import StyleSpec
torch.manual_seed(0)
img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (2160, 3840, 3), dtype=np.uint8))
st = Stylizer(TTNStyle(), StyleSpec(name="bench", kind="local"), device={device!r})
start = time.perf_counter()
out = st(img)
assert out.size == (3840, 2160), out.size
print(json.dumps({{"seconds": time.perf_counter() - start,
                   "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def measure_4k(device: str = "cpu") -> dict:
    """Stylize a random 3840×2160 image with a TTN style in a fresh subprocess.

    Returns ``{"seconds": ..., "peak_mb": ...}``, the subprocess's own wall time and peak RSS.
    """
    out = subprocess.run([sys.executable, "-c", _4K_SCRIPT.format(device=device)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _time(fn, x: torch.Tensor) -> float:
    if x.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn(x)
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench_formats(size: int, repeats: int, device: torch.device) -> tuple[float, float]:
    torch.manual_seed(0)
    default = TTN().eval().to(device)
    channels_last = TTN().eval().to(device).to(memory_format=torch.channels_last)
    channels_last.load_state_dict(default.state_dict())
    x = torch.rand(1, 3, size, size, device=device) * 2 - 1
    x_cl = x.contiguous(memory_format=torch.channels_last)
    times: dict[str, list[float]] = {"default": [], "channels_last": []}
    with torch.inference_mode():
        default(x), channels_last(x_cl)  # warm-up
        for _ in range(repeats):
            times["default"].append(_time(default, x))
            times["channels_last"].append(_time(channels_last, x_cl))
    return statistics.median(times["default"]), statistics.median(times["channels_last"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-4k", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"device: {device}, torch {torch.__version__}, threads: {torch.get_num_threads()}\n")
    print("| TTN forward | default | channels_last | channels_last / default |")
    print("|---|---|---|---|")
    for size in (512, 1024):
        t_default, t_cl = bench_formats(size, args.repeats, device)
        print(f"| {size}² | {t_default * 1000:.0f} ms | {t_cl * 1000:.0f} ms | {t_cl / t_default:.2f} |")
    if not args.skip_4k:
        report = measure_4k(args.device)
        print("\n| 3840×2160 through Stylizer (TTN, 512² tiles, 64 px overlap) | time | peak RSS |")
        print("|---|---|---|")
        print(f"| whole process | {report['seconds']:.1f} s | {report['peak_mb']:.0f} MB |")


if __name__ == "__main__":
    main()
