"""Video: frames, size, length and audio survive; only the chosen regions change; faces are smoothed
over time; clips without frames and outputs that are not files are refused; nothing is half-written."""

from __future__ import annotations

import os
import re
import subprocess
from fractions import Fraction

import imageio_ffmpeg
import numpy as np
import pytest

import portrait_stylize as ps
from portrait_stylize.faces import Face
from portrait_stylize.video import TemporalState, _encoder, estimate_video, stylize_video

from helpers import run_cli

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
#: The times of the variable-rate clip's 13 frames; the last one shows until 2.12 s (as in the report).
VFR_TIMES = [0, 0.12, 0.16, 0.4, 0.44, 0.52, 0.92, 1.2, 1.32, 1.52, 1.8, 1.92, 2.0]


def _frames(path) -> np.ndarray:
    """Every decoded frame of ``path`` once, ``(N, H, W, 3)`` uint8 (passthrough: none repeated to fit a rate)."""
    reader = imageio_ffmpeg.read_frames(str(path), output_params=["-fps_mode", "passthrough"])
    meta = next(reader)
    w, h = meta["size"]
    return np.stack([np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader])


def _header(path) -> str:
    return subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr


def _length(path) -> float:
    """The clip's length in seconds, from its header."""
    h, m, s = re.search(r"Duration: (\d+):(\d+):([\d.]+)", _header(path)).groups()
    return int(h) * 3600 + int(m) * 60 + float(s)


@pytest.fixture(scope="module")
def clip(fixtures, tmp_path_factory):
    """2 s at 8 fps of a real portrait with grain that changes every frame, plus a 440 Hz tone."""
    out = tmp_path_factory.mktemp("video") / "clip.mp4"
    subprocess.run([FFMPEG, "-y", "-loglevel", "error", "-loop", "1", "-i",
                    str(fixtures / "faces" / "whole" / "Blake_Lively.jpg"), "-f", "lavfi", "-i",
                    "sine=frequency=440:duration=2", "-t", "2", "-r", "8", "-vf", "scale=350:232,noise=alls=6:allf=t",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(out)], check=True)
    return out


@pytest.fixture(scope="module")
def vfr_clip(tmp_path_factory):
    """13 distinct test-pattern frames at the uneven :data:`VFR_TIMES` (concat demuxer, ``-fps_mode vfr``),
    2.12 s long, with a 2.12 s tone."""
    folder = tmp_path_factory.mktemp("vfr")
    subprocess.run([FFMPEG, "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=96x64:rate=1", "-frames:v", "13",
                    str(folder / "f%02d.png")], check=True)
    shown = zip(VFR_TIMES, [*VFR_TIMES[1:], 2.12])
    (folder / "list.txt").write_text("ffconcat version 1.0\n" + "".join(
        f"file f{i:02d}.png\nduration {end - start:.2f}\n" for i, (start, end) in enumerate(shown, 1)))
    out = folder / "vfr.mp4"
    subprocess.run([FFMPEG, "-loglevel", "error", "-f", "concat", "-i", str(folder / "list.txt"), "-f", "lavfi", "-i",
                    "sine=duration=2.12", "-fps_mode", "vfr", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
                    str(out)], check=True)
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


def test_a_variable_frame_rate_clip_keeps_its_real_frames_and_length(vfr_clip, tmp_path, caplog):
    """Issue 29.4: 13 frames at uneven times over 2.12 s came out as 69 frames at 5 fps (13.8 s). Every
    frame is now written once, in order, at the average rate, as long as the input within a frame."""
    src = _frames(vfr_clip)
    assert len(src) == 13 and _length(vfr_clip) == 2.12  # the clip the report describes
    st = ps.load_style("toon")
    estimate = estimate_video(vfr_clip, st, strength=0.0)
    assert (estimate.frames, estimate.fps) == (13, 6.0) and estimate.describe().startswith("13 frames (2.2 s at 6 fps)")
    info = stylize_video(vfr_clip, tmp_path / "out.mp4", st, strength=0.0, progress=False)
    out = _frames(tmp_path / "out.mp4")
    assert info.frames == len(out) == 13 and info.fps == 6.0  # 12 intervals from the first frame (0 s) to the last (2)
    assert abs(_length(tmp_path / "out.mp4") - 2.12) < 1 / info.fps and "Audio: aac" in _header(tmp_path / "out.mp4")
    # The real frames in order: each output frame is its own input frame (strength 0: the photo), no other.
    diff = np.abs(out[:, None].astype(float) - src[None].astype(float)).mean(axis=(2, 3, 4))
    assert (diff.argmin(axis=1) == np.arange(13)).all() and diff.diagonal().max() < 3, diff.diagonal()
    assert "variable frame rate; its 13 frames are written evenly at 6 fps (2.17 s)" in caplog.text


def _empty_video_stream(folder):
    """The report's clip: ffmpeg lists a video stream (raw, so its size is known without decoding) with no frame."""
    full, empty = folder / "full.nut", folder / "empty-video.nut"
    subprocess.run([FFMPEG, "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=8", "-f", "lavfi", "-i",
                    "sine=duration=1", "-t", "1", "-c:v", "rawvideo", "-pix_fmt", "yuv420p", "-c:a", "pcm_s16le",
                    str(full)], check=True)
    subprocess.run([FFMPEG, "-loglevel", "error", "-i", str(full), "-c", "copy", "-bsf:v", "noise=drop=1", str(empty)],
                   check=True)
    full.unlink()
    return empty


def _audio_only(folder):
    out = folder / "tone.m4a"
    subprocess.run([FFMPEG, "-loglevel", "error", "-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", str(out)],
                   check=True)
    return out


