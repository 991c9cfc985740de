"""Soak the web demo: many mixed requests on loopback, a few at a time, the server's memory sampled.

``python app.py`` starts offline (no network, MediaPipe faces) in a temporary home; clients call
its public ``/stylize`` endpoint as users and hostile users would: built-in styles on photos of
256-640 px (the public-domain examples, resized, some grey or with alpha), with and without
regions and picked faces, 15 % bad uploads (empty, not a picture, truncated) and 5 % learned
styles that cannot be downloaded offline. Every answer is checked: a good request must return a
PNG of its own photo's size (no result given to the wrong request), a bad one a user message
(Gradio's error), nothing else. The server's RSS (with its children) is sampled every 0.25 s.

Printed: the CPU and load, answers by kind, latencies (all, and the first at each picture size),
and RSS: the highest during the warm-up (the first ``--warmup`` requests: two requests' working
set once everything is loaded), the highest in each quarter of the rest (flat = no growth), at
the end, and after ``--idle`` seconds without requests; "unexpected" must be 0.

Run:  .venv/bin/python benchmarks/soak_app.py [--requests 1000] [--concurrency 2] [--warmup 100] [--idle 20]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from portrait_stylize.runtime.cpu import cpu_description  # noqa: E402

STYLES = ("toon", "sketch", "comic", "watercolour", "poster")
REGIONS = ("skin", "hair", "lips", "eyes", "brows", "background")
#: A Hub style the registry lists but this offline machine cannot fetch: it must fail cleanly.
OFFLINE_STYLE = "anime"


@dataclass
class Request:
    photo: Path
    style: str
    regions: list[str]
    faces: list[str]
    max_side: int
    #: The result's size; None: a user error is the right answer (and with picked faces it may be,
    #: when the picture has fewer faces than the number picked).
    expected: tuple[int, int] | None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fit(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(size))
    return (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))


def make_requests(folder: Path, count: int, seed: int) -> list[Request]:
    """``count`` seeded requests, their photos written to ``folder``."""
    rng = np.random.default_rng(seed)
    sources = [Image.open(REPO / "examples" / name) for name in ("astronaut.jpg", "group.jpg", "hopper.jpg")]
    bad = {"empty.png": b"", "text.png": b"not a picture at all", "cut.jpg": None}
    buffer = io.BytesIO()
    sources[0].save(buffer, "JPEG")
    bad["cut.jpg"] = buffer.getvalue()[:2000]
    for name, data in bad.items():
        (folder / name).write_bytes(data)
    requests = []
    for i in range(count):
        draw = rng.random()
        style = OFFLINE_STYLE if draw < 0.05 else str(rng.choice(STYLES))
        regions = sorted(rng.choice(REGIONS, int(rng.integers(1, 3)), replace=False).tolist()) \
            if rng.random() < 0.4 else []
        faces = [f"face {int(rng.integers(1, 3))}"] if rng.random() < 0.15 else []
        max_side = 1024
        if 0.05 <= draw < 0.20:
            requests.append(Request(folder / list(bad)[i % len(bad)], style, regions, [], max_side, None))
            continue
        source = sources[int(rng.integers(len(sources)))]
        side = int(rng.integers(256, 641))
        size = _fit(source.size, side)
        picture = source.resize(size)
        mode = rng.choice(["RGB", "L", "RGBA"], p=[0.8, 0.1, 0.1])
        path = folder / f"p{i:05d}.{'png' if mode == 'RGBA' else 'jpg'}"
        picture.convert(str(mode)).save(path)
        requests.append(Request(path, style, regions, faces, max_side, None if style == OFFLINE_STYLE else size))
    return requests


class Sampler(threading.Thread):
    """The process's RSS with its children's, every ``period`` seconds, as ``(time, bytes)``."""

    def __init__(self, pid: int, period: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.process, self.period, self.samples = psutil.Process(pid), period, []
        self.stop = threading.Event()

    def rss(self) -> int:
        try:
            return sum(p.memory_info().rss for p in [self.process, *self.process.children(recursive=True)])
        except psutil.Error:
            return 0

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append((time.perf_counter(), self.rss()))
            time.sleep(self.period)


def start_server(home: Path) -> tuple[subprocess.Popen, str]:
    registry = home / "checkpoints.json"
    registry.write_text(json.dumps({"format_version": 1, "styles": {OFFLINE_STYLE: {
        "kind": "hub", "repo_id": "someone/dctnet-anime", "revision": "0" * 40, "filename": "model.safetensors",
        "sha256": "0" * 64, "licence": "apache-2.0", "description": "a Hub style not cached here"}}}))
    port = _free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "HF_HUB_OFFLINE": "1",
           "PORTRAIT_STYLIZE_FACE_BACKEND": "mediapipe", "PORTRAIT_STYLIZE_CHECKPOINTS": str(registry),
           "HF_HOME": str(home / "hf"), "GRADIO_TEMP_DIR": str(home / "uploads"), "TMPDIR": str(home)}
    server = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    start = time.perf_counter()
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)
            return server, url
        except OSError:
            if server.poll() is not None or time.perf_counter() - start > 180:
                raise SystemExit("the app did not start") from None
            time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--idle", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from gradio_client import Client, handle_file

    print(f"CPU: {cpu_description()}; load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "photos").mkdir()
        requests = make_requests(home / "photos", args.requests, args.seed)
        server, url = start_server(home)
        uploads = home / "uploads"
        sampler = Sampler(server.pid)
        sampler.start()
        clients = threading.local()
        outcomes: list[tuple[str, float, bool, str]] = [("", 0.0, False, "")] * len(requests)
        seen_sizes: set[tuple[int, int]] = set()
        lock = threading.Lock()
        warm_at = [0.0]
        done = [0]

        def call(index: int) -> None:
            if not hasattr(clients, "client"):
                clients.client = Client(url, verbose=False)
            request = requests[index]
            with lock:
                first = request.expected is not None and request.expected not in seen_sizes
                seen_sizes.add(request.expected)
            start = time.perf_counter()
            try:
                _, _, png, _ = clients.client.predict(
                    handle_file(str(request.photo)), request.style, request.regions, 1.0, 0.0, "", "mediapipe",
                    request.max_side, request.faces, None, api_name="/stylize")
                seconds = time.perf_counter() - start
                size = Image.open(png).size
                kind = ("ok" if size == request.expected else
                        "unexpected" if request.expected is not None else "unexpected: a result for a bad request")
                detail = "" if kind == "ok" else f"{request.photo.name}: got {size}, expected {request.expected}"
            except Exception as exc:  # every failure is classified and counted
                seconds = time.perf_counter() - start
                message = str(exc)
                user_error = (type(exc).__name__ == "AppError" and "Traceback" not in message
                              and str(uploads) not in message)  # never the server's upload path
                fewer_faces = bool(request.faces) and "there is no face" in message
                kind = "refused" if user_error and (request.expected is None or fewer_faces) else "unexpected"
                detail = f"{request.photo.name} ({request.style}, {request.regions}, {request.faces}): {message[:200]}"
            outcomes[index] = (kind, seconds, first, detail)
            with lock:
                done[0] += 1
                if done[0] == args.warmup:
                    warm_at[0] = time.perf_counter()

        run_start = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(call, range(len(requests))))
        run_end = time.perf_counter()
        time.sleep(args.idle)
        idle_rss = sampler.rss()
        sampler.stop.set()
        server.terminate()
        server.wait(timeout=60)

    kinds = {}
    for kind, *_ in outcomes:
        kinds[kind] = kinds.get(kind, 0) + 1
    print(f"{len(requests)} requests, {args.concurrency} at a time, {run_end - run_start:.0f} s: "
          + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())))
    for kind, _, _, detail in outcomes:
        if kind.startswith("unexpected"):
            print(f"  unexpected: {detail}")
    good = [seconds for kind, seconds, first, _ in outcomes if kind == "ok"]
    firsts = [seconds for kind, seconds, first, _ in outcomes if kind == "ok" and first]
    repeats = [seconds for kind, seconds, first, _ in outcomes if kind == "ok" and not first]
    for name, values in (("all good answers", good), ("first at a picture size", firsts), ("repeats", repeats)):
        if values:
            q = statistics.quantiles(values, n=20) if len(values) > 1 else [values[0]] * 19
            print(f"  {name}: {len(values)}, median {statistics.median(values):.2f} s, p95 {q[18]:.2f} s, "
                  f"max {max(values):.2f} s")
    mb = 1 << 20
    during_warmup = [rss for t, rss in sampler.samples if run_start <= t < warm_at[0]]
    after = [(t, rss) for t, rss in sampler.samples if warm_at[0] <= t <= run_end]
    busy = max(during_warmup)
    quarters = [max((rss for t, rss in after if warm_at[0] + q * (run_end - warm_at[0]) / 4 <= t
                     <= warm_at[0] + (q + 1) * (run_end - warm_at[0]) / 4), default=0) for q in range(4)]
    print(f"RSS: highest during the warm-up ({args.warmup} requests) {busy / mb:.0f} MB; highest in each quarter of "
          f"the rest: {', '.join(f'{q / mb:.0f}' for q in quarters)} MB ({max(quarters) / busy:.2f}x the warm-up's); "
          f"at the end {after[-1][1] / mb:.0f} MB, after {args.idle:g} s idle {idle_rss / mb:.0f} MB "
          f"(right after the warm-up {after[0][1] / mb:.0f} MB)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
