"""TTN architecture, TensorFlow conventions and the guided filter: against independent references where
there is one, and against restated formulas (tests named ``..._restated_...``) where there is not."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from portrait_stylize.imaging.ops import box_filter, gaussian_blur, guided_filter
from portrait_stylize.models.ttn import TTN, Conv2dSame, upsample2x


def test_parameter_count_matches_dctnet():
    assert sum(p.numel() for p in TTN().parameters()) == 1_467_075


def test_layer_shapes_follow_design():
    shapes = {k: tuple(v.shape) for k, v in TTN().state_dict().items() if k.endswith("weight")}
    assert shapes["conv_in.weight"] == (32, 3, 7, 7)
    assert shapes["down1.weight"] == (32, 32, 3, 3)
    assert shapes["conv2.weight"] == (128, 64, 3, 3)
    assert shapes["blocks.3.conv2.weight"] == (128, 128, 3, 3)
    assert shapes["conv_out.weight"] == (3, 32, 7, 7)
    assert len(shapes) == 18


@pytest.mark.parametrize("size", [(15, 16), (17, 23), (5, 64), (1, 1), (30, 2)])
def test_any_size_equals_the_crop_of_the_edge_padded_run(size):
    """Documented: inputs are edge-replicated at the bottom/right to a multiple of 4 and the output
    is cropped back. The padded image is built here with NumPy, independently of the model."""
    torch.manual_seed(0)
    net = TTN().eval()
    x = torch.rand(2, 3, *size) * 2 - 1
    h, w = size
    padded = torch.from_numpy(np.pad(x.numpy(), ((0, 0), (0, 0), (0, -h % 4), (0, -w % 4)), mode="edge"))
    with torch.no_grad():
        y = net(x)
        expected = net(padded)[..., :h, :w]
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert torch.equal(y, expected)


def test_multiple_of_four_matches_restated_forward_without_padding():
    """Not an independent reference: restates ``forward_aligned`` (U-Net, then the guided filter) to
    check that sizes already a multiple of 4 are neither padded nor cropped."""
    torch.manual_seed(0)
    net = TTN().eval()
    x = torch.rand(1, 3, 32, 40) * 2 - 1
    with torch.no_grad():
        expected = guided_filter(x, net.unet(x), 1, net.gf_eps)
        assert torch.equal(net(x), expected)


def test_tf_same_stride2_pads_zero_before_one_after():
    torch.manual_seed(0)
    conv = Conv2dSame(4, 5, 3, stride=2, padding_mode_tf="tf_same")
    x = torch.randn(1, 4, 8, 10)
    ref = F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight, conv.bias, stride=2)
    assert torch.allclose(conv(x), ref)
    x_odd = torch.randn(1, 4, 9, 9)  # odd sides: TF pads 1 on both sides
    assert torch.allclose(conv(x_odd), F.conv2d(x_odd, conv.weight, conv.bias, stride=2, padding=1))


def test_symmetric_padding_equals_torch_conv():
    torch.manual_seed(0)
    conv = Conv2dSame(4, 5, 3, stride=2, padding_mode_tf="symmetric")
    x = torch.randn(1, 4, 8, 10)
    assert torch.allclose(conv(x), F.conv2d(x, conv.weight, conv.bias, stride=2, padding=1))


def _tf1_resize_bilinear(x: np.ndarray) -> np.ndarray:
    """TF1 resize_bilinear(align_corners=False, half_pixel_centers=False) ×2, as in TF's kernel."""
    h, w = x.shape[-2:]
    out = np.zeros(x.shape[:-2] + (2 * h, 2 * w))
    for oy in range(2 * h):
        iy = oy * 0.5
        top, ly = int(np.floor(iy)), iy - np.floor(iy)
        bottom = min(top + 1, h - 1)
        for ox in range(2 * w):
            ix = ox * 0.5
            left, lx = int(np.floor(ix)), ix - np.floor(ix)
            right = min(left + 1, w - 1)
            t = x[..., top, left] + (x[..., top, right] - x[..., top, left]) * lx
            b = x[..., bottom, left] + (x[..., bottom, right] - x[..., bottom, left]) * lx
            out[..., oy, ox] = t + (b - t) * ly
    return out


def test_tf_legacy_upsampling_matches_tf1_formula():
    x = torch.randn(1, 2, 5, 7, dtype=torch.float64)
    assert np.allclose(upsample2x(x, "tf_legacy").numpy(), _tf1_resize_bilinear(x.numpy()), atol=1e-12)