@pytest.mark.parametrize("make, message", [
    (_empty_video_stream, "no frame of its video stream decodes (the stream is empty or damaged); give another clip"),
    (_audio_only, "the file has no video stream (only audio); give a video clip")])
def test_a_file_without_a_video_frame_is_refused_and_nothing_is_written(tmp_path, make, message):
    """Issue 29.5a/c: a video stream without frames gave exit 0 and a 261-byte invalid MP4; an audio file gave
    "(Error opening output files: Invalid argument)"."""
    src = make(tmp_path)
    with pytest.raises(ps.InvalidImageError) as error:
        stylize_video(src, tmp_path / "out.mp4", ps.load_style("toon"), progress=False)
    assert str(error.value) == f"{src}: {message}"
    assert os.listdir(tmp_path) == [src.name]  # no MP4, no temporary


def test_an_odd_frame_size_is_padded_to_even(tmp_path, caplog):
    """Issue 29.5b: 65x101 frames gave a "Broken pipe / FFMPEG COMMAND" dump (H.264 in yuv420p needs even
    sizes). The MP4 is 66x102: the picture untouched, its last column and row repeated, and the log says so.
    A grey test pattern: sharp enough that a shift by one pixel shows (a mean difference of 11), and no
    colour for yuv420p's halved chroma to blur."""
    odd = tmp_path / "odd.mkv"
    subprocess.run([FFMPEG, "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=65x101:rate=4", "-vf",
                    "format=gray", "-frames:v", "4", "-c:v", "ffv1", str(odd)], check=True)
    info = stylize_video(odd, tmp_path / "out.mp4", ps.load_style("toon"), strength=0.0, progress=False)
    src, out = _frames(odd).astype(float), _frames(tmp_path / "out.mp4").astype(float)
    assert info.size == (66, 102) and info.frames == 4 and out.shape == (4, 102, 66, 3)
    assert np.abs(out[:, :101, :65] - src).mean() < 1.5
    assert np.abs(out[:, :101, 65] - src[:, :, 64]).mean() < 1.5 and np.abs(out[:, 101, :65] - src[:, 100]).mean() < 1.5
    assert "frames of 65x101; H.264 (yuv420p) needs even sizes, so the MP4 is 66x102" in caplog.text


def test_an_encoder_failure_is_one_line_naming_the_output(tmp_path):
    """What is left of ffmpeg's log when the encoder stops: its first error line, not a dump."""
    with pytest.raises(OSError) as error, \
            _encoder(str(tmp_path / "tmp.mp4"), (65, 101), Fraction(8), None, tmp_path / "out.mp4") as send:
        send(np.zeros((101, 65, 3), np.uint8))
    assert str(error.value) == (f"{tmp_path / 'out.mp4'}: ffmpeg could not write the MP4 (width not divisible by 2 "
                                "(65x101)); nothing was written")


@pytest.mark.parametrize("kind", ["character device", "FIFO", "folder"])
def test_an_output_that_is_not_a_regular_file_is_never_replaced(vfr_clip, tmp_path, kind):
    """Issue 29.5d: ``video -o /dev/null`` replaced the device node with an MP4."""
    out = tmp_path / "out.mp4"
    if kind == "character device":
        out.symlink_to("/dev/null")  # a link to it: even a regression would replace the link, never /dev/null
    elif kind == "FIFO":
        os.mkfifo(out)
    else:
        out.mkdir()
    mode = out.stat().st_mode
    with pytest.raises(ps.InvalidArgumentError, match=f"^{re.escape(str(out))} is a {kind}"):
        stylize_video(vfr_clip, out, ps.load_style("toon"), progress=False)
    assert out.stat().st_mode == mode and out.is_symlink() == (kind == "character device")
    assert os.listdir(tmp_path) == ["out.mp4"] and (kind != "folder" or not os.listdir(out))


def test_an_interrupted_run_leaves_the_previous_output_and_no_partial_file(vfr_clip, tmp_path):
    """Issue 29.5d: the MP4 is written to a temporary next to it and renamed only when complete."""
    out = tmp_path / "out.mp4"
    out.write_bytes(b"the previous result")

    def interrupt(done, total):
        if done == 3:
            raise KeyboardInterrupt

    st = ps.load_style("toon")
    with pytest.raises(KeyboardInterrupt):
        stylize_video(vfr_clip, out, st, progress=interrupt)
    assert out.read_bytes() == b"the previous result" and os.listdir(tmp_path) == ["out.mp4"]
    info = stylize_video(vfr_clip, out, st, progress=False)  # a complete run replaces a regular file
    assert len(_frames(out)) == info.frames == 13 and os.listdir(tmp_path) == ["out.mp4"]


@pytest.mark.slow
def test_cli_video(clip, tmp_path):
    out = tmp_path / "cli.mp4"
    result = run_cli("video", str(clip), "-o", str(out), "--style", "sketch", "--regions", "hair", "--face-backend",
                     "mediapipe")
    assert result.returncode == 0, result.stderr
    assert "16 frames at 8 fps (2.00 s), 350x232, audio kept" in result.stdout and _frames(out).shape[0] == 16
    device = tmp_path / "null.mp4"
    device.symlink_to("/dev/null")  # as -o /dev/null, but a regression could only replace the link
    result = run_cli("video", str(clip), "-o", str(device), "--style", "sketch")
    assert result.returncode == 2 and result.stderr == (f"error: {device} is a character device, which is never "
                                                        "replaced; give a new file name or an existing .mp4 file, "
                                                        "e.g. -o out.mp4\n"), result.stderr
    assert device.is_symlink() and device.is_char_device()


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
