"""Stylize video clips frame by frame, keeping the audio and smoothing faces and masks over time.

Decoding and encoding use the ffmpeg binary that ships inside the ``imageio-ffmpeg`` wheel, so no
system ffmpeg is needed. The output is H.264 (yuv420p) MP4 with the input's audio track (AAC).
"""

from __future__ import annotations

import copy
import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from .common.numbers import bounded_int, bounded_number
from .errors import InvalidArgumentError, InvalidImageError
from .faces import Face
from .faces.face import box_iou
from .pipeline import Stylizer

DEFAULT_MAX_SECONDS = 60.0
#: Faces are detected on every n-th frame and tracked (smoothed, carried over) in between.
DEFAULT_DETECT_EVERY = 4
#: Face detections run together (one batch for the face networks: a quarter less time per frame
#: for four 1024² portrait frames than one by one), and the most frames read ahead for them.
AHEAD_DETECTIONS = 4
MAX_AHEAD_FRAMES = 16
#: Frames up to this many pixels (720p) run untiled: one network pass instead of tiles that would
#: recompute their context (a 480x528 frame would be 2 tiles, the second mostly context).
UNTILED_FRAME_PIXELS = 1280 * 720


@dataclass
class TemporalState:
    """Carries faces and the region coverage from one video frame to the next.

    ``smoothing`` in [0, 1) is the weight of the past in an exponential moving average: faces
    (box, landmarks, mesh) are matched to the previous frame's by box overlap and averaged;
    the coverage mask ``(H, W)`` float32 is averaged pixel-wise. 0 disables smoothing.
    ``detect_every``: faces are detected on every n-th frame (and on every frame while none are
    tracked) and carried over in between: detection is the slowest step after the network.
    """

    smoothing: float = 0.6
    detect_every: int = 1
    faces: list[Face] = field(default_factory=list)
    coverage: np.ndarray | None = None
    frame: int = 0
    adapted: tuple[Any, Any] | None = None
    #: Faces detected ahead (:meth:`Stylizer.detect_ahead`), by frame number.
    ahead: dict[int, list[Face]] = field(default_factory=dict)

    def adapted_model(self, model, photo, face_sizes: Callable[[], list[float]]):
        """``model`` adapted to the clip's first frame (``StyleNetwork.adapted_to``; its faces'
        sizes from ``face_sizes()``, asked only then), for every frame: a style that measures each
        picture (the built-in filters' blur and noise) would otherwise change its kernels from
        frame to frame, and flicker."""
        if self.adapted is None or self.adapted[0] is not model:
            self.adapted = (model, model.adapted_to(photo, face_sizes()))
        return self.adapted[1]

    def track_faces(self, detect: Callable[[], list[Face]]) -> list[Face]:
        """This frame's faces when a detection is due (those found ahead, else ``detect()``), smoothed;
        else the last ones."""
        frame, self.frame = self.frame, self.frame + 1
        ahead = self.ahead.pop(frame, None)
        if frame % self.detect_every and self.faces:
            return self.faces
        return self.smooth_faces(detect() if ahead is None else ahead)

    def due_frames(self, count: int) -> list[int]:
        """Which of the next ``count`` frames (0 = the next one) are due for a detection on schedule
        (a frame is also due, but not predictably, when no face is tracked)."""
        return [i for i in range(count) if (self.frame + i) % self.detect_every == 0]

    def found_ahead(self, offset: int, faces: list[Face]) -> None:
        """Keep ``faces`` for the frame ``offset`` frames on."""
        self.ahead[self.frame + offset] = faces

    def _mix(self, old, new):
        return None if old is None or new is None else self.smoothing * old + (1 - self.smoothing) * new

    def smooth_faces(self, faces: list[Face]) -> list[Face]:
        smoothed = []
        for face in faces:
            prev = max(self.faces, key=lambda p: box_iou(p.box, face.box), default=None)
            if prev is not None and box_iou(prev.box, face.box) > 0.3 and self.smoothing > 0:
                mesh = self._mix(prev.mesh, face.mesh) if prev.mesh is not None and face.mesh is not None \
                    and prev.mesh.shape == face.mesh.shape else face.mesh
                face = Face(box=tuple(self._mix(np.array(prev.box), np.array(face.box))),
                            landmarks=self._mix(prev.landmarks, face.landmarks), score=face.score, mesh=mesh)
            smoothed.append(face)
        self.faces = smoothed
        return smoothed

    def smooth_coverage(self, coverage: np.ndarray) -> np.ndarray:
        if self.coverage is not None and self.coverage.shape == coverage.shape and self.smoothing > 0:
            coverage = self._mix(self.coverage, coverage).astype(np.float32)
        self.coverage = coverage
        return coverage


