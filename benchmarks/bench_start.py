"""Start-up: the command line on one photo and the web demo, warm and cold.

Warm: the files are in the page cache (run just before). Cold: the page cache is dropped first
(``/proc/sys/vm/drop_caches``, as root; otherwise the cold rows are left out), as after a reboot
or a fresh install, where reading PyTorch's and Gradio's libraries from disk dominates. Each is
the median of ``--repeats`` runs, in fresh processes, offline:

* ``portrait-stylize --help``;
* ``portrait-stylize run examples/astronaut.jpg -o OUT.png`` (the default style, one 512-px photo);
* ``python app.py``: process start to the first HTTP 200, then the first ``/stylize`` call
  (toon, the same photo) and a second one.

Run:  .venv/bin/python benchmarks/bench_start.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from portrait_stylize.runtime.cpu import cpu_description  # noqa: E402

CLI = [sys.executable, "-m", "portrait_stylize"]
PHOTO = REPO / "examples" / "astronaut.jpg"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def drop_page_cache() -> bool:
    """Whether the page cache could be dropped (root on Linux)."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def seconds(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=ENV, cwd=REPO)
    return time.perf_counter() - start


def app_times() -> tuple[float, float, float]:
    """``(to the first HTTP 200, the first /stylize call, a second one)`` of a fresh ``python app.py``."""
    from gradio_client import Client, handle_file

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    server = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env={**ENV, "GRADIO_SERVER_PORT": str(port)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        ready = time.perf_counter() - start
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        calls = []
        for _ in range(2):
            start = time.perf_counter()
            client.predict(handle_file(str(PHOTO)), "toon", [], 1.0, 0.0, "", "mediapipe", 512, [], None,
                           api_name="/stylize")
            calls.append(time.perf_counter() - start)
        return ready, calls[0], calls[1]
    finally:
        server.terminate()
        server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"CPU: {cpu_description()}; load average: {os.getloadavg()[0]:.2f}\n")
    print("| what | warm s | cold s |")
    print("|---|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        runs = {"`portrait-stylize --help`": [*CLI, "--help"],
                "`portrait-stylize run` one 512-px photo": [*CLI, "run", str(PHOTO), "-o", f"{tmp}/out.png", "-q"]}
        for name, command in runs.items():
            warm = statistics.median(seconds(command) for _ in range(args.repeats))
            cold = [seconds(command) for _ in range(args.repeats) if drop_page_cache()]
            print(f"| {name} | {warm:.1f} | {statistics.median(cold):.1f} |" if cold else f"| {name} | {warm:.1f} | |")
    warm = [app_times() for _ in range(args.repeats)]
    cold = [app_times() for _ in range(args.repeats) if drop_page_cache()]
    for i, name in enumerate(("`python app.py` to the first HTTP 200", "its first `/stylize` call", "its second")):
        row = f"| {name} | {statistics.median(t[i] for t in warm):.1f} |"
        print(row + (f" {statistics.median(t[i] for t in cold):.1f} |" if cold else " |"))


if __name__ == "__main__":
    main()
