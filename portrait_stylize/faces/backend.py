"""The interface every face backend implements (MediaPipe, facexlib, and any added later)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from .face import Face
from .parsing import Parsing


class FaceBackend(ABC):
    """Finds faces and parses them into regions; what the pipeline asks of faces goes through here.

    Subclasses set :attr:`name` and :attr:`regions` and implement :meth:`detect` and
    :meth:`parse`. Both take ``(H, W, 3)`` uint8 RGB arrays (EXIF-upright), return results in
    that array's pixel coordinates, and must be safe to call from several threads (web servers
    do): a backend whose models are not re-entrant serialises its calls itself.
    """

    #: The name users choose it by (``face_backend=``; one of :data:`portrait_stylize.options.FACE_BACKENDS`).
    name: ClassVar[str]
    #: Region names its parser can produce (a subset of :data:`portrait_stylize.options.REGIONS`).
    regions: ClassVar[tuple[str, ...]]

    @abstractmethod
    def detect(self, image: np.ndarray) -> list[Face]:
        """Every face in ``image`` (``(H, W, 3)`` uint8 RGB), sorted left to right, each with its
        box, five alignment landmarks and score."""

    def detect_many(self, images: list[np.ndarray]) -> list[list[Face]]:
        """:meth:`detect` on each of ``images`` (video frames); a backend whose networks take batches
        runs them once for all the images."""
        return [self.detect(image) for image in images]

    def face_sizes(self, image: np.ndarray) -> list[float]:
        """Box sides (:attr:`Face.size`) of the faces in ``image``, for what needs only their sizes
        (a style's scale); a backend may skip the work landmarks need."""
        return [face.size for face in self.detect(image)]

    @abstractmethod
    def parse(self, image: np.ndarray, faces: list[Face]) -> Parsing:
        """Binary region masks of ``faces`` (as :meth:`detect` returned them) in ``image``:
        per face in a window around it, plus whole-image masks such as ``background``."""
