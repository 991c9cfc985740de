"""Built-in styles on real portraits: visibly stylized, structure kept, deterministic, local."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.metrics import structural_similarity

import portrait_stylize as ps
from portrait_stylize.models.builtin import BuiltinStyle

from conftest import gray


def _edges(luma: np.ndarray) -> np.ndarray:
    smooth = ndimage.gaussian_filter(luma, 1.5)
    return np.hypot(ndimage.sobel(smooth, 0), ndimage.sobel(smooth, 1))


def _edge_alignment(photo: np.ndarray, art: np.ndarray) -> float:
    """Share of the artwork's strongest edges (top 5 %) within 3 px of the photo's top-15 % edges."""
    art_edges = _edges(art)
    strong = art_edges > np.quantile(art_edges, 0.95)
    photo_edges = _edges(photo)
    near = ndimage.binary_dilation(photo_edges > np.quantile(photo_edges, 0.85), iterations=3)
    return float((strong & near).sum() / strong.sum())


@pytest.mark.parametrize("style", ["toon", "sketch"])
def test_builtin_changes_portrait_but_keeps_structure(style, portraits):
    st = ps.load_style(style, device="cpu")
    for path in portraits:
        photo = ps.load_image(path)
        art = st(path)
        assert art.size == photo.size and art.mode == "RGB"
        p, a = gray(photo), gray(art)
        ssim = structural_similarity(p, a, data_range=255)
        assert 0.3 < ssim < 0.95, (path.name, ssim)
        diff = np.abs(np.asarray(art, dtype=float) - np.asarray(photo, dtype=float)).mean()
        assert diff > 4, (path.name, diff)  # visibly different, in 8-bit levels
        alignment = _edge_alignment(p, a)
        assert alignment > 0.85, (path.name, alignment)
        # A shuffled photo shares no structure: the same measure must be low, so it can fail.
        assert _edge_alignment(np.roll(p, (p.shape[0] // 3, p.shape[1] // 3), axis=(0, 1)), a) < 0.5


def test_sketch_is_grey_and_toon_is_colour(portraits):
    sketch = np.asarray(ps.load_style("sketch")(portraits[0]), dtype=int)
    assert (sketch[..., 0] == sketch[..., 1]).all() and (sketch[..., 1] == sketch[..., 2]).all()
    toon = np.asarray(ps.load_style("toon")(portraits[0]), dtype=int)
    assert np.abs(toon[..., 0] - toon[..., 2]).mean() > 10


@pytest.mark.parametrize("name", ["toon", "sketch"])
def test_builtin_is_deterministic_and_keeps_dtype(name):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 40, 56)
    style = BuiltinStyle(name)
    a, b = style(x), style(x.clone())
    assert torch.equal(a, b) and a.shape == x.shape and a.dtype == x.dtype
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert style(x.double()).dtype == torch.float64


def test_builtin_params_override_and_validation():
    x = torch.rand(1, 3, 32, 32)
    assert not torch.equal(BuiltinStyle("toon", {"levels": 3})(x), BuiltinStyle("toon")(x))
    with pytest.raises(ValueError, match="unknown built-in style 'oil'"):
        BuiltinStyle("oil")
    with pytest.raises(ValueError, match="'level'"):
        BuiltinStyle("toon", {"level": 3})
