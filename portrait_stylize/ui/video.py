"""The video tab's job: estimate a clip's work from its first frames before anything starts,
refuse clips beyond the limits the caller sets (with the estimate and how far to trim), then
stylize the clip frame by frame with progress."""

from __future__ import annotations

import os
from collections.abc import Callable

from ..errors import PortraitStylizeError
from ..video import VideoEstimate, estimate_video, stylize_video
from .catalogue import stylizer_for
from .errors import UserError, user_message
from .result_files import result_path

NO_CLIP = "Upload a short video clip first."


def video_estimate(path: str | os.PathLike | None, style: str, regions: list[str] | None = None,
                   strength: float = 1.0, face_backend: str | None = None, *, max_seconds: float | None = None,
                   max_work_seconds: float | None = None) -> VideoEstimate:
    """Time the first frames of an uploaded clip with these settings.

    Args:
        max_seconds: refuse clips longer than this (``None``: any length).
        max_work_seconds: refuse clips whose estimated work here is longer than this (``None``: any).

    Raises:
        UserError: no clip, an unreadable one, or one beyond a limit (the message gives the estimate
            and how far to trim).
    """
    if path is None:
        raise UserError(NO_CLIP)
    try:
        estimate = estimate_video(path, stylizer_for(style, face_backend), regions=list(regions or []) or None,
                                  strength=strength, max_seconds=max_seconds)
    except PortraitStylizeError as exc:
        raise UserError(user_message(exc)) from None
    if max_work_seconds is not None and estimate.seconds > max_work_seconds:
        longest = max_work_seconds / estimate.seconds_per_frame / estimate.fps
        raise UserError(f"This clip is {estimate.describe()}; this demo takes clips of up to "
                        f"{max_work_seconds / 60:g} min of work. Trim it to about {longest:.0f} s, make it "
                        "smaller, or run `portrait-stylize video` on your own machine.")
    return estimate


def describe_video(path: str | os.PathLike | None, style: str, regions: list[str] | None = None,
                   strength: float = 1.0, face_backend: str | None = None, *, max_seconds: float | None = None,
                   max_work_seconds: float | None = None) -> str:
    """The line shown under an uploaded clip before anything starts: the estimate, or why the clip
    is refused (limits as :func:`video_estimate`); ``""`` without a clip."""
    if path is None:
        return ""
    try:
        estimate = video_estimate(path, style, regions, strength, face_backend, max_seconds=max_seconds,
                                  max_work_seconds=max_work_seconds)
    except UserError as exc:
        return str(exc)
    return f"{estimate.describe()}."


def run_video(path: str | os.PathLike | None, style: str, regions: list[str] | None = None, strength: float = 1.0,
              face_backend: str | None = None,
              progress: Callable[[int, int, VideoEstimate], object] | None = None, *,
              max_seconds: float | None = None, max_work_seconds: float | None = None,
              keep_results: int | None = None) -> str:
    """Stylize an uploaded clip after checking its estimate against the limits (as
    :func:`video_estimate`); returns the MP4's path, kept among the newest ``keep_results``
    results (``None``: all). ``progress(done, total, estimate)`` is told each frame.

    Raises:
        UserError: as :func:`video_estimate`, or the clip fails part-way.
    """
    estimate = video_estimate(path, style, regions, strength, face_backend, max_seconds=max_seconds,
                              max_work_seconds=max_work_seconds)
    out = result_path("stylized.mp4", keep_results)
    report = (lambda done, total: progress(done, total, estimate)) if progress else False
    try:
        stylize_video(path, out, stylizer_for(style, face_backend), regions=list(regions or []) or None,
                      strength=strength, max_seconds=max_seconds, progress=report)
    except PortraitStylizeError as exc:
        raise UserError(user_message(exc)) from None
    return str(out)
