"""The web demo's documented features (docs/app.md), run in-process through portrait_stylize.ui and
app.py: per-region strengths, the face gallery and face picker, the video tab and its limits (from
space_policy.py, through app.py), the queue."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import threading
import time
from collections import Counter

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

import portrait_stylize as ps
from portrait_stylize import ui
from portrait_stylize.ui.catalogue import PREVIEW_PORTRAIT
from portrait_stylize.ui.photo import parse_region_strengths

import space_policy
from helpers import REPO

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


@pytest.fixture(scope="module")
def app():
    """``app.py`` imported as a module: its event handlers and ``create_demo``."""
    spec = importlib.util.spec_from_file_location("app", REPO / "app.py")
    module = sys.modules["app"] = importlib.util.module_from_spec(spec)  # Gradio inspects its classes' modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Offline: a demo built here opens on the built-in default and fetches nothing at start-up."""
    monkeypatch.setenv("PORTRAIT_STYLIZE_OFFLINE", "1")


@pytest.mark.parametrize("fetched, shown", [(True, "anime"), (False, "toon")])
def test_the_demo_opens_on_the_first_style_unless_its_fetch_failed(app, monkeypatch, fetched, shown):
    monkeypatch.delenv("PORTRAIT_STYLIZE_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def load(name):
        if not fetched:
            raise ps.errors.StyleNotCachedError("cannot reach https://www.modelscope.cn")

    first = ui.FirstStyle(space_policy.FIRST_STYLE, load=load)
    assert first.wait(5)
    demo = app.create_demo(first_style=first)
    (dropdown,) = [b for b in demo.blocks.values() if getattr(b, "label", None) == "Style"]
    assert dropdown.value == shown == first()
    (on_load,) = [fn for fn in demo.fns.values() if any(event == "load" for _, event in fn.targets)]
    assert on_load.outputs == [dropdown] and on_load.fn()["value"] == shown  # every page opened later


def _pixels(image) -> np.ndarray:
    """A picture (path or PIL image) as float RGB."""
    return np.asarray((image if isinstance(image, Image.Image) else Image.open(image)).convert("RGB"), np.float64)


def test_no_photo_or_a_file_that_is_gone_says_so(tmp_path):
    """The other unusable uploads (empty, not a picture, damaged, too many pixels) go through the
    live server in test_app.py."""
    with pytest.raises(ui.UserError, match=r"^Upload a photo first \(or take one with the webcam, or paste one\)\.$"):
        ui.run_photo(None, "toon")
    with pytest.raises(ui.UserError, match="^This file cannot be used: no such file$"):
        ui.run_photo(str(tmp_path / "gone.png"), "toon")


# --- per-region strengths (Advanced: "lips=0.5, hair=0.8") ----------------------------------------


@pytest.mark.parametrize("text,expected", [
    ("lips=0.5, hair=0.8", {"lips": 0.5, "hair": 0.8}),
    (" hair = 0.8 ; lips=0.5 ", {"hair": 0.8, "lips": 0.5}),
    ("lips=0, hair=1", {"lips": 0.0, "hair": 1.0}),
    ("", {}),
])
def test_per_region_strength_strings_are_parsed(text, expected):
    assert parse_region_strengths(text, ["lips", "hair"]) == expected


@pytest.mark.parametrize("text,regions,message", [
    ("lips=0.5", [], "per-region strength for 'lips': tick that region first (ticked: none)"),
    ("lips=0.5, hair=0.8", ["lips"], "per-region strength for 'hair': tick that region first (ticked: lips)"),
    ("lips=lots", ["lips"], "per-region strength for 'lips' must be a number from 0 to 1, like lips=0.5"),
    ("lips=1.5", ["lips"], "per-region strength for 'lips' must be a number from 0 to 1, like lips=0.5"),
    ("lips", ["lips"], "per-region strength for 'lips' must be a number from 0 to 1, like lips=0.5"),
])
def test_bad_per_region_strength_strings_get_a_message(text, regions, message):
    with pytest.raises(ui.UserError) as info:
        ui.run_photo(str(REPO / "examples" / "astronaut.jpg"), "toon", regions, 1.0, 0.0, text, "mediapipe")
    assert str(info.value) == message


@pytest.mark.slow
def test_lips_at_half_and_hair_at_0_8_change_half_and_0_8_as_much_as_at_full_strength():
    """"lips=0.5, hair=0.8" against both at 1.0, region by region (the library's masks of the photo):
    the change from the photo is half as large on the lips and 0.8 times as large on the hair."""
    photo_path = str(REPO / "examples" / "astronaut.jpg")
    photo = _pixels(photo_path)
    full = _pixels(ui.run_photo(photo_path, "toon", ["lips", "hair"], 1.0, 0.0, "", "mediapipe").png) - photo
    mixed = _pixels(ui.run_photo(photo_path, "toon", ["lips", "hair"], 1.0, 0.0, "lips=0.5, hair=0.8",
                                 "mediapipe").png) - photo
    _, details = ps.load_style("toon", face_backend="mediapipe")(Image.open(photo_path), regions=["lips", "hair"],
                                                                  return_details=True)
    for name, expected in (("lips", 0.5), ("hair", 0.8)):
        inside = details.masks[name] > 0.5
        assert inside.sum() > 100 and np.abs(full[inside]).mean() > 5, name
        ratio = np.abs(mixed[inside]).sum() / np.abs(full[inside]).sum()
        assert abs(ratio - expected) < 0.05, (name, ratio)


# --- face gallery and face picker (group photos) --------------------------------------------------


@pytest.mark.slow
def test_a_group_photo_shows_one_gallery_item_and_one_checkbox_per_face(app, fixtures):
    """app.find_faces (run on upload): a thumbnail captioned 'face i' per face found, left to right,
    each showing its own face; the 'Faces to stylize' picker offers the same labels, none picked (= all)."""
    group = fixtures / "faces" / "whole" / "10045.png"
    count = json.loads((fixtures / "faces" / "whole" / "faces.json").read_text())[group.name]
    gallery, checkboxes = app.find_faces(str(group), "mediapipe", 1024)
    labels = [f"face {i + 1}" for i in range(count)]
    assert gallery["visible"] and checkboxes["visible"]
    assert [caption for _, caption in gallery["value"]] == labels
    assert checkboxes["choices"] == labels and checkboxes["value"] == []  # none picked = all
    photo = ui.open_photo(str(group), 1024).convert("RGB")
    faces = ps.detect_faces(photo, backend="mediapipe")
    assert len(faces) == count
    crops = [_small(photo.crop(tuple(round(v) for v in face.box))) for face in faces]
    for i, (thumb, _) in enumerate(gallery["value"]):
        assert thumb.size == (128, 128)
        # The face box fills the middle of its thumbnail (the thumbnail is 1.4 times the box).
        distances = [np.abs(_small(thumb.crop((18, 18, 110, 110))) - crop).mean() for crop in crops]
        assert int(np.argmin(distances)) == i and distances[i] < 10, distances


def _small(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB").resize((32, 32)), np.float64)


@pytest.mark.slow
def test_one_face_or_no_photo_hides_the_gallery(app):
    for path in (str(REPO / "examples" / "astronaut.jpg"), None):
        gallery, checkboxes = app.find_faces(path, "mediapipe", 1024)
        assert gallery["visible"] is False and checkboxes["visible"] is False, path


def test_a_whole_picture_result_does_not_claim_no_faces(fixtures):
    """A built-in style on a photo with two faces, nothing picked: no face search was asked for,
    so the status says what was done, not "0 face(s) found"; skipped faces are numbered like the
    gallery (1 = leftmost)."""
    group = str(fixtures / "faces" / "whole" / "Blake_Lively.jpg")
    result = ui.run_photo(group, "toon", None, 1.0, 0.0, "", "mediapipe", 512)
    assert result.status.startswith("toon: the whole picture stylized · ") and "face(s)" not in result.status
    faces = ui.run_photo(group, "toon", ["lips"], 1.0, 0.0, "", "mediapipe", 512, ["face 1"])
    assert faces.status.startswith("toon: 2 face(s) found, stylized: face 1; regions lips")


@pytest.mark.slow
def test_the_face_checkboxes_pick_which_faces_change(fixtures):
    from portrait_stylize.faces import enlarge_box

    group = str(fixtures / "faces" / "whole" / "Blake_Lively.jpg")
    result = ui.run_photo(group, "toon", ["lips"], 1.0, 0.0, "", "mediapipe", 1024, ["face 2"])
    photo, out = _pixels(result.before), _pixels(result.png)
    faces = ps.detect_faces(result.before, backend="mediapipe")
    x0, y0, x1, y1 = (round(v) for v in enlarge_box(faces[1].box, 1.25, photo.shape[:2]))
    changed = (out != photo).any(-1)
    assert changed[y0:y1, x0:x1].sum() > 50
    changed[y0:y1, x0:x1] = False
    assert not changed.any() and result.status.startswith("toon: 2 face(s) found, stylized: face 2; regions lips")


# --- video tab ------------------------------------------------------------------------------------


def _clip(path, seconds: float, size: str = "96:64") -> None:
    """The example portrait as a clip of ``size`` at 2 fps with a 440 Hz tone."""
    subprocess.run([FFMPEG, "-y", "-loglevel", "error", "-loop", "1", "-framerate", "2",
                    "-i", str(REPO / "examples" / "astronaut.jpg"),
                    "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-t", str(seconds),
                    "-vf", f"scale={size}", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
                    str(path)], check=True)


def _frames(path) -> tuple[dict, np.ndarray]:
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    return meta, np.stack([np.frombuffer(f, np.uint8).reshape(height, width, 3) for f in reader]).astype(np.float64)


@pytest.mark.slow
def test_the_video_tab_estimates_the_work_before_starting_and_stylizes_the_clip(tmp_path):
    """Upload: the estimate from the first frames is shown; Stylize: the clip is done (audio kept)
    and each frame reports progress with that estimate; the estimate is within 3x of the real time."""
    short = tmp_path / "short.mp4"
    _clip(short, 9.5, "288:192")  # big enough that frames, not ffmpeg's start, take the time
    line = ui.describe_video(str(short), "toon", [], 1.0, "mediapipe")
    assert re.fullmatch(r"19 frames \(9\.5 s at 2 fps\): about \d+ s here \(\d+\.\d\d s a frame\)\.", line), line
    done = []
    start = time.perf_counter()
    out = ui.run_video(str(short), "toon", [], 1.0, "mediapipe", progress=lambda *step: done.append(step))
    seconds = time.perf_counter() - start
    meta, frames = _frames(out)
    _, source = _frames(short)
    assert frames.shape == source.shape == (19, 192, 288, 3) and meta["fps"] == 2
    assert np.abs(frames - source).mean() > 10  # stylized, not copied
    assert "Audio: aac" in subprocess.run([FFMPEG, "-i", out], capture_output=True, text=True).stderr
    assert [step[:2] for step in done] == [(i, 19) for i in range(1, 20)]
    estimate = done[0][2]
    print(f"estimate {estimate.seconds:.2f} s, real {seconds:.2f} s")
    assert estimate.frames == 19 and seconds / 3 < estimate.seconds < 3 * seconds, (estimate, seconds)


def test_the_video_tab_refuses_clips_that_need_too_much_work_or_are_too_long(app, tmp_path, monkeypatch):
    """app.py's video handlers (upload: describe_video; button: stylize_video) apply space_policy's
    limits: the work limit (lowered here to a fraction of the ~8 frames' real work, which also shows
    the handlers read space_policy and nothing else) and the 60 s length limit."""
    import gradio as gr

    short, long = tmp_path / "short.mp4", tmp_path / "long.mp4"
    _clip(short, 4)
    _clip(long, 61)
    monkeypatch.setattr(space_policy, "MAX_VIDEO_WORK_SECONDS", 0.06)
    with pytest.raises(gr.Error) as info:
        app.stylize_video(str(short), "toon", [], 1.0, "mediapipe")
    refusal = (r"This clip is 8 frames \(4\.0 s at 2 fps\): about \d+ s here \(\d+\.\d\d s a frame\); "
               r"this demo takes clips of up to 0\.001 min of work\. Trim it to about \d+ s, make it smaller, "
               r"or run `portrait-stylize video` on your own machine\.")
    assert re.fullmatch(refusal, info.value.message), info.value.message
    assert re.fullmatch(refusal, app.describe_video(str(short), "toon", [], 1.0, "mediapipe"))  # shown on upload
    assert space_policy.MAX_VIDEO_SECONDS == 60
    with pytest.raises(gr.Error) as info:
        app.stylize_video(str(long), "toon", [], 1.0, "mediapipe")
    assert info.value.message == ("the clip is 61.0 s long; the limit is 60 s. "
                                  "Trim it first (e.g. ffmpeg -t) or raise the limit.")
    with pytest.raises(gr.Error) as info:
        app.stylize_video(None, "toon", [], 1.0, "auto")
    assert info.value.message == "Upload a short video clip first."
    assert app.describe_video(None, "toon", [], 1.0, "auto") == ""


def test_the_library_ui_has_no_limits_of_its_own(tmp_path):
    """Without limits passed in, portrait_stylize.ui takes any clip and keeps a photo's size: every
    limit of the hosted demo comes from space_policy.py through app.py."""
    long, big = tmp_path / "long.mp4", tmp_path / "big.png"
    _clip(long, 61)
    line = ui.describe_video(str(long), "toon", [], 1.0, "mediapipe")
    assert re.fullmatch(r"122 frames \(61\.0 s at 2 fps\): about \d+ s here \(\d+\.\d\d s a frame\)\.", line), line
    with pytest.raises(ui.UserError, match="^Upload a short video clip first.$"):
        ui.run_video(None, "toon")
    Image.new("RGB", (1200, 300), (90, 120, 150)).save(big)
    assert ui.open_photo(str(big)).size == (1200, 300)
    assert ui.open_photo(str(big), space_policy.DEFAULT_MAX_SIDE).size == (1024, 256)


# --- the queue ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_queue_runs_two_jobs_at_a_time_and_holds_32_more(app, monkeypatch):
    """The real demo (create_demo) on a local port with ui.run_photo held until released: 36 calls
    at once give 2 running, 32 waiting and 2 refused with Gradio's 'Queue is full' message."""
    from gradio_client import Client
    from gradio_client.exceptions import AppError
    from gradio_client.utils import QueueError, Status

    release, lock = threading.Event(), threading.Lock()
    running, peak, started = [0], [0], [0]

    def held(*args, **kwargs):
        with lock:
            running[0] += 1
            started[0] += 1
            peak[0] = max(peak[0], running[0])
        release.wait(60)
        with lock:
            running[0] -= 1
        raise ui.UserError("released")

    monkeypatch.setattr(ui, "run_photo", held)
    demo = app.create_demo()
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        client = Client(url, verbose=False)
        jobs = [client.submit(None, api_name="/stylize") for _ in range(36)]
        expected = {Status.PROCESSING: 2, Status.IN_QUEUE: 32, Status.FINISHED: 2}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and Counter(job.status().code for job in jobs) != expected:
            time.sleep(0.1)
        time.sleep(0.5)  # a third worker, if there were one, would have started by now
        assert peak[0] == 2 and Counter(job.status().code for job in jobs) == expected
        refused = [job for job in jobs if job.done()]
        for job in refused:
            with pytest.raises(QueueError, match="^Queue is full! Please try again.$"):
                job.result()
        release.set()
        for job in jobs:
            if job not in refused:
                with pytest.raises(AppError, match="^released$"):
                    job.result(timeout=60)
        assert started[0] == 34 and peak[0] == 2
    finally:
        release.set()
        demo.close()


def test_photo_face_search_and_video_jobs_share_the_one_pool(app):
    """Every queued event runs under one concurrency id, so the limit of 2 holds across the photo,
    face-search and video jobs together (the test above measures that limit on /stylize)."""
    demo = app.create_demo()
    queued = {fn.name: fn.concurrency_id for fn in demo.fns.values() if fn.queue}
    assert queued == {"find_faces": "work", "stylize": "work", "describe_video": "work", "stylize_video": "work"}


# --- face backends offered ------------------------------------------------------------------------


def test_facexlib_is_offered_only_once_its_weights_are_on_disk(tmp_path, monkeypatch):
    from portrait_stylize.faces.facexlib_backend import WEIGHT_URLS

    monkeypatch.setenv("PORTRAIT_STYLIZE_FACEXLIB_DIR", str(tmp_path))
    monkeypatch.setenv("PORTRAIT_STYLIZE_OFFLINE", "1")
    assert ui.face_backend_choices() == ["auto", "mediapipe"]
    with pytest.raises(ui.UserError, match="facexlib face backend: .* not in .* offline mode is on"):
        ui.regions_for("facexlib")  # a plain message, never a raw urlopen error
    for name in WEIGHT_URLS:
        (tmp_path / name).write_bytes(b"weights")
    assert ui.face_backend_choices() == ["auto", "mediapipe", "facexlib"]


# --- style previews -------------------------------------------------------------------------------


@pytest.mark.slow
def test_each_offline_style_has_a_preview_beside_the_dropdown(app):
    """A preview of the chosen style on a bundled portrait: shown at start and on every change;
    styles that would download first get none (nothing is fetched for a thumbnail)."""
    source = np.asarray(Image.open(PREVIEW_PORTRAIT).convert("RGB"), dtype=float)
    previews = {}
    for name in ("toon", "sketch", "comic", "watercolour", "poster"):
        previews[name] = ui.style_preview(name)
        assert previews[name].size == (192, 192)
        assert np.abs(np.asarray(previews[name], dtype=float) - source).mean() > 4, name
        assert ui.style_preview(name) is previews[name]  # made once
    assert ui.style_preview("anime") is None and ui.style_preview("no-such-style") is None
    demo = app.create_demo()
    preview = next(b for b in demo.blocks.values() if getattr(b, "label", None) == "Preview")
    assert preview.value is not None  # the default style's preview, from the start
    change = next(fn for fn in demo.fns.values()
                  if fn.name == "<lambda>" and preview._id in [o._id for o in fn.outputs])
    assert [i.label for i in change.inputs] == ["Style"]
