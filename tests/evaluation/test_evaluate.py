"""``portrait-stylize evaluate`` and :func:`portrait_stylize.evaluation.evaluate.evaluate`, offline, on small
random metric networks or none: the report's numbers behave as metrics must, what cannot be scored is
named with what it needs, and bad input is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from portrait_stylize.cli import main
from portrait_stylize.errors import (
    InvalidArgumentError,
    InvalidImageError,
    MetricWeightsError,
    MissingDependencyError,
    StyleNotCachedError,
)
from portrait_stylize.evaluation.evaluate import NO_EXEMPLARS, MetricNetworks, Validation, evaluate, square
from portrait_stylize.evaluation.metrics import FaceEmbedder, PerceptualDistance, PoolFeatures
from portrait_stylize.imaging.io import load_image

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
def offline(tmp_path, monkeypatch) -> Path:
    """No downloads (``HF_HUB_OFFLINE``) and every cache a network could come from empty: ``HF_HOME``
    (returned; the metric networks), torch's, the converted styles' and facexlib's (so the face
    backend is MediaPipe, which ships with the package), whatever this machine holds."""
    home = tmp_path / "hf"
    for name, value in {"HF_HOME": home, "TORCH_HOME": tmp_path / "torch", "XDG_CACHE_HOME": tmp_path / "cache",
                        "PORTRAIT_STYLIZE_CACHE": tmp_path / "converted",
                        "PORTRAIT_STYLIZE_FACEXLIB_DIR": tmp_path / "facexlib", "HF_HUB_OFFLINE": "1"}.items():
        monkeypatch.setenv(name, str(value))
    return home


def _reference_scores(photos: Path, results: Path, size: int) -> tuple[float, float]:
    """scikit-image's mean SSIM of luma (Gaussian window, sigma 1.5) and mean PSNR over the photos'
    crops and the results ``evaluate`` wrote (PSNR at most the 8-bit ceiling, 10·log10(12·255²) dB,
    where scikit-image says infinity): the numbers its report must hold."""
    ssims, psnrs = [], []
    for path in sorted(photos.iterdir()):
        photo = np.asarray(square(load_image(path), size), np.float64) / 255
        result = np.asarray(Image.open(results / f"{path.stem}.png").convert("RGB"), np.float64) / 255
        luma = np.array([0.299, 0.587, 0.114])
        ssims.append(structural_similarity(photo @ luma, result @ luma, gaussian_weights=True, sigma=1.5,
                                           use_sample_covariance=False, data_range=1.0))
        with np.errstate(divide="ignore"):  # identical pictures: scikit-image divides by a zero error
            psnrs.append(min(peak_signal_noise_ratio(photo, result, data_range=1.0), 10 * np.log10(12 * 255**2)))
    return float(np.mean(ssims)), float(np.mean(psnrs))


@pytest.fixture
def tiny_networks(tmp_path) -> MetricNetworks:
    """Random LPIPS and face networks and a random Inception: the real architectures' code paths."""
    torch.manual_seed(0)
    tiny_face_onnx(tmp_path / "face.onnx")
    return MetricNetworks(PerceptualDistance(), PoolFeatures(), FaceEmbedder(tmp_path / "face.onnx"),
                          {"lpips": "random", "fid_kid": "random", "identity": "random"})


