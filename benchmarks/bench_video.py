"""Video speed: frames per second at 480p, the frame loop as it was (face detection on every frame,
frames tiled like still images) against ``stylize_video`` (faces detected every 4th frame and
tracked in between, frames up to 720p in one pass), side by side in one run.

Run:  .venv/bin/python benchmarks/bench_video.py [--frames 24] [--threads 2]

The clip is made here from ``examples/astronaut.jpg`` (a slow zoom, 480x528 like the clip in the
issue report); the style is a random DCT-Net-shaped TTN with a face pass, with regions hair and
skin, so every stage runs. Also times the network on batches of 1, 2 and 4 frames (is batching
frames worth it here?) and the estimate the app shows before it starts. Prints the CPU model and
flags with the figures.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import torch
from PIL import Image

import portrait_stylize as ps
from portrait_stylize.models import TTNStyle
from portrait_stylize.runtime.cpu import cpu_description
from portrait_stylize.video import TemporalState, estimate_video, stylize_video

REPO = Path(__file__).resolve().parents[1]
SIZE = (480, 528)
REGIONS = ["hair", "skin"]


def make_clip(path: Path, frames: int) -> None:
    photo = Image.open(REPO / "examples" / "astronaut.jpg").convert("RGB")
    writer = imageio_ffmpeg.write_frames(str(path), SIZE, fps=12, macro_block_size=1)
    writer.send(None)
    for i in range(frames):
        zoom = 1.0 + 0.01 * i
        w, h = round(photo.width / zoom), round(photo.height / zoom)
        left, top = (photo.width - w) // 2, (photo.height - h) // 2
        crop = photo.crop((left, top, left + w, top + h))
        writer.send(np.ascontiguousarray(np.asarray(crop.resize(SIZE, Image.BICUBIC))))
    writer.close()


def frame_loop(clip: Path, stylizer: ps.Stylizer) -> int:
    """The loop before: every frame a still image (tiled when over a tile, faces detected)."""
    reader = imageio_ffmpeg.read_frames(str(clip))
    meta = next(reader)
    state, count = TemporalState(), 0
    for raw in reader:
        frame = np.frombuffer(raw, np.uint8).reshape(meta["size"][1], meta["size"][0], 3)
        stylizer(frame, regions=REGIONS, temporal=state)
        count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    stylizer = ps.Stylizer(TTNStyle(channel_order="bgr"), ps.StyleSpec(name="bench", kind="local"),
                           face_backend="mediapipe")
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        make_clip(clip, args.frames)
        frame_loop(clip, stylizer)  # warm-up: graphs, runners
        start = time.perf_counter()
        frames = frame_loop(clip, stylizer)
        before = time.perf_counter() - start
        estimate = estimate_video(clip, stylizer, regions=REGIONS)
        start = time.perf_counter()
        info = stylize_video(clip, Path(tmp) / "out.mp4", stylizer, regions=REGIONS, progress=False)
        after = time.perf_counter() - start
    batches = network_per_frame(stylizer, (1, 2, 4))
    print(f"CPU: {cpu_description()}")
    print(f"{SIZE[0]}x{SIZE[1]}, {frames} frames, backend {stylizer.backend}, {args.threads} threads\n")
    print("| frame loop | s per frame | frames per s | speed-up |")
    print("|---|---:|---:|---:|")
    print(f"| before: every frame a still image (tiled, faces detected) | {before / frames:.2f} | "
          f"{frames / before:.2f} | 1.00× |")
    print(f"| `stylize_video` (untiled, faces every 4th frame, encode included) | {after / info.frames:.2f} | "
          f"{info.frames / after:.2f} | {before / frames / (after / info.frames):.2f}× |")
    print(f"\nestimate from the first frames: {estimate.seconds_per_frame:.2f} s a frame, "
          f"{estimate.seconds / after:.2f}x the real time")
    print("\n| network only (float32), frames per batch | s per frame | vs one at a time |")
    print("|---:|---:|---:|")
    for size, seconds in batches.items():
        print(f"| {size} | {seconds:.3f} | {batches[1] / seconds:.2f}× |")


def network_per_frame(stylizer: ps.Stylizer, sizes: tuple[int, ...], repeats: int = 3) -> dict[int, float]:
    """Seconds per frame of the style network alone on batches of ``sizes`` frames (untiled)."""
    frames = torch.rand(max(sizes), 3, SIZE[1], SIZE[0])
    result = {}
    with torch.inference_mode():
        for size in sizes:
            stylizer.model(frames[:size])
            start = time.perf_counter()
            for _ in range(repeats):
                stylizer.model(frames[:size])
            result[size] = (time.perf_counter() - start) / repeats / size
    return result


if __name__ == "__main__":
    main()
