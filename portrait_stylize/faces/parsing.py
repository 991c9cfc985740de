"""What a face parser returns: binary region masks per face (in a window) and per image."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Regions that lie on the face itself (inside the face box, up to feathering).
FACE_REGIONS = ("skin", "brows", "eyes", "nose", "lips", "mouth")
#: Regions away from the head, which the aligned face pass (head crops) never reaches.
OFF_HEAD_REGIONS = ("background", "clothes")


@dataclass
class FaceParse:
    """Region masks of one face.

    Attributes:
        window: ``(x0, y0, x1, y1)`` integer image window the masks cover.
        masks: region name -> ``(y1 - y0, x1 - x0)`` bool mask; regions the parser found nothing
            of are absent.
    """

    window: tuple[int, int, int, int]
    masks: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Parsing:
    """Parser output for one image: per-face masks plus whole-image ones (e.g. ``background``)."""

    faces: list[FaceParse]
    image_masks: dict[str, np.ndarray] = field(default_factory=dict)
