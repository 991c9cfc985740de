"""Stylize video clips frame by frame, keeping the audio and smoothing faces and masks over time.

Decoding and encoding use the ffmpeg binary that ships inside the ``imageio-ffmpeg`` wheel, so no
system ffmpeg is needed. The output is H.264 (yuv420p) MP4 with the input's audio track (AAC).

Timing: every decoded frame is stylized and written exactly once, in order. The MP4 runs at the
constant rate that spreads those frames over the input's length: the input's own rate for a
constant-rate clip; for a variable-rate one (phones, screen recordings) its average rate, so the
length and the audio at both ends stay, and a frame may show a little earlier or later than in
the input (logged when more than half a frame).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import logging
import os
import re
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from .common.files import write_atomically
from .common.numbers import bounded_int, bounded_number
from .errors import InvalidArgumentError, InvalidImageError
from .faces import Face
from .faces.face import box_iou
from .pipeline import Stylizer

logger = logging.getLogger(__name__)

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
    """What :func:`stylize_video` wrote.

    Attributes:
        frames: frames written: every frame of the input that decodes, once, in order.
        fps: the MP4's constant frame rate: the input's own, or its average for a variable-rate
            clip, so ``frames / fps`` seconds is the input's length (within a frame).
        size: ``(width, height)`` written: the input's, one pixel wider or taller where that was odd
            (H.264 in yuv420p needs even sizes; the last column or row is repeated).
        audio: the input's first audio track was kept (as AAC).
    """

    frames: int
    fps: float
    size: tuple[int, int]
    audio: bool


@dataclass(frozen=True)
class VideoEstimate:
    """How long stylizing a clip will take here, from timing its first frames.

    Attributes:
        frames: frames in the clip (every one that decodes).
        fps: frames per second, as :attr:`VideoInfo.fps`.
        seconds_per_frame: measured on the first :data:`DEFAULT_DETECT_EVERY` frames (one face
            detection and the tracked frames after it), with this machine's style and settings.
        setup_seconds: measured opening the clip (a decoding pass that counts its frames and reads
            their times) and decoding its first frames, which :func:`stylize_video` does again.
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


