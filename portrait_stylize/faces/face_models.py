"""MediaPipe's face models as the package ships them, run in PyTorch (no MediaPipe needed).

``data/face_models/`` holds, for each model, its graph (``NAME.json``) and float16 constants
(``NAME.safetensors``), converted from MediaPipe 0.10.21's Apache-2.0 TFLite files by
``tools/make_face_models.py``; ``sources.json`` names the release, each file's sha256 and the licence
(docs/face-models.md). Each file is checked against that sha256 when first loaded, so a damaged
installation is named instead of giving wrong faces.

Models (inputs NHWC float32 RGB, free batch; outputs as the TFLite files define them):

* ``face_detection_short_range``: 128² in [-1, 1], faces within about 2 m (BlazeFace);
* ``face_detection_full_range_sparse``: 192² in [-1, 1], faces within about 5 m;
* ``face_landmark_with_attention``: 192² in [0, 1] face crop -> 468 mesh points refined around
  lips, eyes and irises;
* ``selfie_segmentation``: 256² in [0, 1] -> person probability.

:func:`run_face_model` runs one: on the CPU, the two detectors (they run on every call, so their
cost is every call's) run in OpenVINO where it is installed (:mod:`..models.tflite_openvino`, the
same values to 1e-4, about twice as fast as PyTorch) from the first call on, so that a request
gives the same answer whenever it comes (a first call in PyTorch and later ones in OpenVINO
differed in the last bits, which moved a hair mask's pixels); the rest, and every model on
another device, in PyTorch.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch

from ..common.style_files import check_safetensors
from ..errors import InvalidArgumentError, InvalidStyleError
from ..models.tflite_graph import TFLiteGraph
from ..models.tflite_openvino import OpenVINOTFLiteGraph, supports

_LOG = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parents[1] / "data" / "face_models"
FACE_MODELS = ("face_detection_short_range", "face_detection_full_range_sparse", "face_landmark_with_attention",
               "selfie_segmentation")


@functools.cache
def _sources() -> dict:
    return json.loads((MODELS_DIR / "sources.json").read_text(encoding="utf-8"))


def _checked(path: Path, sha256: str) -> Path:
    """``path`` if its sha256 is the recorded one; else an error naming the file."""
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise InvalidStyleError(f"{path}: the face model cannot be read ({exc}); reinstall portrait-stylize") from None
    if digest != sha256:
        raise InvalidStyleError(f"{path}: sha256 {digest} is not the {sha256} it was shipped with; the installation "
                                "is damaged, reinstall portrait-stylize")
    return path


@functools.cache
def _load(name: str, device: str) -> TFLiteGraph:
    from safetensors.torch import load_file

    record = _sources()["models"][name]
    spec = json.loads(_checked(MODELS_DIR / f"{name}.json", record["json_sha256"]).read_text(encoding="utf-8"))
    weights = _checked(MODELS_DIR / f"{name}.safetensors", record["safetensors_sha256"])
    check_safetensors(weights)
    return TFLiteGraph(spec, load_file(str(weights))).to(device).eval().requires_grad_(False)


def load_face_model(name: str, device: str | torch.device | None = None) -> TFLiteGraph:
    """The shipped model ``name`` (one of :data:`FACE_MODELS`) on ``device`` (default CPU), loaded
    once per process and device and shared (its forward keeps no state, so threads may share it).

    Raises:
        InvalidArgumentError: an unknown name.
        InvalidStyleError: a shipped file is missing or damaged.
    """
    if name not in FACE_MODELS:
        raise InvalidArgumentError(f"unknown face model {name!r}; the package ships {', '.join(FACE_MODELS)}")
    return _load(name, str(torch.device(device or "cpu")))


@functools.cache
def _openvino(name: str) -> OpenVINOTFLiteGraph | None:
    """The CPU model ``name`` compiled by OpenVINO, or ``None`` (not installed, or a graph it cannot build)."""
    graph = load_face_model(name)
    if not supports(graph):
        return None
    try:
        return OpenVINOTFLiteGraph(graph)
    except (ImportError, RuntimeError) as exc:  # not installed, or no CPU plugin for this machine
        _LOG.debug("face model %s runs in PyTorch: OpenVINO is not usable (%s)", name, exc)
        return None


def run_face_model(name: str, batch: np.ndarray, device: str | torch.device | None = None,
                   any_size: bool = False) -> list[np.ndarray]:
    """The shipped model ``name`` on a ``(B, H, W, C)`` float32 NHWC ``batch`` (``any_size``: of any
    height and width that are multiples of its ``size_multiple``, a fully convolutional model):
    its outputs, float32 arrays with batch first, in the file's order. See the module docstring
    for where it runs."""
    target = torch.device(device or "cpu")
    compiled = _openvino(name) if target.type == "cpu" else None
    if compiled is not None:
        return list(compiled.forward_any_size(batch) if any_size else compiled.forward(batch))
    model = load_face_model(name, target)
    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(target)
        outputs = model.forward_any_size(x) if any_size else model(x)
    return [out.float().cpu().numpy() for out in outputs]
