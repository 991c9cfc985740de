"""``portrait-stylize evaluate`` and :func:`portrait_stylize.evaluation.evaluate.evaluate`, offline, on small
random metric networks: the report's numbers behave as metrics must, and bad input is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from portrait_stylize.cli import main
from portrait_stylize.errors import InvalidArgumentError, InvalidImageError
from portrait_stylize.evaluation.evaluate import MetricNetworks, evaluate
from portrait_stylize.evaluation.metrics import FaceEmbedder, PerceptualDistance, PoolFeatures

from helpers import REPO, seed_metric_cache, tiny_face_onnx

EXAMPLES = REPO / "examples"
#: toon with every effect off: the photo through an OKLab round trip, i.e. unchanged.
UNCHANGED = {"kind": "builtin", "builtin": "toon", "licence": "apache-2.0", "description": "does nothing",
             "params": {"smooth_iters": 0, "sharpness": 0.0, "chroma": 1.0, "line_gain": 0.0}}


@pytest.fixture
def photos(tmp_path) -> Path:
    """The three public-domain example photos (each with at least one face)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("astronaut.jpg", "hopper.jpg", "group.jpg"):
        shutil.copy(EXAMPLES / name, folder / name)
    return folder


@pytest.fixture
def registry(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "checkpoints.json"
    path.write_text(json.dumps({"format_version": 1, "styles": {"unchanged": UNCHANGED}}))
    monkeypatch.setenv("PORTRAIT_STYLIZE_CHECKPOINTS", str(path))
    return path


@pytest.fixture
def tiny_networks(tmp_path) -> MetricNetworks:
    """Random LPIPS and face networks and a random Inception: the real architectures' code paths."""
    torch.manual_seed(0)
    tiny_face_onnx(tmp_path / "face.onnx")
    return MetricNetworks(PerceptualDistance(), PoolFeatures(), FaceEmbedder(tmp_path / "face.onnx"),
                          {"lpips": "random", "fid_kid": "random", "identity": "random"})


@pytest.mark.slow
def test_report_has_each_metric_and_an_unchanged_style_scores_perfectly(photos, registry, tiny_networks, tmp_path,
                                                                      fixtures):
    exemplars = tmp_path / "anime"
    exemplars.mkdir()
    for path in sorted((fixtures / "train" / "anime").iterdir())[:6]:
        shutil.copy(path, exemplars / path.name)
    out = tmp_path / "report"
    report = evaluate(["unchanged", "sketch"], photos, out, exemplars=exemplars, size=128, networks=tiny_networks,
                      progress=False)
    unchanged, sketch = report["styles"]["unchanged"], report["styles"]["sketch"]
    # Identical pictures: SSIM 1, LPIPS 0, identity 1 (up to 8-bit rounding of the round trip).
    assert unchanged["ssim"] > 0.999 and unchanged["lpips"] < 1e-3 and unchanged["identity"] > 0.999
    assert unchanged["faces"] == 3 and unchanged["images"] == 3
    # A real style changes the picture: every content score is worse.
    assert sketch["ssim"] < 0.9 and sketch["lpips"] > 10 * unchanged["lpips"] + 1e-3 and sketch["identity"] < 0.999
    for row in (unchanged, sketch):
        assert row["fid"] > 0 and row["kid"] is not None and row["kid_std"] >= 0
    # The files: JSON as returned, a table naming every style, a grid, each style's results.
    assert json.loads((out / "metrics.json").read_text()) == report
    table = (out / "metrics.md").read_text()
    assert "| unchanged |" in table and "| sketch |" in table and "3 photos, 6 exemplars, 128²" in table
    grid = Image.open(out / "grid.jpg")
    assert grid.size == (3 * 192 + 2 * 4, 3 * 192 + 2 * 4)
    results = sorted(p.name for p in (out / "sketch").iterdir())
    assert results == ["astronaut.png", "group.png", "hopper.png"]
    assert Image.open(out / "sketch" / "hopper.png").size == (128, 128)
    # The grid's first row: photo, then each style's result.
    cells = [np.asarray(grid.crop((196 * c, 0, 196 * c + 192, 192)), dtype=float) for c in range(3)]
    assert np.abs(cells[0] - cells[1]).mean() < np.abs(cells[0] - cells[2]).mean() / 4


def test_without_exemplars_fid_is_not_scored(photos, tiny_networks, tmp_path):
    report = evaluate(["toon"], photos, tmp_path / "out", size=64, limit=2, networks=tiny_networks, progress=False)
    row = report["styles"]["toon"]
    assert row["images"] == 2 and row["fid"] is None and row["kid"] is None
    assert "| toon |" in (tmp_path / "out" / "metrics.md").read_text()


def test_bad_input_is_refused_before_any_work(photos, tiny_networks, tmp_path):
    with pytest.raises(InvalidArgumentError, match="photos: .* holds no images"):
        evaluate(["toon"], tmp_path, tmp_path / "out", networks=tiny_networks)
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(InvalidImageError, match="broken.jpg"):
        evaluate(["toon"], photos, tmp_path / "out", networks=tiny_networks)
    with pytest.raises(InvalidArgumentError, match="size must be an integer in \\[32, 2048\\]"):
        evaluate(["toon"], photos, tmp_path / "out", size=8, networks=tiny_networks)
    with pytest.raises(InvalidArgumentError, match="name at least one style"):
        evaluate([], photos, tmp_path / "out", networks=tiny_networks)
    assert not (tmp_path / "out").exists()


def test_cli_runs_offline_from_the_cache_and_says_what_is_missing(photos, tmp_path, monkeypatch, capsys):
    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "report"
    argv = ["evaluate", "--style", "toon", "--photos", str(photos), "--out", str(out), "--size", "64", "-q"]
    assert main(argv) == 1  # the command line is right; the run failed (a download it cannot make)
    err = capsys.readouterr().err
    assert "lpips network for the evaluation metrics is not cached" in err and "Run once online" in err
    assert "Traceback" not in err
    seed_metric_cache(home)
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| toon |" in printed and "wrote" in printed
    assert json.loads((out / "metrics.json").read_text())["styles"]["toon"]["faces"] == 3
    assert main(["evaluate", "--style", "toon", "--photos", str(tmp_path / "nowhere")]) == 2
    assert "--photos: no such folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "--style", ",", "--photos", str(photos)])
    assert "expected comma-separated style names" in capsys.readouterr().err


def test_a_missing_metric_package_names_the_extra(photos, tmp_path, monkeypatch):
    import importlib.util

    from portrait_stylize.errors import MissingDependencyError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "lpips" else real(name, *a))
    with pytest.raises(MissingDependencyError, match=r"lpips package: pip install 'portrait-stylize\[evaluate\]'"):
        evaluate(["toon"], photos, tmp_path / "out")
