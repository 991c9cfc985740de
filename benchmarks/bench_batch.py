"""Batch runs: one process against two launched processes on the same folder, side by side, and
what each file costs beyond the style itself.

Run:  .venv/bin/python benchmarks/bench_batch.py [--files 16] [--side 512]

The folder is made here from ``examples/`` (``--files`` portraits, ``--side`` px on their long
side); the style is a random DCT-Net-shaped TTN saved as a style folder (its speed is a trained
one's). Timed, each as its own command as a user runs it:

* ``portrait-stylize batch`` alone (one process, all cores);
* ``accelerate launch --multi_gpu --num_processes 2 -m portrait_stylize batch`` (torchrun under
  the hood; on a machine without GPUs both processes share the CPU, one core each on 2 cores);
* the same single-process command again on the finished folder: every result exists, so this is
  the fixed cost of a run (start-up, style load) plus the resume check;
* the style alone in one process on the same pictures (``Stylizer`` calls, no files): the rest
  of the single-process time, per file, is what reading, writing and the batch add.

Prints the CPU model and flags with the figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

import portrait_stylize as ps
from portrait_stylize.models import TTNStyle
from portrait_stylize.models.serialization import save_style
from portrait_stylize.runtime.cpu import cpu_description

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def make_folder(folder: Path, files: int, side: int) -> list[Path]:
    folder.mkdir(parents=True)
    names = ("astronaut.jpg", "hopper.jpg", "group.jpg")
    sources = [Image.open(REPO / "examples" / name).convert("RGB") for name in names]
    paths = []
    for i in range(files):
        image = sources[i % len(sources)].rotate(2 * i)
        scale = side / max(image.size)
        path = folder / f"photo{i:03d}.jpg"
        image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS).save(path, quality=92)
        paths.append(path)
    return paths


def timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[:6])} ... failed:\n{result.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--side", type=int, default=512)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = make_folder(tmp / "photos", args.files, args.side)
        torch.manual_seed(0)
        style = tmp / "style"
        save_style(TTNStyle(channel_order="bgr", name="bench"), style)
        batch = ["batch", str(tmp / "photos"), "--style", str(style), "--backend", "torch", "-q"]
        one = timed([str(BIN / "portrait-stylize"), *batch, "-o", f"{tmp / 'one'}/"], env)
        launch = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                  "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "portrait_stylize"]
        two = timed([*launch, *batch, "-o", f"{tmp / 'two'}/"], env)
        fixed = timed([str(BIN / "portrait-stylize"), *batch, "-o", f"{tmp / 'one'}/"], env)  # all done: resume only
        assert len(list((tmp / "two").iterdir())) == args.files
        stylizer = ps.load_style(str(style), backend="torch")
        pictures = [Image.open(p).convert("RGB") for p in photos]
        stylizer(pictures[0])  # warm-up, as the batch's first file is
        start = time.perf_counter()
        for picture in pictures:
            stylizer(picture)
        alone = time.perf_counter() - start
        shutil.rmtree(tmp / "one")
    per_file = (one - fixed) / args.files
    print(f"CPU: {cpu_description()}")
    print(f"{args.files} portraits, {args.side} px long side, random DCT-Net-shaped TTN, backend torch\n")
    print("| run | s | per file | vs one process |")
    print("|---|---:|---:|---:|")
    print(f"| `portrait-stylize batch` (1 process, {os.cpu_count()} threads) | {one:.1f} | {one / args.files:.2f} | "
          "1.00× |")
    print(f"| `accelerate launch --num_processes 2 ... batch` (1 thread each) | {two:.1f} | {two / args.files:.2f} | "
          f"{one / two:.2f}× |")
    print(f"| fixed cost of a run (start-up, style load, resume check of {args.files} done files) | {fixed:.1f} | | |")
    print(f"\nper file in the single-process run (minus the fixed cost): {per_file:.3f} s; the style alone on the "
          f"same pictures: {alone / args.files:.3f} s; reading, writing and the batch add "
          f"{per_file - alone / args.files:.3f} s a file ({(per_file * args.files / alone - 1) * 100:.0f} %)")


if __name__ == "__main__":
    main()
