"""Shared test helpers: the real fixtures in ../shared (skipped cleanly when absent) and tiny models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """``../shared/fixtures`` (real portraits, references); tests using it skip when it is absent."""
    if not SHARED_FIXTURES.is_dir():
        pytest.skip("../shared/fixtures is not available")
    return SHARED_FIXTURES


@pytest.fixture(scope="session")
def portraits(fixtures: Path) -> list[Path]:
    return [fixtures / "faces" / "cropped" / "Adele_crop.png", fixtures / "faces" / "whole" / "Blake_Lively.jpg",
            fixtures / "faces" / "selfies" / "a.jpg"]


def lively_style_model(seed: int = 0, **kwargs):
    """A random StyleModel whose activations neither vanish nor explode (Kaiming init, damped
    residual branches), so its output depends on a wide receptive field like a trained one."""
    from portrait_stylize.models.style import StyleModel

    torch.manual_seed(seed)
    model = StyleModel(**kwargs).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, a=0.2)
            torch.nn.init.zeros_(module.bias)
    for block in model.head.blocks:
        block.conv2.weight.data *= 0.3
    return model


def gray(img) -> np.ndarray:
    """PIL image -> float64 luma array in [0, 255]."""
    return np.asarray(img.convert("RGB"), dtype=np.float64) @ np.array([0.299, 0.587, 0.114])


def psnr(a, b, peak: float = 2.0) -> float:
    """PSNR in dB of two arrays whose values span ``peak`` (2 for the networks' [-1, 1])."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(peak**2 / mse))


@pytest.fixture(scope="session")
def tf_fixtures(tmp_path_factory) -> Path:
    """Frozen graphs, a checkpoint and TensorFlow's outputs built by ``tests/tf_make_fixtures.py``.

    Needs ``PORTRAIT_STYLIZE_TF_PYTHON``: a Python with ``tensorflow-cpu`` (``.ci/run`` builds
    ``.venv-tf`` for it). TensorFlow never enters the main environment.
    """
    import os
    import subprocess

    python = os.environ.get("PORTRAIT_STYLIZE_TF_PYTHON")
    if not python:
        pytest.skip("PORTRAIT_STYLIZE_TF_PYTHON (a Python with tensorflow-cpu) is not set")
    out = tmp_path_factory.mktemp("tf")
    result = subprocess.run([python, str(REPO / "tests" / "tf_make_fixtures.py"), str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out
