"""Faces: detection, 5-point alignment and region parsing, behind one interface.

Two backends (see :data:`FACE_BACKENDS`):

* ``mediapipe`` (MediaPipe 0.10.21's models and graphs, run in PyTorch from the package's own copy
  of the models, works offline, needs no ``mediapipe``): detection, 478-point mesh, selfie
  segmentation; regions skin, brows, eyes, nose, lips, mouth, hair, background.
* ``facexlib``: RetinaFace + BiSeNet (19 classes); also ears, neck, clothes. Weights download
  from GitHub on first use, or are read from ``PORTRAIT_STYLIZE_FACEXLIB_DIR``.

``auto`` uses facexlib when its weights are already on disk and MediaPipe otherwise; force a
choice with ``face_backend=`` or ``PORTRAIT_STYLIZE_FACE_BACKEND``.

Example::

    import portrait_stylize as ps
    faces = ps.detect_faces("group.jpg")        # [Face(box=..., landmarks=(5, 2), score=...), ...]
    parsing = ps.parse_faces("group.jpg", faces)  # per-face region masks + background

Every backend implements :class:`FaceBackend`. May import: ``errors``, ``options``,
:mod:`portrait_stylize.common`, :mod:`portrait_stylize.imaging`, :mod:`portrait_stylize.models`.
"""

from __future__ import annotations

import functools
import logging
import os

import numpy as np
import torch

from ..errors import InvalidArgumentError
from ..imaging.io import ImageInput, load_image
from ..options import FACE_BACKENDS, REGIONS
from .backend import FaceBackend
from .face import LANDMARK_NAMES, Face, enlarge_box, select_faces
from .parsing import FACE_REGIONS, OFF_HEAD_REGIONS, FaceParse, Parsing

logger = logging.getLogger(__name__)

ENV_BACKEND = "PORTRAIT_STYLIZE_FACE_BACKEND"

__all__ = ["FACE_BACKENDS", "FACE_REGIONS", "FaceBackend", "LANDMARK_NAMES", "OFF_HEAD_REGIONS", "REGIONS", "Face",
           "FaceParse", "Parsing", "detect_faces", "enlarge_box", "get_face_backend", "parse_faces",
           "resolve_face_backend", "select_faces"]


def resolve_face_backend(name: str | None = None) -> str:
    """``name`` (or ``$PORTRAIT_STYLIZE_FACE_BACKEND``, or ``auto``) -> ``mediapipe`` or ``facexlib``."""
    from .facexlib_backend import weights_present

    choice = name or os.environ.get(ENV_BACKEND) or "auto"
    if choice not in FACE_BACKENDS:
        raise InvalidArgumentError(f"unknown face backend {choice!r}; choose {', '.join(FACE_BACKENDS)}")
    if choice == "auto":
        choice = "facexlib" if weights_present() else "mediapipe"
        logger.info("face backend: %s (auto: facexlib weights %s)", choice,
                    "found" if choice == "facexlib" else "not on disk")
    return choice


def get_face_backend(name: str | None = None, device: str | torch.device | None = None) -> FaceBackend:
    """The :class:`FaceBackend` for ``name`` (resolved as :func:`resolve_face_backend`) running its
    networks on ``device`` (default CPU; a stylizer passes its own, so faces are found on its GPU);
    one shared instance per resolved name and device, so ``None``, ``"auto"`` and the name they
    resolve to never load the models twice."""
    return _backend_instance(resolve_face_backend(name), str(torch.device(device or "cpu")))


@functools.cache
def _backend_instance(resolved: str, device: str) -> FaceBackend:
    if resolved == "facexlib":
        from .facexlib_backend import FacexlibBackend

        return FacexlibBackend(device=device)
    from .mediapipe_backend import MediapipeBackend

    return MediapipeBackend(device=device)


def _rgb(image: ImageInput) -> np.ndarray:
    return np.asarray(load_image(image).convert("RGB"))


def detect_faces(image: ImageInput, backend: str | None = None) -> list[Face]:
    """Faces in ``image`` (path, bytes, PIL or array; EXIF-upright), sorted left to right."""
    return get_face_backend(backend).detect(_rgb(image))


def parse_faces(image: ImageInput, faces: list[Face] | None = None, backend: str | None = None) -> Parsing:
    """Region masks of ``faces`` (detected when ``None``) in ``image``."""
    rgb = _rgb(image)
    parser = get_face_backend(backend)
    return parser.parse(rgb, parser.detect(rgb) if faces is None else faces)
