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
