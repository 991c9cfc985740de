"""Video: frames, size and audio survive; only the chosen regions change; faces are smoothed over time."""

from __future__ import annotations

import subprocess

import imageio_ffmpeg
import numpy as np
import pytest

import portrait_stylize as ps
from portrait_stylize.faces import Face
from portrait_stylize.video import TemporalState, stylize_video

from helpers import run_cli

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def _frames(path) -> np.ndarray:
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    return np.stack([np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader])


@pytest.fixture(scope="module")
def clip(fixtures, tmp_path_factory):
    """2 s at 8 fps of a real portrait with grain that changes every frame, plus a 440 Hz tone."""
    out = tmp_path_factory.mktemp("video") / "clip.mp4"
    subprocess.run([FFMPEG, "-y", "-loglevel", "error", "-loop", "1", "-i",
                    str(fixtures / "faces" / "whole" / "Blake_Lively.jpg"), "-f", "lavfi", "-i",
                    "sine=frequency=440:duration=2", "-t", "2", "-r", "8", "-vf", "scale=350:232,noise=alls=6:allf=t",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(out)], check=True)
    return out


def test_video_keeps_frames_size_audio_and_untouched_pixels(clip, tmp_path):
    st = ps.load_style("toon", face_backend="mediapipe")
    info = stylize_video(clip, tmp_path / "out.mp4", st, regions=["lips", "eyes"], progress=False)
    assert info.frames == 16 and info.size == (350, 232) and info.audio
    probe = subprocess.run([FFMPEG, "-i", str(tmp_path / "out.mp4")], capture_output=True, text=True).stderr
    assert "Audio: aac" in probe and "Video: h264" in probe
    src, out = _frames(clip).astype(float), _frames(tmp_path / "out.mp4").astype(float)
    assert out.shape == src.shape
    faces = ps.detect_faces(_frames(clip)[0], backend="mediapipe")
    inside = np.zeros(src.shape[1:3], bool)
    for face in faces:
        x0, y0, x1, y1 = (round(v) for v in face.box)
        inside[y0:y1, x0:x1] = True
    diff = np.abs(out - src).mean(-1).mean(0)
    # Only codec noise outside the faces, everywhere (a high percentile, not a mean that a
    # stylized patch could hide in), and real change inside them.
    assert np.percentile(diff[~inside], 99.5) < 8.0 < diff[inside].max(), np.percentile(diff[~inside], 99.5)


def test_temporal_state_smooths_jittery_landmarks():
    rng = np.random.default_rng(0)
    base = np.array([[40.0, 50], [70, 50], [55, 65], [45, 80], [65, 80]])
    state, raw, smooth = TemporalState(smoothing=0.6), [], []
    for _ in range(40):
        jitter = base + rng.normal(0, 2.0, base.shape)
        face = Face(box=(30.0, 35.0, 80.0, 90.0), landmarks=jitter, score=0.9)
        raw.append(jitter)
        smooth.append(state.smooth_faces([face])[0].landmarks)
    assert np.std(np.diff(smooth, axis=0)) < 0.6 * np.std(np.diff(raw, axis=0))
    off = TemporalState(smoothing=0.0)
    face = Face(box=(0.0, 0.0, 10.0, 10.0), landmarks=base, score=1.0)
    assert off.smooth_faces([face])[0] is face


def test_temporal_state_detects_every_nth_frame_and_carries_faces_over():
    face = Face(box=(30.0, 35.0, 80.0, 90.0), landmarks=np.zeros((5, 2)), score=0.9)
    calls = []

    def detect(found):
        calls.append(len(calls))
        return found

    state = TemporalState(smoothing=0.0, detect_every=3)
    seen = [state.track_faces(lambda: detect([face])) for _ in range(7)]
    assert len(calls) == 3 and all(s == [face] for s in seen)  # frames 0, 3 and 6
    empty = TemporalState(detect_every=3)
    for _ in range(4):
        empty.track_faces(lambda: detect([]))
    assert len(calls) == 3 + 4  # while no face is tracked, every frame looks for one