@dataclass
class VideoInfo:
    """What :func:`stylize_video` wrote: frame count, frames per second, ``(width, height)``, audio kept."""

    frames: int
    fps: float
    size: tuple[int, int]
    audio: bool


def _has_audio(path: Path) -> bool:
    import subprocess

    import imageio_ffmpeg

    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                           capture_output=True, text=True)
    return "Audio:" in probe.stderr


@dataclass(frozen=True)
class VideoEstimate:
    """How long stylizing a clip will take here, from timing its first frames.

    Attributes:
        frames: frames in the clip.
        fps: frames per second.
        seconds_per_frame: measured on the first :data:`DEFAULT_DETECT_EVERY` frames (one face
            detection and the tracked frames after it), with this machine's style and settings.
        setup_seconds: measured opening the clip and probing its audio, counted twice (the
            encoder starts another ffmpeg process).
    """

    frames: int
    fps: float
    seconds_per_frame: float
    setup_seconds: float = 0.0

    @property
    def seconds(self) -> float:
        return self.setup_seconds + self.frames * self.seconds_per_frame

    def describe(self) -> str:
        """E.g. ``"240 frames (10.0 s at 24 fps): about 1 min 20 s here (0.33 s a frame)"``."""
        return (f"{self.frames} frames ({self.frames / self.fps:.1f} s at {self.fps:g} fps): about "
                f"{_duration(self.seconds)} here ({self.seconds_per_frame:.2f} s a frame)")


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _open_clip(src: Path, max_seconds: float | None):
    """``(frame reader, fps, (width, height), frame count)`` of a readable clip within the limit."""
    import imageio_ffmpeg

    if max_seconds is not None:
        bounded_number("max_seconds", max_seconds, 0.0, 86400.0)
    if not src.is_file() or src.stat().st_size == 0:
        raise InvalidImageError(f"{src}: no such video file, or it is empty")
    try:
        reader = imageio_ffmpeg.read_frames(str(src))
        meta = next(reader)
    except (RuntimeError, OSError, StopIteration) as exc:
        raise InvalidImageError(f"{src}: not a readable video ({str(exc).strip().splitlines()[-1]})") from None
    fps, size, duration = float(meta["fps"]), tuple(meta["size"]), float(meta.get("duration") or 0)
    if max_seconds is not None and duration > max_seconds:
        reader.close()
        raise InvalidImageError(f"{src}: the clip is {duration:.1f} s long; the limit is {max_seconds:g} s. "
                                "Trim it first (e.g. ffmpeg -t) or raise the limit.")
    return reader, fps, size, max(1, round(duration * fps))


def _frames(raw_frames: Iterable[bytes], width: int, height: int) -> Iterator[np.ndarray]:
    """The decoder's raw RGB24 frames as ``(height, width, 3)`` uint8 arrays."""
    return (np.frombuffer(raw, np.uint8).reshape(height, width, 3) for raw in raw_frames)


def _stylized_frames(frames: Iterable[np.ndarray], stylizer: Stylizer, state: TemporalState,
                     **options: Any) -> Iterator[Image.Image]:
    """Each of ``frames`` stylized (``stylizer(frame, temporal=state, **options)``), in order. Frames
    are read :data:`AHEAD_DETECTIONS` detections ahead (at most :data:`MAX_AHEAD_FRAMES` frames,
    which bounds their memory), and the faces of those due for a detection are found in one batch."""
    chunk = min(AHEAD_DETECTIONS * state.detect_every, MAX_AHEAD_FRAMES)
    frames = iter(frames)
    while batch := list(itertools.islice(frames, chunk)):
        stylizer.detect_ahead(batch, state, regions=options.get("regions"), faces=options.get("faces"))
        for frame in batch:
            yield stylizer(frame, temporal=state, **options)


def _frame_stylizer(stylizer: Stylizer, size: tuple[int, int]) -> Stylizer:
    """The stylizer for frames of ``size``: untiled up to 720p (the caller's is left as it is)."""
    if size[0] * size[1] > UNTILED_FRAME_PIXELS:
        return stylizer
    frames = copy.copy(stylizer)
    frames.tile_size = None
    return frames