@pytest.mark.slow
def test_report_has_each_metric_and_an_unchanged_style_scores_perfectly(photos, offline, registry, tiny_networks,
                                                                      tmp_path, fixtures):
    exemplars = tmp_path / "anime"
    exemplars.mkdir()
    for path in sorted((fixtures / "train" / "anime").iterdir())[:6]:
        shutil.copy(path, exemplars / path.name)
    out = tmp_path / "report"
    report = evaluate(["unchanged", "sketch"], photos, out, exemplars=exemplars, size=128, networks=tiny_networks,
                      progress=False)
    unchanged, sketch = report["styles"]["unchanged"], report["styles"]["sketch"]
    # Identical pictures: SSIM 1, LPIPS 0, identity 1, every face found in place (up to 8-bit
    # rounding of the round trip), PSNR far above what a style reaches.
    assert unchanged["ssim"] > 0.999 and unchanged["lpips"] < 1e-3 and unchanged["identity"] > 0.999
    assert unchanged["psnr"] > 40 and unchanged["landmark_error"] < 0.01 and unchanged["faces_found"] == 3
    assert unchanged["faces"] == 3 and unchanged["images"] == 3 and report["protocol"]["skipped"] == {}
    # A real style changes the picture: every content score is worse.
    assert sketch["ssim"] < 0.9 and sketch["lpips"] > 10 * unchanged["lpips"] + 1e-3 and sketch["identity"] < 0.999
    assert sketch["psnr"] < 20 and sketch["landmark_error"] > unchanged["landmark_error"]
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


def test_without_exemplars_fid_is_not_scored_and_the_report_says_why(photos, offline, tiny_networks, tmp_path):
    report = evaluate(["toon"], photos, tmp_path / "out", size=64, limit=2, networks=tiny_networks, progress=False)
    row = report["styles"]["toon"]
    assert row["images"] == 2 and row["fid"] is None and row["kid"] is None and row["lpips"] > 0
    assert report["protocol"]["skipped"] == {"fid_kid": NO_EXEMPLARS}
    assert set(report["protocol"]["networks"]) == {"lpips", "identity", "landmarks"}
    table = (tmp_path / "out" / "metrics.md").read_text()
    assert table.startswith("| style | SSIM ↑ | PSNR dB ↑ | LPIPS ↓ | identity ↑ (faces) | landmark error ↓ (found) |"
                            "\n")  # no FID or KID column
    assert f"Not scored:\n- FID and KID: {NO_EXEMPLARS}\n" in table and "--exemplars DIR" in NO_EXEMPLARS


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


