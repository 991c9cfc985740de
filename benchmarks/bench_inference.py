"""TTN inference speed (default vs channels_last) and tiled 4K time / peak memory.

Run:  .venv/bin/python benchmarks/bench_inference.py [--repeats 5] [--device cpu] [--group A.jpg B.jpg]

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

#: ``peak_mb()`` for the measuring subprocesses: the process's own peak RSS. On Linux it reads
#: VmHWM, because ``ru_maxrss`` survives ``exec``: a child of a big process (the test suite) would
#: report its parent's peak.
PEAK_MB = """
import resource
def peak_mb():
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""

_4K_SCRIPT = PEAK_MB + """
import json, sys, time, numpy as np, torch
from PIL import Image
from portrait_stylize.models import TTNStyle
from portrait_stylize.pipeline import Stylizer
from portrait_stylize.sources.registry import StyleSpec
args = json.loads(sys.argv[1])
if args["photos"]:
    # A group photo at 4K: the photos side by side at 2926 px high, fitted to 3840 px wide.
    parts = [Image.open(p).convert("RGB") for p in args["photos"]]
    parts = [im.resize((round(im.width * 2926 / im.height), 2926), Image.LANCZOS) for im in parts]
    img = Image.new("RGB", (sum(im.width for im in parts), 2926))
    for i, im in enumerate(parts):
        img.paste(im, (sum(p.width for p in parts[:i]), 0))
    img = img.resize((3840, 2926), Image.LANCZOS)
    del parts
else:
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (2160, 3840, 3), dtype=np.uint8))
torch.manual_seed(0)
st = Stylizer(TTNStyle(), StyleSpec(name="bench", kind="local"), device=args["device"], backend=args["backend"])
start = time.perf_counter()
out, details = st(img, regions=args["regions"], harmonize=args["harmonize"], return_details=True)
assert out.size == img.size, out.size
print(json.dumps({"seconds": time.perf_counter() - start, "size": list(img.size), "faces": len(details.faces),
                  "peak_mb": peak_mb()}))
"""


def measure_4k(device: str = "cpu", photos: list[str] | None = None, regions: list[str] | None = None,
               harmonize: float = 0.0, backend: str = "auto") -> dict:
    """Stylize one 4K picture with a TTN style (face pass included) in a fresh subprocess.

    Args:
        photos: photos composed side by side into a 3840×2926 group picture; ``None``: random
            3840×2160 pixels (no faces).
        regions, harmonize: passed to the :class:`~portrait_stylize.pipeline.Stylizer` call.
        backend: the stylizer's backend (default ``auto``).

    Returns ``{"seconds", "size", "faces", "peak_mb"}``: the call's wall time, the picture's size,
    the faces found and the subprocess's peak RSS (imports and the input picture included).
    """
    args = json.dumps({"device": device, "photos": [str(p) for p in photos or []], "regions": regions,
                       "harmonize": harmonize, "backend": backend})
    out = subprocess.run([sys.executable, "-c", _4K_SCRIPT, args], capture_output=True, text=True, check=True).stdout
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
    parser.add_argument("--group", nargs="+", metavar="PHOTO",
                        help="photos composed side by side into a 4K group picture (also measured with regions)")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"device: {device}, torch {torch.__version__}, threads: {torch.get_num_threads()}\n")
    print("| TTN forward | default | channels_last | channels_last / default |")
    print("|---|---|---|---|")
    for size in (512, 1024):
        t_default, t_cl = bench_formats(size, args.repeats, device)
        print(f"| {size}² | {t_default * 1000:.0f} ms | {t_cl * 1000:.0f} ms | {t_cl / t_default:.2f} |")
    if not args.skip_4k:
        print("\n| 4K through Stylizer (TTN, face pass, 512² tiles) | faces | time | peak RSS |")
        print("|---|---|---|---|")
        cases = [("random 3840×2160, no faces", None, None, 0.0)]
        if args.group:
            cases += [("group photo 3840×2926", args.group, None, 0.0),
                      ("group photo, regions hair,skin,lips, harmonize 0.5", args.group, ["hair", "skin", "lips"], 0.5)]
        for label, photos, regions, harmonize in cases:
            r = measure_4k(args.device, photos, regions, harmonize)
            print(f"| {label} | {r['faces']} | {r['seconds']:.1f} s | {r['peak_mb']:.0f} MB |")


if __name__ == "__main__":
    main()
