"""Make the face models the package ships, from MediaPipe's own release: reproducible, offline after the download.

    python tools/make_face_models.py                       # download the pinned wheel from PyPI
    python tools/make_face_models.py --wheel mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl

MediaPipe 0.10.21's wheel carries its face detection, face mesh and selfie segmentation models as
TFLite files (Apache-2.0). This script takes them from the wheel named by :data:`WHEEL` (checked
against the sha256 PyPI publishes for it before anything is read), converts each into a
:class:`~portrait_stylize.models.tflite_graph.TFLiteGraph` description (``NAME.json``) and its
constants (``NAME.safetensors``, float16: every constant of these models is a float16 value), and
writes them with ``sources.json`` (where each came from, its sha256, the licence) into
``portrait_stylize/data/face_models/``. The same wheel always gives byte-identical files.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from portrait_stylize.common.files import write_atomically  # noqa: E402
from portrait_stylize.convert.tflite_reader import read_tflite_graph  # noqa: E402

#: The release the models come from: a wheel file as PyPI lists it, and the sha256 PyPI publishes for it.
WHEEL = "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl"
WHEEL_SHA256 = "05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3"
WHEEL_INDEX = "https://pypi.org/simple/mediapipe/"
#: Shipped name -> the model's path inside the wheel.
MODELS = {
    "face_detection_short_range": "mediapipe/modules/face_detection/face_detection_short_range.tflite",
    "face_detection_full_range_sparse": "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
    "face_landmark_with_attention": "mediapipe/modules/face_landmark/face_landmark_with_attention.tflite",
    "selfie_segmentation": "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
}
OUT = REPO / "portrait_stylize" / "data" / "face_models"


def download_wheel(folder: Path) -> Path:
    """The pinned wheel, downloaded from PyPI into ``folder`` (its URL read from PyPI's JSON index)."""
    request = urllib.request.Request(WHEEL_INDEX, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        files = json.load(answer)["files"]
    url = next(f["url"] for f in files if f["filename"] == WHEEL)
    path = folder / WHEEL
    with urllib.request.urlopen(url, timeout=300) as answer:
        path.write_bytes(answer.read())
    return path


def read_models(wheel: Path) -> dict[str, bytes]:
    """The TFLite files of :data:`MODELS` from ``wheel``, after its sha256 matched :data:`WHEEL_SHA256`."""
    data = wheel.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != WHEEL_SHA256:
        raise SystemExit(f"error: {wheel}: sha256 {digest}, not the {WHEEL_SHA256} PyPI publishes for {WHEEL}")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(member) for name, member in MODELS.items()}


def _write(path: Path, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically, readable like any file the user makes; its sha256."""
    write_atomically(path, lambda tmp: Path(tmp).write_bytes(data), follow_umask=True)
    return hashlib.sha256(data).hexdigest()


def _json(value: object) -> bytes:
    return (json.dumps(value, indent=1, sort_keys=True) + "\n").encode()


def write_models(tflite: dict[str, bytes], out: Path) -> None:
    """Convert each TFLite file and write ``NAME.json``, ``NAME.safetensors`` and ``sources.json`` into ``out``."""
    from safetensors.torch import save

    out.mkdir(parents=True, exist_ok=True)
    sources = {"release": {"wheel": WHEEL, "sha256": WHEEL_SHA256, "index": WHEEL_INDEX},
               "licence": "Apache-2.0 (Copyright The MediaPipe Authors); see NOTICE", "models": {}}
    with tempfile.TemporaryDirectory() as scratch:
        for name, data in tflite.items():
            path = Path(scratch) / f"{name}.tflite"
            path.write_bytes(data)
            spec, constants = read_tflite_graph(path)
            halves = {key: value.half() for key, value in constants.items()}
            if any(not value.float().equal(constants[key]) for key, value in halves.items()):
                raise SystemExit(f"error: {name}: a constant is not a float16 value; store it as float32")
            sources["models"][name] = {
                "from": MODELS[name], "tflite_sha256": hashlib.sha256(data).hexdigest(),
                "json_sha256": _write(out / f"{name}.json", _json(spec)),
                "safetensors_sha256": _write(out / f"{name}.safetensors", save(halves))}
    _write(out / "sources.json", _json(sources))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", type=Path, help=f"a local copy of {WHEEL} (default: download it from PyPI)")
    parser.add_argument("--out", type=Path, default=OUT, help="where to write the models (default: the package)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        wheel = args.wheel or download_wheel(Path(folder))
        write_models(read_models(wheel), args.out)
    print(f"wrote {', '.join(MODELS)} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