def test_offline_with_nothing_cached_scores_what_needs_no_download_and_names_what_the_rest_needs(
        photos, offline, registry, tmp_path, capsys):
    out = tmp_path / "report"
    argv = ["evaluate", "--style", "toon,unchanged", "--photos", str(photos), "--exemplars", str(photos),
            "--out", str(out), "--size", "128", "-q"]
    assert main(argv) == 0
    printed = capsys.readouterr()
    report = json.loads((out / "metrics.json").read_text())
    # SSIM and PSNR are the numbers scikit-image gives for the crops and the results written.
    for style in ("toon", "unchanged"):
        row = report["styles"][style]
        ssim, psnr = _reference_scores(photos, out / style, 128)
        assert row["ssim"] == pytest.approx(ssim, abs=2e-3) and row["psnr"] == pytest.approx(psnr, abs=1e-4)
        assert row["lpips"] is None and row["identity"] is None and row["fid"] is None and row["kid"] is None
        assert row["faces"] == 3 and row["faces_found"] == 3  # MediaPipe, the package's own detector
    toon, unchanged = report["styles"]["toon"], report["styles"]["unchanged"]
    assert toon["ssim"] < 0.9 and toon["psnr"] < 25 and unchanged["ssim"] > 0.999 and unchanged["psnr"] > 40
    assert unchanged["landmark_error"] < 0.01 < toon["landmark_error"] < 0.1  # toon moves landmarks a little
    # Each metric that needs a download is skipped, naming the file, its cache path, its source and
    # how to get it; nothing suggests a style.
    skipped = report["protocol"]["skipped"]
    metrics = offline / "portrait-stylize" / "metrics"
    needs = {"lpips": ("LPIPS", metrics / "lpips" / "lpips_alex.safetensors",
                       "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
             "fid_kid": ("FID and KID", metrics / "inception" / "inception_v3.safetensors",
                         "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth"),
             "identity": ("identity", metrics / "arcface" / "w600k_r50.onnx",
                          "https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip")}
    assert set(skipped) == set(needs) and set(report["protocol"]["networks"]) == {"landmarks"}
    for metric, (label, path, url) in needs.items():
        assert (f"is not cached at {path}, and downloading is off (HF_HUB_OFFLINE or PORTRAIT_STYLIZE_OFFLINE is "
                f"set). Unset it and run once online to fetch {url}, or copy {path.parent} from a machine that has "
                f"it (there: $HF_HOME/portrait-stylize/metrics/{path.parent.name})") in skipped[metric]
        assert f"\n- {label}: {skipped[metric]}\n" in printed.out
    # The table has a column per metric scored, the reasons below it; nothing went to stderr.
    assert "| style | SSIM ↑ | PSNR dB ↑ | landmark error ↓ (found) |\n" in printed.out
    assert f"| toon | {toon['ssim']:.3f} | {toon['psnr']:.2f} | {toon['landmark_error']:.3f} (3/3) |" in printed.out
    assert "Not scored:" in printed.out and "built-in style" not in printed.out and printed.err == ""
    assert not any((tmp_path / "torch").rglob("*")) and not any(metrics.rglob("*.safetensors"))


def test_cached_metric_networks_are_used_offline(photos, offline, tmp_path, capsys):
    seed_metric_cache(offline)  # random networks where the real ones are kept after their download
    out = tmp_path / "report"
    assert main(["evaluate", "--style", "toon", "--photos", str(photos), "--out", str(out), "--size", "64", "-q"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "metrics.json").read_text())
    row = report["styles"]["toon"]
    assert row["lpips"] > 0 and -1 <= row["identity"] <= 1 and row["faces"] == 3
    assert report["protocol"]["skipped"] == {"fid_kid": NO_EXEMPLARS}
    assert "| style | SSIM ↑ | PSNR dB ↑ | LPIPS ↓ | identity ↑ (faces) |" in printed and "wrote" in printed


def test_cli_usage_errors(photos, tmp_path, capsys):
    assert main(["evaluate", "--style", "toon", "--photos", str(tmp_path / "nowhere")]) == 2
    assert "--photos: no such folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "--style", ",", "--photos", str(photos)])
    assert "expected comma-separated style names" in capsys.readouterr().err


def test_a_missing_metric_package_skips_its_metric_and_names_the_extra(photos, offline, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "lpips" else real(name, *a))
    report = evaluate(["toon"], photos, tmp_path / "out", size=64, limit=1, progress=False)
    assert (report["protocol"]["skipped"]["lpips"]
            == "LPIPS needs the lpips package: pip install 'portrait-stylize[evaluate]'")
    assert report["styles"]["toon"]["ssim"] is not None and report["styles"]["toon"]["lpips"] is None
    # Training's validation (strict) stops instead, before any network is fetched.
    with pytest.raises(MissingDependencyError, match=r"lpips package: pip install 'portrait-stylize\[evaluate\]'"):
        Validation(photos, size=64)


def test_training_validation_stops_when_a_metric_network_is_missing(photos, offline):
    with pytest.raises(MetricWeightsError, match=r"the lpips network for the evaluation metrics is not cached"):
        Validation(photos, size=64)


def test_a_face_detector_that_cannot_be_had_skips_the_face_metrics_only(photos, offline, tiny_networks, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setenv("PORTRAIT_STYLIZE_FACE_BACKEND", "facexlib")  # its weights are not in the empty folder
    report = evaluate(["toon"], photos, tmp_path / "out", size=64, limit=2, networks=tiny_networks, progress=False)
    skipped, row = report["protocol"]["skipped"], report["styles"]["toon"]
    assert set(skipped) == {"fid_kid", "identity", "landmarks"}
    for metric in ("identity", "landmarks"):
        assert "detection_Resnet50_Final.pth" in skipped[metric] and str(tmp_path / "facexlib") in skipped[metric]
    assert row["faces"] == 0 and row["identity"] is None and row["landmark_error"] is None
    assert row["ssim"] is not None and row["lpips"] is not None
    with pytest.raises(StyleNotCachedError, match="facexlib face backend: detection_Resnet50_Final.pth"):
        Validation(photos, size=64, networks=tiny_networks)