def test_temporal_state_uses_faces_found_ahead():
    face = Face(box=(30.0, 35.0, 80.0, 90.0), landmarks=np.zeros((5, 2)), score=0.9)
    state = TemporalState(smoothing=0.0, detect_every=3)
    assert state.due_frames(7) == [0, 3, 6]
    state.found_ahead(0, [face])
    state.found_ahead(3, [])

    def not_called():
        raise AssertionError("faces were found ahead")

    assert state.track_faces(not_called) == [face]
    assert state.due_frames(4) == [2]  # frame 3, from frame 1 on
    assert [state.track_faces(not_called) for _ in range(2)] == [[face], [face]]  # carried over
    assert state.track_faces(lambda: [face]) == [] and not state.ahead  # frame 3: none found ahead


def test_video_detects_every_4th_frame_in_batches_and_runs_small_frames_untiled(clip, tmp_path, monkeypatch):
    st = ps.load_style("toon")
    backend = st.face_backend
    detections, tiles = [], []
    real_detect_many = backend.detect_many
    # A backend's detect() is detect_many() on one image: every detection shows here, with its batch size.
    monkeypatch.setattr(backend, "detect_many", lambda rgbs: detections.append(len(rgbs)) or real_detect_many(rgbs))
    from portrait_stylize import pipeline

    real_run_tiled = pipeline.run_tiled
    monkeypatch.setattr(pipeline, "run_tiled",
                        lambda fn, x, tile, *a: tiles.append(tile) or real_run_tiled(fn, x, tile, *a))
    st.tile_size = 64  # smaller than the clip's frames: a still image of this size would tile
    info = stylize_video(clip, tmp_path / "out.mp4", st, regions=["lips"], progress=False)
    assert info.frames == 16 and detections == [4]  # frames 0, 4, 8 and 12 in one batch
    assert set(tiles) == {None} and st.tile_size == 64


def test_long_or_unreadable_clips_are_refused(clip, tmp_path):
    st = ps.load_style("toon")
    with pytest.raises(ps.InvalidImageError, match="the limit is 0.5 s"):
        stylize_video(clip, tmp_path / "out.mp4", st, max_seconds=0.5, progress=False)
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    with pytest.raises(ps.InvalidImageError, match="not a readable video"):
        stylize_video(bad, tmp_path / "out.mp4", st, progress=False)
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.slow
def test_cli_video(clip, tmp_path):
    out = tmp_path / "cli.mp4"
    result = run_cli("video", str(clip), "-o", str(out), "--style", "sketch", "--regions", "hair", "--face-backend",
                     "mediapipe")
    assert result.returncode == 0, result.stderr
    assert "16 frames at 8 fps, 350x232, audio kept" in result.stdout and _frames(out).shape[0] == 16


def test_a_clip_keeps_the_conditions_of_its_first_frame():
    """Built-in styles measure each picture; over a clip they keep the first frame's measurement,
    so a frame that happens to be blurrier does not get wider kernels (a visible jump)."""
    import torch
    from PIL import Image, ImageFilter

    from portrait_stylize.imaging.io import pil_to_tensor
    from portrait_stylize.imaging.quality import measure

    from helpers import REPO

    sharp = Image.open(REPO / "examples" / "hopper.jpg").convert("RGB").resize((256, 320))
    blurred = sharp.filter(ImageFilter.GaussianBlur(3))
    st = ps.load_style("sketch")
    assert measure(pil_to_tensor(blurred)).scale > measure(pil_to_tensor(sharp)).scale  # they would differ
    state = TemporalState()
    st(np.asarray(sharp), temporal=state)
    second = np.asarray(st(np.asarray(blurred), temporal=state), dtype=float)
    model = st.model.adapted_to(pil_to_tensor(sharp))
    with torch.inference_mode():
        expected = model(pil_to_tensor(blurred))[0].permute(1, 2, 0).numpy() * 255
    assert np.abs(second - expected).max() <= 1.0  # the first frame's settings (8-bit rounding)
    alone = np.asarray(st(np.asarray(blurred)), dtype=float)
    assert np.abs(alone - expected).mean() > 1.0  # measured on its own, the frame would differ