def estimate_video(src: str | os.PathLike, stylizer: Stylizer, *, regions=None, strength=1.0,
                   harmonize: float = 0.0, faces=None, style_image=None,
                   max_seconds: float | None = DEFAULT_MAX_SECONDS,
                   detect_every: int = DEFAULT_DETECT_EVERY) -> VideoEstimate:
    """Time the first ``detect_every`` frames of ``src`` (one face detection and the tracked
    frames after it) with the settings :func:`stylize_video` will use, and scale to the clip.

    Raises:
        InvalidImageError: ``src`` is not a readable video, or longer than ``max_seconds``.
    """
    bounded_int("detect_every", detect_every, 1, 1000)
    start = time.perf_counter()
    reader, fps, (width, height), total = _open_clip(Path(src), max_seconds)
    _has_audio(Path(src))
    setup = 2 * (time.perf_counter() - start)
    frame_stylizer = _frame_stylizer(stylizer, (width, height))
    state = TemporalState(detect_every=detect_every)
    timed = 0
    start = time.perf_counter()
    try:
        for _ in _stylized_frames(_frames(itertools.islice(reader, detect_every), width, height), frame_stylizer,
                                  state, regions=regions, strength=strength, harmonize=harmonize, faces=faces,
                                  style_image=style_image):
            timed += 1
    finally:
        reader.close()
    return VideoEstimate(frames=total, fps=fps, seconds_per_frame=(time.perf_counter() - start) / max(timed, 1),
                         setup_seconds=setup)


def stylize_video(src: str | os.PathLike, dst: str | os.PathLike, stylizer: Stylizer, *, regions=None,
                  strength=1.0, harmonize: float = 0.0, faces=None, style_image=None,
                  max_seconds: float | None = DEFAULT_MAX_SECONDS,
                  smoothing: float = 0.6, detect_every: int = DEFAULT_DETECT_EVERY, progress=True) -> VideoInfo:
    """Stylize every frame of ``src`` into ``dst`` (MP4), keeping ``src``'s audio.

    Args:
        src, dst: input video (anything ffmpeg reads) and output ``.mp4`` path.
        stylizer: a loaded style (:func:`portrait_stylize.load_style`).
        regions, strength, harmonize, faces, style_image: as :meth:`Stylizer.__call__`, for every frame.
        max_seconds: refuse longer clips (``None``: no limit).
        smoothing: weight of the previous frame when averaging face landmarks and region masks
            over time, in [0, 1); 0 treats every frame on its own.
        detect_every: detect faces on every n-th frame and track them in between (1 = every frame).
        progress: ``True`` for a tqdm bar, or a callable ``(done, total)`` for other front ends.

    Raises:
        InvalidImageError: ``src`` is not a readable video, or longer than ``max_seconds``.
    """
    import imageio_ffmpeg

    src, dst = Path(src), Path(dst)
    if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)) or not 0.0 <= smoothing < 1.0:
        raise InvalidArgumentError(f"smoothing must be a number in [0, 1), got {smoothing!r}")
    bounded_int("detect_every", detect_every, 1, 1000)
    if dst.resolve() == src.resolve():
        raise InvalidArgumentError(f"{dst} is the input video itself; "
                                   "choose another output name (inputs are never overwritten)")
    reader, fps, (width, height), total = _open_clip(src, max_seconds)
    audio = _has_audio(src)
    state = TemporalState(smoothing=smoothing, detect_every=detect_every)
    stylizer = _frame_stylizer(stylizer, (width, height))
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.stem}."))
    out_path = tmp / "out.mp4"
    writer = imageio_ffmpeg.write_frames(str(out_path), (width, height), fps=fps, codec="libx264", quality=8,
                                         macro_block_size=1, pix_fmt_out="yuv420p",
                                         audio_path=str(src) if audio else None, audio_codec="aac" if audio else None)
    writer.send(None)
    count = 0
    bar = tqdm(total=total, unit="frame", desc="video", disable=progress is not True)
    try:
        for result in _stylized_frames(_frames(reader, width, height), stylizer, state, regions=regions,
                                       strength=strength, harmonize=harmonize, faces=faces, style_image=style_image):
            writer.send(np.ascontiguousarray(np.asarray(result.convert("RGB"))))
            count += 1
            bar.update(1)
            if callable(progress):
                progress(count, total)
        writer.close()
        os.replace(out_path, dst)
    finally:
        bar.close()
        reader.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return VideoInfo(frames=count, fps=fps, size=(width, height), audio=audio)