#: What ffmpeg prints reading a clip: in its header the length and the streams; from the
#: ``showinfo`` filter the time base of the decoded frames, then each frame's time (in that base,
#: ``NOPTS`` when unknown) and size.
_LENGTH = re.compile(r"^\s*Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", re.M)
_STREAM = re.compile(r"^\s*Stream #0:\d+\S*: (Video|Audio): (.*)$", re.M)
_TIME_BASE = re.compile(r"config in time_base: (\d+)/(\d+)")
_FRAME = re.compile(r"\bn:\s*\d+\s+pts:\s*(-?\d+|NOPTS)\s.*?\bs:(\d+)x(\d+)")
#: ffmpeg's own rate for frames that carry no times and a clip of unknown length.
_DEFAULT_RATE = Fraction(25)
#: What an output name may already be besides a regular file; none of them is ever replaced.
_NOT_FILES = {stat.S_IFDIR: "a folder", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
              stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket"}


def _ffmpeg(*args: str) -> list[str]:
    """The command line running the wheel's ffmpeg with ``args``."""
    import imageio_ffmpeg

    return [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", *args]


def _file(path: str | os.PathLike) -> str:
    """``path`` as ffmpeg must be told it, so that a name such as ``pipe:1`` or ``http://x`` is a file."""
    return f"file:{path}"


def _log(src: Path, *output: str) -> str:
    """What ffmpeg says (its stderr) reading ``src`` into ``output``; with none, just the header."""
    return subprocess.run(_ffmpeg("-i", _file(src), *output), capture_output=True, text=True,
                          errors="replace").stderr


@dataclass(frozen=True)
class _Clip:
    """A readable clip (:func:`_open_clip`).

    Attributes:
        path: the file.
        size: ``(width, height)`` of its decoded frames.
        count: how many frames decode.
        rate: the constant frame rate that spreads them over the clip's length (:func:`_even_rate`).
        shift: the most seconds that ``rate`` moves a frame from its own time; 0 at a constant rate.
        audio: it has an audio track.
    """

    path: Path
    size: tuple[int, int]
    count: int
    rate: Fraction
    shift: float
    audio: bool

    def frames(self) -> Iterator[np.ndarray]:
        """Each decoded frame once, in order, as ``(height, width, 3)`` uint8 RGB. Left to itself,
        ffmpeg would repeat or drop frames to fit the constant rate it guesses for the stream (13
        frames of a variable-rate clip came out as 69), hence ``-fps_mode passthrough``."""
        width, height = self.size
        process = subprocess.Popen(_ffmpeg("-i", _file(self.path), "-map", "0:V:0", "-fps_mode", "passthrough",
                                           "-f", "rawvideo", "-pix_fmt", "rgb24", "-"),
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        frame_bytes = width * height * 3
        try:
            while len(raw := process.stdout.read(frame_bytes)) == frame_bytes:
                yield np.frombuffer(raw, np.uint8).reshape(height, width, 3)
        finally:  # also when the caller stops early: no ffmpeg is left running
            process.kill()
            process.wait()
            process.stdout.close()


def _even_rate(times: list[Fraction] | None, count: int, seconds: float | None) -> tuple[Fraction, float]:
    """The constant frame rate that shows ``count`` frames, each once, over their clip's length, and
    the most seconds it moves one from its own time.

    Args:
        times: the frames' times in seconds, in order; ``None`` where ffmpeg knows none.
        seconds: the clip's length from its header, ``None`` if unknown.

    ``(count - 1) / (last time - first time)`` is a constant-rate clip's own rate (30000/1001
    exactly) and a variable-rate clip's average, so the MP4 lasts as long as the input within a
    frame. One frame or no times: spread over the header's length (a still with 10 s of sound
    lasts 10 s), else ffmpeg's 25 fps.
    """
    # ffmpeg reads a rate as a ratio of two integers up to ~10^6: 1001 keeps 30000/1001 exact and
    # any other rate within a millionth of a frame per second.
    if times and count > 1 and times[-1] > times[0]:
        rate = (Fraction(count - 1) / (times[-1] - times[0])).limit_denominator(1001)
        return rate, max(abs(float(at - times[0]) - k / rate) for k, at in enumerate(times))
    return (Fraction(count / seconds).limit_denominator(1001) if seconds else _DEFAULT_RATE), 0.0


def _open_clip(src: Path, max_seconds: float | None) -> _Clip:
    """``src`` as a clip, after one decoding pass that counts its frames and reads their times.

    Raises:
        InvalidImageError: ``src`` is missing or empty, not something ffmpeg reads, has no video
            stream (audio only), is longer than ``max_seconds``, or has no frame that decodes.
    """
    if max_seconds is not None:
        bounded_number("max_seconds", max_seconds, 0.0, 86400.0)
    if not src.is_file() or src.stat().st_size == 0:
        raise InvalidImageError(f"{src}: no such video file, or it is empty")
    header = _log(src)
    if "Input #0" not in header:
        raise InvalidImageError(f"{src}: not a readable video ({(header.strip().splitlines() or ['?'])[-1]})")
    streams = _STREAM.findall(header)
    audio = any(kind == "Audio" for kind, _ in streams)
    # The cover picture of a music file is a video stream to ffmpeg, but no clip (nor is it 0:V).
    if not any(kind == "Video" and "(attached pic)" not in rest for kind, rest in streams):
        raise InvalidImageError(f"{src}: the file has no video stream{' (only audio)' if audio else ''}; "
                                "give a video clip")
    length = _LENGTH.search(header)
    seconds = int(length[1]) * 3600 + int(length[2]) * 60 + float(length[3]) if length else None
    if max_seconds is not None and seconds is not None and seconds > max_seconds:
        raise InvalidImageError(f"{src}: the clip is {seconds:.1f} s long; the limit is {max_seconds:g} s. "
                                "Trim it first (e.g. ffmpeg -t) or raise the limit.")
    log = _log(src, "-map", "0:V:0", "-vf", "showinfo=checksum=0", "-f", "null", "-")
    frames = _FRAME.findall(log)
    if not frames:
        raise InvalidImageError(f"{src}: no frame of its video stream decodes (the stream is empty or damaged); "
                                "give another clip")
    base = Fraction(*map(int, _TIME_BASE.search(log).groups()))
    times = None if any(pts == "NOPTS" for pts, _, _ in frames) else [int(pts) * base for pts, _, _ in frames]
    rate, shift = _even_rate(times, len(frames), seconds)
    return _Clip(src, (int(frames[0][1]), int(frames[0][2])), len(frames), rate, shift, audio)


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


def _even(frame: np.ndarray) -> np.ndarray:
    """``frame`` ``(H, W, 3)`` uint8 with its last row and column repeated where ``H`` or ``W`` is odd:
    H.264 in yuv420p stores colour for 2x2 blocks, so libx264 refuses odd sizes."""
    height, width = frame.shape[:2]
    return np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")


@contextlib.contextmanager
def _encoder(path: str, size: tuple[int, int], rate: Fraction, audio_from: Path | None,
             name: Path) -> Iterator[Callable[[np.ndarray], object]]:
    """``send(frame)`` for an H.264 MP4 at ``path``: C-contiguous ``(height, width, 3)`` uint8 RGB
    frames of ``size`` (even), at ``rate`` frames per second, with ``audio_from``'s first audio
    track as AAC.

    Raises:
        OSError: ffmpeg failed (the disk is full, ...): the message names ``name``, the file
            ``path`` is to become, and gives ffmpeg's first error line rather than its whole log.
    """
    width, height = size
    audio_in, audio_out = (["-i", _file(audio_from)], ["-map", "1:a:0", "-c:a", "aac"]) if audio_from else ([], [])
    # CRF 10: near-transparent, so that the style, not the codec, decides what the clip looks like.
    command = _ffmpeg("-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
                      "-framerate", f"{rate.numerator}/{rate.denominator}", "-i", "-", *audio_in, "-map", "0:v",
                      *audio_out, "-c:v", "libx264", "-crf", "10", "-pix_fmt", "yuv420p", "-f", "mp4", _file(path))
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: nothing reads the log while ffmpeg runs
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log)
        try:
            yield process.stdin.write
        except BrokenPipeError:  # the encoder stopped early: its log says why
            pass
        except BaseException:  # an error or an interrupt here: the output is discarded, so stop at once
            process.kill()
            raise
        finally:
            with contextlib.suppress(BrokenPipeError):  # frames still buffered for an encoder that stopped
                process.stdin.close()
            process.wait()
        if process.returncode:
            log.seek(0)
            lines = (re.sub(r"^(\[[^]]*\]\s*)+", "", line).strip()
                     for line in log.read().decode(errors="replace").splitlines())
            reason = next((line for line in lines if line), f"exit status {process.returncode}")
            raise OSError(f"{name}: ffmpeg could not write the MP4 ({reason}); nothing was written")


def _check_output(src: Path, dst: Path) -> None:
    """Refuse an output that is the input, or that exists and is no regular file: the MP4 is renamed
    into place, which would replace a device node (``-o /dev/null``), a FIFO or a folder."""
    if dst.resolve() == src.resolve():
        raise InvalidArgumentError(f"{dst} is the input video itself; "
                                   "choose another output name (inputs are never overwritten)")
    try:
        mode = dst.stat().st_mode
    except FileNotFoundError:  # a new name
        return
    if not stat.S_ISREG(mode):
        raise InvalidArgumentError(f"{dst} is {_NOT_FILES.get(stat.S_IFMT(mode), 'not a regular file')}, which is "
                                   "never replaced; give a new file name or an existing .mp4 file, e.g. -o out.mp4")


def estimate_video(src: str | os.PathLike, stylizer: Stylizer, *, regions=None, strength=1.0,
                   harmonize: float = 0.0, faces=None, style_image=None,
                   max_seconds: float | None = DEFAULT_MAX_SECONDS,
                   detect_every: int = DEFAULT_DETECT_EVERY) -> VideoEstimate:
    """Time the first ``detect_every`` frames of ``src`` (one face detection and the tracked
    frames after it) with the settings :func:`stylize_video` will use, and scale to the clip.

    Raises:
        InvalidImageError: as :func:`stylize_video`.
    """
    bounded_int("detect_every", detect_every, 1, 1000)
    start = time.perf_counter()
    clip = _open_clip(Path(src), max_seconds)
    with contextlib.closing(clip.frames()) as frames:
        first = list(itertools.islice(frames, detect_every))
    setup = time.perf_counter() - start
    start = time.perf_counter()
    for _ in _stylized_frames(first, _frame_stylizer(stylizer, clip.size), TemporalState(detect_every=detect_every),
                              regions=regions, strength=strength, harmonize=harmonize, faces=faces,
                              style_image=style_image):
        pass
    return VideoEstimate(frames=clip.count, fps=float(clip.rate),
                         seconds_per_frame=(time.perf_counter() - start) / max(len(first), 1), setup_seconds=setup)


def stylize_video(src: str | os.PathLike, dst: str | os.PathLike, stylizer: Stylizer, *, regions=None,
                  strength=1.0, harmonize: float = 0.0, faces=None, style_image=None,
                  max_seconds: float | None = DEFAULT_MAX_SECONDS,
                  smoothing: float = 0.6, detect_every: int = DEFAULT_DETECT_EVERY, progress=True) -> VideoInfo:
    """Stylize every frame of ``src`` into ``dst`` (MP4), keeping ``src``'s audio and length.

    Each frame that decodes is written once, in order, at a constant rate (see the module's note
    on variable-rate clips); odd frame sizes get one repeated column or row. ``dst`` is written to
    a temporary file next to it and renamed into place, so it is never half-written; it must be a
    new name or a regular file.

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
        InvalidArgumentError: ``dst`` is ``src``, or exists and is not a regular file (a device,
            FIFO or folder); a setting out of range.
        InvalidImageError: ``src`` is missing, empty or not a readable video, has no video stream,
            no frame that decodes, or is longer than ``max_seconds``.
        OSError: the MP4 could not be written (the disk is full, ...).
    """
    src, dst = Path(src), Path(dst)
    if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)) or not 0.0 <= smoothing < 1.0:
        raise InvalidArgumentError(f"smoothing must be a number in [0, 1), got {smoothing!r}")
    bounded_int("detect_every", detect_every, 1, 1000)
    _check_output(src, dst)
    clip = _open_clip(src, max_seconds)
    width, height = clip.size
    size = (width + width % 2, height + height % 2)
    if size != clip.size:
        logger.warning("%s: frames of %dx%d; H.264 (yuv420p) needs even sizes, so the MP4 is %dx%d "
                       "(the last column or row repeated)", src, width, height, *size)
    if clip.shift > 0.5 / clip.rate:
        logger.warning("%s: variable frame rate; its %d frames are written evenly at %.4g fps (%.2f s), "
                       "some up to %.2f s from their own times", src, clip.count, clip.rate, clip.count / clip.rate,
                       clip.shift)
    stylizer = _frame_stylizer(stylizer, clip.size)
    state = TemporalState(smoothing=smoothing, detect_every=detect_every)
    written = 0

    def encode(tmp: str) -> None:
        nonlocal written
        with tqdm(total=clip.count, unit="frame", desc="video", disable=progress is not True) as bar, \
                contextlib.closing(clip.frames()) as frames, \
                _encoder(tmp, size, clip.rate, src if clip.audio else None, dst) as send:
            for result in _stylized_frames(frames, stylizer, state, regions=regions, strength=strength,
                                           harmonize=harmonize, faces=faces, style_image=style_image):
                send(_even(np.asarray(result.convert("RGB"))))
                written += 1
                bar.update(1)
                if callable(progress):
                    progress(written, clip.count)

    dst.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(dst, encode, suffix=".mp4", follow_umask=True)
    return VideoInfo(frames=written, fps=float(clip.rate), size=size, audio=clip.audio)