def test_half_pixel_upsampling_is_torch_bilinear():
    x = torch.randn(1, 2, 5, 7)
    assert torch.equal(upsample2x(x, "half_pixel"), F.interpolate(x, scale_factor=2, mode="bilinear"))
    with pytest.raises(ValueError, match="upsample"):
        upsample2x(x, "nearest")


def test_box_filter_matches_brute_force():
    x = torch.randn(1, 2, 6, 9, dtype=torch.float64)
    r = 2
    ref = torch.zeros_like(x)
    for i in range(6):
        for j in range(9):
            ref[..., i, j] = x[..., max(0, i - r):i + r + 1, max(0, j - r):j + r + 1].mean(dim=(-2, -1))
    assert torch.allclose(box_filter(x, r), ref)


def test_guided_filter_matches_restated_formula_and_properties():
    """The first check restates He et al.'s formula the way the implementation computes it (with the
    same box mean), so it is not an independent reference; the properties after it are."""
    torch.manual_seed(0)
    guide = torch.rand(1, 3, 12, 12, dtype=torch.float64)
    src = torch.rand(1, 3, 12, 12, dtype=torch.float64)
    out = guided_filter(guide, src, 1, 1e-2)
    def mean(t):
        return box_filter(t, 1)

    a = (mean(guide * src) - mean(guide) * mean(src)) / (mean(guide * guide) - mean(guide) ** 2 + 1e-2)
    b = mean(src) - a * mean(guide)
    assert torch.allclose(out, mean(a) * guide + mean(b))
    # A constant source stays constant; a huge eps gives the local mean of the source.
    assert torch.allclose(guided_filter(guide, torch.full_like(src, 0.3), 1, 1e-2), torch.full_like(src, 0.3))
    assert torch.allclose(guided_filter(guide, src, 1, 1e9), mean(mean(src)), atol=1e-6)
    with pytest.raises(ValueError, match=r"\(1, 3, 5, 5\)"):
        guided_filter(torch.rand(1, 3, 5, 5), src, 1, 1e-2)


def test_guided_filter_gradcheck():
    guide = torch.rand(1, 1, 6, 6, dtype=torch.float64, requires_grad=True)
    src = torch.rand(1, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda g, s: guided_filter(g, s, 1, 1e-2), (guide, src))


@pytest.mark.parametrize("radius, shape, guide_channels", [(1, (1, 3, 37, 29), 3), (2, (2, 3, 70, 41), 1),
                                                          (1, (1, 3, 16, 8), 3)])
def test_guided_filter_in_bands_is_the_unbanded_filter(monkeypatch, radius, shape, guide_channels):
    """Bands of rows (each with the 2r rows its output reads) give the whole filter bit for bit,
    at the image's top and bottom edges too (the 16-row picture is a single band)."""
    from portrait_stylize.imaging import ops

    generator = torch.Generator().manual_seed(radius)
    src = torch.rand(shape, generator=generator, dtype=torch.float64)
    guide = torch.rand((shape[0], guide_channels, *shape[2:]), generator=generator, dtype=torch.float64)
    monkeypatch.setattr(ops, "BAND_VALUES", 1 << 40)
    whole = guided_filter(guide, src, radius, 1e-2)
    monkeypatch.setattr(ops, "BAND_VALUES", 1)  # the fewest rows a band may have: 16 r
    assert torch.equal(guided_filter(guide, src, radius, 1e-2), whole)


def test_guided_filter_gradients_flow_through_bands(monkeypatch):
    from portrait_stylize.imaging import ops

    monkeypatch.setattr(ops, "BAND_VALUES", 1)  # 16-row bands: three here
    guide = torch.rand(1, 1, 40, 4, dtype=torch.float64, requires_grad=True)
    src = torch.rand(1, 1, 40, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda g, s: guided_filter(g, s, 1, 1e-2), (guide, src))


def test_gaussian_blur_preserves_constant_and_mean():
    x = torch.full((1, 1, 20, 20), 0.7)
    assert torch.allclose(gaussian_blur(x, 2.0), x)
    y = torch.zeros(1, 1, 41, 41)
    y[..., 20, 20] = 1
    blurred = gaussian_blur(y, 2.0)
    assert abs(float(blurred.sum()) - 1) < 1e-5 and float(blurred[..., 20, 20]) == float(blurred.max())


def test_channels_last_gives_same_output():
    torch.manual_seed(0)
    net = TTN().eval()
    x = torch.rand(1, 3, 64, 48) * 2 - 1
    with torch.no_grad():
        ref = net(x)
        out = net.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    assert torch.allclose(ref, out, atol=1e-5)
