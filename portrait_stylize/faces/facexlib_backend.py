"""RetinaFace detection and BiSeNet face parsing from facexlib.

facexlib's weights come from its GitHub releases on first use, into ``model_rootpath``
(``detection_Resnet50_Final.pth``, ``parsing_bisenet.pth``; see :data:`WEIGHT_URLS`), fetched by our
downloader (:mod:`portrait_stylize.common.downloads`: the stall limit, resumed bodies, nothing
partial left) rather than facexlib's (torch.hub's urllib, which waits forever on a silent server);
put them there yourself to work offline. In offline mode (:func:`portrait_stylize.common.offline.is_offline`)
nothing is downloaded: a missing file raises :class:`~portrait_stylize.errors.StyleNotCachedError`
naming the file, its URL and the folder to put it in; so does a download that fails. Both are
plain state dicts, loaded by ``torch.load`` (``weights_only`` by default in PyTorch >= 2.6).

BiSeNet (CelebAMask-HQ, 19 classes) sees more than MediaPipe: ears, neck and clothes too. It
parses each face on a 512² aligned crop; labels are warped back with nearest-neighbour sampling.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..common.downloads import download
from ..common.offline import OFFLINE_VARIABLES, is_offline
from ..errors import StyleDownloadError, StyleNotCachedError
from . import align
from .backend import FaceBackend
from .face import Face, merge_detections
from .parsing import FaceParse, Parsing

#: BiSeNet's output classes, in channel order (face-parsing.PyTorch / CelebAMask-HQ).
BISENET_CLASSES = ("background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
                   "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat")
#: Our region -> BiSeNet classes. Glasses, earrings, necklaces and hats belong to no region.
REGION_CLASSES = {"skin": ("skin",), "brows": ("l_brow", "r_brow"), "eyes": ("l_eye", "r_eye"),
                  "nose": ("nose",), "lips": ("u_lip", "l_lip"), "mouth": ("mouth",), "hair": ("hair",),
                  "ears": ("l_ear", "r_ear"), "neck": ("neck",), "clothes": ("cloth",), "background": ("background",)}
REGIONS = tuple(REGION_CLASSES)
WEIGHT_FILES = ("detection_Resnet50_Final.pth", "parsing_bisenet.pth")
#: Where facexlib downloads each weight file from (the URLs hard-coded in facexlib 0.3).
WEIGHT_URLS = {
    "detection_Resnet50_Final.pth": "https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth",
    "parsing_bisenet.pth": "https://github.com/xinntao/facexlib/releases/download/v0.2.0/parsing_bisenet.pth",
}
_PARSE_SIZE = 512
_PARSE_SCALE = 0.78  # the ArcFace template at this scale is FFHQ's 512² alignment (eye distance ~126 px)
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def default_root() -> Path:
    """Where facexlib weights live: ``$PORTRAIT_STYLIZE_FACEXLIB_DIR`` or ``~/.cache/portrait-stylize/facexlib``."""
    env = os.environ.get("PORTRAIT_STYLIZE_FACEXLIB_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "portrait-stylize" / "facexlib"


def weights_present(root: str | Path | None = None) -> bool:
    """Whether both facexlib weight files are already in ``root`` (no download needed)."""
    return not missing_weights(root)


def missing_weights(root: str | Path | None = None) -> list[str]:
    """The names of the facexlib weight files not (yet) in ``root``, in :data:`WEIGHT_FILES` order."""
    root = Path(root) if root is not None else default_root()
    return [name for name in WEIGHT_FILES if not (root / name).is_file()]


def _by_hand(names: list[str], root: Path) -> str:
    files = "; ".join(f"{name} from {WEIGHT_URLS[name]}" for name in names)
    return (f"download {files}, and put {'it' if len(names) == 1 else 'them'} in the folder {root} "
            "(set PORTRAIT_STYLIZE_FACEXLIB_DIR to use another folder), or use the 'mediapipe' face backend")


def ensure_weights(root: str | Path | None = None) -> Path:
    """Make sure both weight files are in ``root`` (default :func:`default_root`), downloading
    the missing ones unless offline; return the absolute folder.

    Raises:
        StyleNotCachedError: a file is missing and offline mode is on (nothing is attempted over
            the network), or its download failed; the message names the file, its URL and the
            folder to put it in by hand.
    """
    root = (Path(root) if root is not None else default_root()).expanduser().absolute()
    missing = missing_weights(root)
    if not missing:
        return root
    if is_offline():
        raise StyleNotCachedError(
            f"facexlib face backend: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not in {root} "
            f"and offline mode is on ({' or '.join(OFFLINE_VARIABLES)}); unset it to download, "
            f"or {_by_hand(missing, root)}")
    for i, name in enumerate(missing):
        url = WEIGHT_URLS[name]
        try:
            download(url, root / name, label=f"facexlib face backend: {name}", fallback=_by_hand(missing[i:], root))
        except StyleDownloadError as exc:  # an HTTP error or a broken body: unreachable ones say all this already
            raise StyleNotCachedError(f"{exc}; or {_by_hand(missing[i:], root)}") from None
    return root


def labels_to_masks(labels: np.ndarray) -> dict[str, np.ndarray]:
    """BiSeNet label map ``(H, W)`` int -> our region name -> bool mask (absent if empty)."""
    index = {name: i for i, name in enumerate(BISENET_CLASSES)}
    masks = {region: np.isin(labels, [index[c] for c in classes]) for region, classes in REGION_CLASSES.items()}
    return {region: mask for region, mask in masks.items() if mask.any()}


class FacexlibBackend(FaceBackend):
    """Face detection (RetinaFace-ResNet50) + parsing (BiSeNet) with facexlib."""

    name = "facexlib"
    regions = REGIONS

    def __init__(self, model_rootpath: str | Path | None = None, device: str | torch.device = "cpu",
                 min_score: float = 0.9) -> None:
        from facexlib.detection import init_detection_model
        from facexlib.parsing import init_parsing_model

        root = str(ensure_weights(model_rootpath or None))  # facexlib then finds both files and downloads nothing
        self.device = torch.device(device)
        self._detector = init_detection_model("retinaface_resnet50", device=self.device, model_rootpath=root)
        self._parser = init_parsing_model("bisenet", device=self.device, model_rootpath=root)
        self.min_score = min_score

    @torch.inference_mode()
    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 ``(H, W, 3)`` image, sorted left to right."""
        rows = self._detector.detect_faces(np.ascontiguousarray(image[..., ::-1]), conf_threshold=self.min_score)
        faces = [Face(box=tuple(float(v) for v in row[:4]), landmarks=np.asarray(row[5:15], np.float64).reshape(5, 2),
                      score=float(row[4])) for row in rows]
        return merge_detections(faces)

    @torch.inference_mode()
    def parse(self, image: np.ndarray, faces: list[Face]) -> Parsing:
        """Region masks per face from BiSeNet on aligned 512² crops; background = not any face's
        foreground (everything outside the crops counts as background)."""
        h, w = image.shape[:2]
        foreground = np.zeros((h, w), bool)
        parsed = []
        for face in faces:
            matrix = align.crop_transform(face.landmarks, _PARSE_SIZE, _PARSE_SCALE)
            crop = align.warp_to_crop(image, matrix, _PARSE_SIZE).astype(np.float32) / 255.0
            x = ((torch.from_numpy(crop).permute(2, 0, 1)[None] - torch.tensor(_MEAN)[:, None, None])
                 / torch.tensor(_STD)[:, None, None])
            labels = self._parser(x.to(self.device))[0].argmax(1)[0].cpu().numpy().astype(np.uint8)
            window = align.crop_footprint(matrix, (h, w), _PARSE_SIZE)
            # Label 255 marks pixels outside the crop after warping back.
            back = align.warp_from_crop(labels + 1, matrix, window, interpolation=0).astype(np.int16) - 1
            masks = labels_to_masks(np.where(back < 0, 0, back))
            x0, y0, x1, y1 = window
            foreground[y0:y1, x0:x1] |= (back > 0)
            masks.pop("background", None)
            parsed.append(FaceParse(window=window, masks=masks))
        return Parsing(faces=parsed, image_masks={"background": ~foreground})
