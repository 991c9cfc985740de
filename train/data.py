"""Unpaired training data: photos and style images in memory, geometry expansion, face extras.

Every random choice comes from a NumPy generator seeded by ``(seed, step, process)``, so a batch
depends only on the step number: resuming from a checkpoint continues with exactly the batches
an uninterrupted run would have seen.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from portrait_stylize.errors import PortraitStylizeError
from portrait_stylize.faces import align, get_face_backend
from portrait_stylize.imaging.io import IMAGE_SUFFIXES, load_image

HEADROOM = 1.25  # images are kept this much larger than the crop, room for scaling and rotation
MAX_WARNINGS = 20  # unreadable files named one per line; the rest are counted


class DataError(ValueError):
    """A data folder is missing, is not a folder, or holds no usable image. The message is one
    line naming the flag, the folder and what is wrong (the scripts print it and exit with 2)."""


@dataclass
class Sample:
    """One training image (uint8 ``(H, W, 3)`` RGB) with optional face extras."""

    image: np.ndarray
    expression: np.ndarray | None = None
    mask: np.ndarray | None = None


@dataclass
class ImageSet:
    """The usable images of a folder, and how many files were skipped and why."""

    samples: list[Sample]
    skipped: dict[str, int] = field(default_factory=dict)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)  # (file, why) of each unreadable file

    def describe(self, name: str) -> str:
        why = ", ".join(f"{n} {reason}" for reason, n in self.skipped.items() if n)
        return f"{name}: {len(self.samples)} images" + (f" (skipped {why})" if why else "")


def list_images(folder: str | Path, flag: str) -> list[Path]:
    """The image files (by suffix) under ``folder``, searched recursively. Raises :class:`DataError`
    when it is missing, is a file, cannot be read or holds no image file."""
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"{flag} {folder}: folder not found")
    if not folder.is_dir():
        raise DataError(f"{flag} {folder}: is a file, not a folder (pass the folder that holds the images)")
    if not os.access(folder, os.R_OK | os.X_OK):
        raise DataError(f"{flag} {folder}: the folder cannot be read (permission denied)")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        others = sorted(p for p in folder.rglob("*") if p.is_file())
        what = (f"only {len(others)} other file(s), e.g. {others[0].relative_to(folder)}" if others
                else "the folder is empty")
        raise DataError(f"{flag} {folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder; {what}")
    return files


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _fit(image: np.ndarray, side: int) -> np.ndarray:
    """Resize so the short side is ``side * HEADROOM``."""
    short = min(image.shape[:2])
    target = round(side * HEADROOM)
    scale = target / short
    size = (max(target, round(image.shape[1] * scale)), max(target, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)


def load_set(folders: list[str | Path], flag: str, side: int, align_faces: bool = False,
             expressions: bool = False, regions: list[str] | None = None, progress: bool = True) -> ImageSet:
    """Read every image of ``folders``; unreadable files (and, with ``align_faces``, images without a
    face) are skipped and counted. ``expressions``/``regions`` attach face extras when a face is found.

    Each unreadable file is named, with the reason, in a ``warning:`` line on stderr (the first
    :data:`MAX_WARNINGS`, then a count) when ``progress`` is on (the scripts' main process), and
    always in :attr:`ImageSet.unreadable`. Raises :class:`DataError` when a folder is missing or
    holds no image file, or when no file at all could be used."""
    files = [f for folder in folders for f in list_images(folder, flag)]
    backend = get_face_backend("mediapipe") if (align_faces or expressions or regions) else None
    samples, skipped, unreadable = [], {"unreadable": 0, "without a face": 0}, []
    for path in tqdm(files, desc=f"reading {flag}", disable=not progress, unit="img"):
        try:
            rgb = np.asarray(load_image(path).convert("RGB"))
        except Exception as exc:
            if isinstance(exc, PortraitStylizeError):  # its message names the file
                why = _one_line(exc)
            else:
                why = _one_line(f"{path}: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc} "
                                f"({type(exc).__name__})")
            skipped["unreadable"] += 1
            unreadable.append((path, why))
            if progress and len(unreadable) <= MAX_WARNINGS:
                tqdm.write(f"warning: {flag}: skipped {why}", file=sys.stderr)
            continue
        face = None
        if backend is not None:
            faces = backend.detect(rgb)
            face = max(faces, key=lambda f: f.size, default=None)
            if align_faces:
                if face is None:
                    skipped["without a face"] += 1
                    continue
                rgb = align.warp_to_crop(rgb, align.crop_transform(face.landmarks))
                faces = backend.detect(rgb)
                face = max(faces, key=lambda f: f.size, default=None)
        sample = Sample(_fit(rgb, side))
        if face is not None:
            if expressions:
                sample.expression = backend.opening_ratios(face)
            if regions:
                parsed = backend.parse(rgb, [face]).faces[0]
                mask = np.zeros(rgb.shape[:2], np.uint8)
                x0, y0, x1, y1 = parsed.window
                for name in regions:
                    if name in parsed.masks:
                        mask[y0:y1, x0:x1] |= parsed.masks[name]
                sample.mask = cv2.resize(mask, sample.image.shape[1::-1], interpolation=cv2.INTER_NEAREST) > 0
        samples.append(sample)
    if progress and len(unreadable) > MAX_WARNINGS:
        tqdm.write(f"warning: {flag}: skipped {len(unreadable) - MAX_WARNINGS} more unreadable file(s)",
                   file=sys.stderr)
    if not samples:
        why = ", ".join(f"{n} {reason}" for reason, n in skipped.items() if n)
        example = f"; e.g. {unreadable[0][1]}" if unreadable else ""
        raise DataError(f"{flag} {', '.join(str(f) for f in folders)}: none of the {len(files)} files "
                        f"could be used ({why}){example}")
    return ImageSet(samples, skipped, unreadable)


def step_rng(seed: int, step: int, process: int = 0) -> np.random.Generator:
    """The generator for everything random in training step ``step`` on process ``process``."""
    return np.random.default_rng([seed, step, process])


def _affine(rng: np.random.Generator, shape: tuple[int, int], side: int, expand: bool) -> tuple[np.ndarray, bool]:
    """Image -> crop matrix: scale 0.8-1.2, rotation ±10°, random shift and horizontal flip."""
    h, w = shape
    base = side * HEADROOM / min(h, w)
    scale, angle, flip = ((rng.uniform(0.8, 1.2), rng.uniform(-10, 10), rng.random() < 0.5) if expand
                          else (1.0, 0.0, False))
    cx = w / 2 + rng.uniform(-0.1, 0.1) * min(h, w) * expand
    cy = h / 2 + rng.uniform(-0.1, 0.1) * min(h, w) * expand
    k, t = base * scale, math.radians(angle)
    rot = k * np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    matrix = np.hstack([rot, (np.array([side / 2, side / 2]) - rot @ np.array([cx, cy]))[:, None]])
    if flip:
        matrix = np.array([[-1, 0, side - 1], [0, 1, 0]]) @ np.vstack([matrix, [0, 0, 1]])
    return matrix, flip


def batch(samples: list[Sample], rng: np.random.Generator, size: int, side: int, expand: bool = True,
          indices: list[int] | None = None) -> dict:
    """``size`` random samples (or the given ``indices``), each randomly expanded, as tensors.

    Returns ``{"image": (B, 3, side, side) in [-1, 1], "expression": (B, 3), "valid": (B,) bool,
    "mask": (B, 1, side, side) float}`` (expression/mask zeros where a sample has none).
    """
    images, expressions, valid, masks = [], [], [], []
    for index in rng.integers(len(samples), size=size) if indices is None else indices:
        sample = samples[index]
        matrix, flip = _affine(rng, sample.image.shape[:2], side, expand)
        images.append(cv2.warpAffine(sample.image, matrix, (side, side), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REFLECT_101))
        expression = sample.expression
        valid.append(expression is not None)
        expressions.append(np.zeros(3) if expression is None else (expression[[1, 0, 2]] if flip else expression))
        mask = sample.mask if sample.mask is not None else np.zeros(sample.image.shape[:2], bool)
        masks.append(cv2.warpAffine(mask.astype(np.uint8), matrix, (side, side), flags=cv2.INTER_NEAREST))
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
    return {"image": x, "expression": torch.tensor(np.stack(expressions), dtype=torch.float32),
            "valid": torch.tensor(valid), "mask": torch.from_numpy(np.stack(masks)).float()[:, None]}
