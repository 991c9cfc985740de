"""The real demo (`python app.py`) on a free local port: API, robustness, concurrency, a browser."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
CHROMIUM = Path("/usr/bin/chromium")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`python app.py` with no network and telemetry off; yields (url, seconds to ready).

    The registry also lists a Hub style whose weights are not cached, as a user's might.
    """
    registry = tmp_path_factory.mktemp("registry") / "checkpoints.json"
    registry.write_text(json.dumps({"format_version": 1, "styles": {"anime": {
        "kind": "hub", "repo_id": "someone/dctnet-anime", "revision": "0" * 40, "filename": "model.safetensors",
        "sha256": "0" * 64, "licence": "apache-2.0", "description": "DCT-Net anime"}}}))
    port = _free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "HF_HUB_OFFLINE": "1",
           "PORTRAIT_STYLIZE_FACE_BACKEND": "mediapipe", "PORTRAIT_STYLIZE_CHECKPOINTS": str(registry),
           "HF_HUB_CACHE": str(registry.parent / "cache")}
    env.pop("GRADIO_ANALYTICS_ENABLED", None)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        while True:
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                if proc.poll() is not None or time.perf_counter() - start > 120:
                    pytest.fail(f"app did not start:\n{proc.stdout.read()}")
                time.sleep(0.2)
        yield url, time.perf_counter() - start
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server[0], verbose=False)


def _call(client, path, regions=(), faces=(), style="toon"):
    from gradio_client import handle_file

    return client.predict(handle_file(str(path)), style, list(regions), 1.0, 0.0, "", "mediapipe", 1024,
                          list(faces), None, api_name="/stylize")


def test_cold_start_under_10_seconds(server):
    assert server[1] < 10.0, f"ready after {server[1]:.1f} s"


def test_one_public_endpoint(client):
    api = client.view_api(print_info=False, return_format="dict")
    assert list(api["named_endpoints"]) == ["/stylize"] and not api["unnamed_endpoints"]


def test_lips_only_through_the_api(client, fixtures):
    import portrait_stylize as ps
    from portrait_stylize.faces import enlarge_box

    src = fixtures / "faces" / "whole" / "Blake_Lively.jpg"
    (before, after), overlay, png, status = _call(client, src, regions=["lips"])
    photo = np.asarray(Image.open(src).convert("RGB"))
    out = np.asarray(Image.open(png).convert("RGB"))
    assert out.shape == photo.shape and Image.open(after).size == Image.open(src).size
    boxes = np.zeros(photo.shape[:2], bool)
    for face in ps.detect_faces(src, backend="mediapipe"):
        x0, y0, x1, y1 = (round(v) for v in enlarge_box(face.box, 1.25, photo.shape[:2]))
        boxes[y0:y1, x0:x1] = True
    changed = (out != photo).any(-1)
    assert changed.any() and not changed[~boxes].any()
    assert "2 face(s) found" in status and Image.open(overlay).size == Image.open(src).size


def test_eight_concurrent_calls(client, fixtures):
    photos = sorted((fixtures / "faces" / "cropped").glob("*.png")) * 2
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda p: _call(client, p, regions=["hair"]), photos))
    assert len(results) == 8 and all(Image.open(r[2]).size == (512, 512) for r in results)


@pytest.mark.parametrize("kind", ["text renamed .png", "empty file", "60 megapixels"])
def test_bad_uploads_give_readable_errors_and_the_server_goes_on(client, fixtures, tmp_path, kind):
    from gradio_client.exceptions import AppError

    bad = tmp_path / "upload.png"
    if kind == "text renamed .png":
        bad.write_text("this is not a picture")
    elif kind == "empty file":
        bad.write_bytes(b"")
    else:
        bad = tmp_path / "huge.jpg"
        Image.new("RGB", (10_000, 6_000), (90, 120, 150)).save(bad, quality=50)
    with pytest.raises(AppError) as info:
        _call(client, bad)
    message = str(info.value)
    assert ("cannot be used" in message and ("not an image" in message or "60,000,000" in message)), message
    assert Image.open(_call(client, fixtures / "faces" / "cropped" / "Adele_crop.png")[2]).size == (512, 512)


def test_a_style_that_cannot_be_downloaded_gives_a_message(client, fixtures):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="The style 'anime' is not available: .*is not in the cache"):
        _call(client, fixtures / "faces" / "cropped" / "Adele_crop.png", style="anime")
    assert Image.open(_call(client, fixtures / "faces" / "cropped" / "Adele_crop.png")[2]).size == (512, 512)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed (.ci/run installs it)")
def test_browser_upload_tick_run(server, tmp_path):
    from playwright.sync_api import sync_playwright

    from portrait_stylize.ui import example_photo

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(server[0])
        page.locator("input[type=file]").first.set_input_files(example_photo())
        page.get_by_label("lips").check()
        page.get_by_label("hair").check()
        page.get_by_role("button", name="Stylize", exact=True).click()
        page.get_by_text("face(s) found").wait_for(timeout=60_000)
        result = page.locator("[data-testid='imageslider-image']").last
        result.wait_for(timeout=30_000)
        shot, element = tmp_path / "app.png", tmp_path / "result.png"
        page.screenshot(path=str(shot), full_page=True)
        result.screenshot(path=str(element))
        browser.close()
    pixels = np.asarray(Image.open(element).convert("RGB"))
    assert min(pixels.shape[:2]) > 100 and pixels.std() > 20  # a picture, not a blank panel
    if os.environ.get("PORTRAIT_STYLIZE_SCREENSHOT"):
        Image.open(shot).save(os.environ["PORTRAIT_STYLIZE_SCREENSHOT"])


# --- hostile uploads (the app must survive each and serve the next user) -------------------------


def test_one_argument_api_call(client, fixtures):
    from gradio_client import handle_file

    (before, after), overlay, png, status = client.predict(
        handle_file(str(fixtures / "faces" / "cropped" / "Adele_crop.png")), api_name="/stylize")
    assert Image.open(png).size == (512, 512) and status.startswith("toon:")


def test_a_one_pixel_upload_does_not_break_faces_for_the_next_user(client, fixtures, tmp_path):
    thin = tmp_path / "thin.png"
    Image.new("RGB", (1, 300), (200, 150, 120)).save(thin)
    for path in (thin, tmp_path / "flat.png"):
        if path.name == "flat.png":
            Image.new("RGB", (300, 1), (200, 150, 120)).save(path)
        _, _, png, status = _call(client, path, regions=["skin"])
        assert "0 face(s) found" in status
    status = _call(client, fixtures / "faces" / "whole" / "Blake_Lively.jpg", regions=["lips"])[3]
    assert "2 face(s) found" in status  # MediaPipe still works after the degenerate uploads


def test_a_decompression_bomb_is_reported_with_the_size_limit(client, tmp_path):
    import struct
    import zlib
    from gradio_client.exceptions import AppError

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bomb = tmp_path / "bomb.png"  # declares 40000 x 40000 pixels in a few bytes
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 40_000, 40_000, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    with pytest.raises(AppError) as info:
        _call(client, bomb)
    assert "limit" in str(info.value) and "pixels" in str(info.value), str(info.value)
