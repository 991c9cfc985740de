"""The face models the package ships: MediaPipe 0.10.21's own, converted reproducibly, checked on load."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from portrait_stylize.convert.tflite_reader import load_tflite
from portrait_stylize.errors import InvalidArgumentError, InvalidStyleError
from portrait_stylize.faces import face_models
from portrait_stylize.faces.face_models import FACE_MODELS, load_face_model

from helpers import REPO

sys.path.insert(0, str(REPO / "tools"))
import make_face_models

#: Input side and value range of each model (docs/face-models.md).
INPUTS = {"face_detection_short_range": (128, -1.0), "face_detection_full_range_sparse": (192, -1.0),
          "face_landmark_with_attention": (192, 0.0), "selfie_segmentation": (256, 0.0)}


def _mediapipe_files() -> dict[str, bytes]:
    if importlib.util.find_spec("mediapipe") is None:
        pytest.skip("mediapipe 0.10.21 (the release the models come from) is not installed")
    root = Path(importlib.util.find_spec("mediapipe").origin).parents[1]
    return {name: (root / member).read_bytes() for name, member in make_face_models.MODELS.items()}


def _input(name: str, batch: int = 1) -> torch.Tensor:
    side, low = INPUTS[name]
    generator = torch.Generator().manual_seed(0)
    return torch.rand(batch, side, side, 3, generator=generator) * (1.0 - low) + low


@pytest.mark.parametrize("name", FACE_MODELS)
def test_a_shipped_model_computes_what_mediapipes_file_does(name, tmp_path):
    """Bit for bit: the float16 constants shipped are exactly the file's, the graph the same."""
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(_mediapipe_files()[name])
    reference = load_tflite(path)
    x = _input(name, batch=2)
    with torch.inference_mode():
        ours, theirs = load_face_model(name)(x), reference(x)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.shape[0] == 2 and torch.equal(a, b)


def test_the_files_come_from_the_pinned_release_and_are_reproduced_byte_for_byte(tmp_path):
    files = _mediapipe_files()
    sources = json.loads((face_models.MODELS_DIR / "sources.json").read_text())
    assert sources["release"]["sha256"] == make_face_models.WHEEL_SHA256
    for name, data in files.items():
        assert hashlib.sha256(data).hexdigest() == sources["models"][name]["tflite_sha256"], name
    make_face_models.write_models(files, tmp_path)
    for shipped in face_models.MODELS_DIR.iterdir():
        assert (tmp_path / shipped.name).read_bytes() == shipped.read_bytes(), shipped.name


def test_the_tool_refuses_a_wheel_that_is_not_the_pinned_one(tmp_path):
    fake = tmp_path / make_face_models.WHEEL
    fake.write_bytes(b"PK not the release")
    with pytest.raises(SystemExit, match="not the 05dc4a9e"):
        make_face_models.read_models(fake)


class TestLoading:
    @pytest.fixture
    def copy(self, tmp_path, monkeypatch):
        """The shipped models in a scratch folder the package reads instead."""
        folder = tmp_path / "face_models"
        shutil.copytree(face_models.MODELS_DIR, folder)
        monkeypatch.setattr(face_models, "MODELS_DIR", folder)
        face_models._load.cache_clear()
        face_models._sources.cache_clear()
        yield folder
        face_models._load.cache_clear()
        face_models._sources.cache_clear()

    @pytest.mark.parametrize("name", FACE_MODELS)
    def test_every_model_takes_a_batch_and_gives_finite_outputs(self, name):
        with torch.inference_mode():
            one = load_face_model(name)(_input(name))
            two = load_face_model(name)(_input(name, batch=2))
        for a, b in zip(one, two):
            assert b.shape[0] == 2 and torch.isfinite(b).all()
            assert torch.allclose(a[0], b[0], atol=1e-5 * float(b.abs().max()) + 1e-6)

    def test_the_model_is_loaded_once_and_shared(self):
        assert load_face_model("selfie_segmentation") is load_face_model("selfie_segmentation", "cpu")

    def test_a_damaged_file_is_named(self, copy):
        path = copy / "selfie_segmentation.safetensors"
        data = bytearray(path.read_bytes())
        data[-1] ^= 0xFF
        path.write_bytes(bytes(data))
        with pytest.raises(InvalidStyleError, match="selfie_segmentation.safetensors: sha256 .* damaged"):
            load_face_model("selfie_segmentation")
        assert np.isfinite(load_face_model("face_detection_short_range")(_input("face_detection_short_range"))[0]
                           .numpy()).all()  # the others still load

    def test_a_missing_file_is_named(self, copy):
        (copy / "face_detection_short_range.json").unlink()
        with pytest.raises(InvalidStyleError, match="face_detection_short_range.json: the face model cannot be read"):
            load_face_model("face_detection_short_range")

    def test_an_unknown_name_is_refused(self):
        with pytest.raises(InvalidArgumentError, match="unknown face model 'hand'"):
            load_face_model("hand")
