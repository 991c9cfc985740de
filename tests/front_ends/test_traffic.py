"""A day of real traffic on the web demo's functions: memory that stays flat and comes back when
idle. (`benchmarks/soak_app.py` runs a thousand requests against the real server:
docs/reliability.md.)"""

from __future__ import annotations

import threading
import time

import numpy as np
import psutil
import pytest
from PIL import Image

from portrait_stylize import ui
from portrait_stylize.ui import idle

from helpers import REPO


def test_the_last_request_to_end_gives_freed_memory_back(monkeypatch, tmp_path):
    """Two requests at once: memory goes back once, when the second ends, not in between."""
    released, events = [], []
    monkeypatch.setattr(idle, "release_freed_memory", lambda: released.append(time.perf_counter()))
    gate = threading.Event()

    @idle.serving
    def request(name: str, wait: bool) -> str:
        events.append(("start", name))
        if wait:
            gate.wait(10)
        events.append(("end", name))
        return name

    slow = threading.Thread(target=request, args=("slow", True))
    slow.start()
    while ("start", "slow") not in events:
        time.sleep(0.001)
    assert request("quick", False) == "quick" and released == []  # "slow" still runs
    gate.set()
    slow.join()
    assert len(released) == 1 and events[-1] == ("end", "slow")

    @idle.serving
    def failing():
        raise ValueError("a bad request")

    with pytest.raises(ValueError):
        failing()
    assert len(released) == 2  # a failed request ends too


@pytest.mark.slow
def test_memory_stays_flat_over_varied_requests(tmp_path, monkeypatch):
    """After a warm-up over the styles and options, 60 more requests at new picture sizes (the
    app's mix: regions, picked faces, bad uploads) grow RSS by under 15 %, and idle it comes back."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rng = np.random.default_rng(0)
    sources = [Image.open(REPO / "examples" / name).convert("RGB") for name in ("astronaut.jpg", "group.jpg")]
    styles = ("toon", "sketch", "comic", "watercolour", "poster")

    def request(i: int) -> None:
        side = int(rng.integers(256, 641))
        path = tmp_path / f"p{i}.jpg"
        picture = sources[i % 2]
        picture.resize((side, round(side * picture.height / picture.width))).save(path)
        regions = [["lips"], ["hair", "skin"], None][i % 3]
        faces = ["face 1"] if i % 4 == 0 else None
        if i % 7 == 0:
            path.write_bytes(b"not a picture")
        try:
            ui.run_photo(str(path), styles[i % len(styles)], regions, 1.0, 0.0, "", "mediapipe", 1024, faces,
                         keep_results=20)
        except ui.UserError:
            assert i % 7 == 0

    process = psutil.Process()
    for i in range(30):
        request(i)
    warm = process.memory_info().rss
    peak = warm
    for i in range(30, 90):
        request(i)
        peak = max(peak, process.memory_info().rss)
    assert peak < 1.15 * warm, (warm >> 20, peak >> 20)
    assert process.memory_info().rss < 1.05 * warm, (warm >> 20, process.memory_info().rss >> 20)
