"""Colour and line ops of the built-in styles (portrait_stylize.imaging.ops): one class per op, with
reference values."""

from __future__ import annotations

import pytest
import torch

from portrait_stylize.imaging.ops import oklab_to_rgb, quantize_soft, rgb_to_oklab, xdog


def _pixels(*rgb) -> torch.Tensor:
    return torch.tensor(rgb, dtype=torch.float64).T.reshape(1, 3, len(rgb), 1)


class TestRgbToOklab:
    def test_reference_values(self):
        """Ottosson's published values for white, black and the sRGB primaries."""
        lab = rgb_to_oklab(_pixels((1, 1, 1), (0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)))[0, :, :, 0].T
        expected = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.627955, 0.224863, 0.125846],
                                 [0.866440, -0.233888, 0.179498], [0.452014, -0.032457, -0.311528]],
                                dtype=torch.float64)
        assert torch.allclose(lab, expected, atol=1e-5)

    def test_shape_and_grey_has_no_colour(self):
        grey = torch.full((2, 3, 4, 5), 0.5)
        lab = rgb_to_oklab(grey)
        assert lab.shape == grey.shape and lab[:, 1:].abs().max() < 1e-6


class TestOklabToRgb:
    def test_round_trip(self):
        x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        assert (oklab_to_rgb(rgb_to_oklab(x)) - x).abs().max() < 1e-5  # the published matrices carry 10 digits

    def test_out_of_gamut_is_clipped(self):
        rgb = oklab_to_rgb(torch.tensor([0.7, 0.4, 0.4]).view(1, 3, 1, 1))
        assert rgb.min() >= 0.0 and rgb.max() <= 1.0 and rgb[0, 0] > 0.9999  # a very red colour: R saturates


class TestQuantizeSoft:
    def test_hard_steps_land_on_the_levels(self):
        x = torch.tensor([0.02, 0.23, 0.27, 0.49, 0.74, 0.98])
        assert torch.allclose(quantize_soft(x, 0.25, 200.0), torch.tensor([0.0, 0.25, 0.25, 0.5, 0.75, 1.0]), atol=1e-3)

    def test_no_jumps_and_zero_sharpness_is_identity(self):
        x = torch.linspace(0, 1, 10001)
        y = quantize_soft(x, 0.2, 20.0)
        assert (y[1:] - y[:-1]).abs().max() < 0.01  # continuous: anti-aliased, never a jump
        assert (y[1:] >= y[:-1] - 1e-7).all()  # and monotonic
        assert torch.equal(quantize_soft(x, 0.2, 0.0), x)
        with pytest.raises(ValueError, match="step must be > 0"):
            quantize_soft(x, 0.0, 1.0)


class TestXdog:
    def test_lines_on_the_dark_side_of_an_edge_only(self):
        luma = torch.zeros(1, 1, 32, 64)
        luma[..., 32:] = 1.0
        ink = xdog(luma, 1.0, 0.002, 50.0)[0, 0, 16]
        assert ink.shape == (64,) and ink.min() >= 0 and ink.max() <= 1
        assert ink[28:32].max() > 0.9 and ink[32:].max() == 0.0  # dark side inked, bright side clean
        assert ink[:20].max() == 0.0  # far from the edge: nothing

    def test_flat_and_faint_give_no_ink(self):
        assert xdog(torch.full((1, 1, 16, 16), 0.4), 1.0, 0.002, 50.0).max() == 0.0
        faint = torch.zeros(1, 1, 16, 32)
        faint[..., 16:] = 0.005  # below the threshold's contrast
        assert xdog(faint, 1.0, 0.002, 50.0).max() == 0.0
