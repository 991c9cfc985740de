"""Winograd F(4×4, 3×3) convolutions: equal to direct ones up to float32 rounding at any size,
swapped only into the convolutions they compute exactly, and exported to ONNX for any size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from portrait_stylize.models.ttn import TTN
from portrait_stylize.runtime.onnx_export import onnx_bytes, onnx_session
from portrait_stylize.runtime.winograd import WinogradConv2d, is_winograd_eligible, with_winograd_convolutions

from helpers import psnr


def _conv(cin: int, cout: int, seed: int, **kwargs) -> nn.Conv2d:
    torch.manual_seed(seed)
    conv = nn.Conv2d(cin, cout, 3, padding=kwargs.pop("padding", 1), **kwargs)
    with torch.no_grad():
        conv.weight.normal_(0.0, 0.1)
        if conv.bias is not None:
            conv.bias.normal_(0.0, 0.1)
    return conv


class TestWinogradConv2d:
    @pytest.mark.parametrize("shape,cout", [((1, 8, 1, 1), 8), ((2, 16, 5, 7), 24), ((1, 64, 13, 4), 64),
                                            ((1, 32, 33, 30), 72)])
    def test_equals_direct_convolution(self, shape, cout):
        conv = _conv(shape[1], cout, seed=sum(shape))
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            exact = F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=1)
            got = WinogradConv2d(conv)(x).double()
        assert got.shape == exact.shape
        scale = float(exact.abs().max())
        # float32 rounding of the transforms: up to 1e-5 of the output's range measured (direct
        # float32 convolution: 5e-7); a wrong transform, tile index or padding is off by the
        # order of the values themselves.
        assert float((got - exact).abs().max()) < 3e-5 * scale
        assert psnr(got.numpy(), exact.numpy(), peak=2 * scale) > 100

    def test_without_bias(self):
        conv = _conv(16, 8, seed=3, bias=False)
        x = torch.randn(1, 16, 9, 11, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            assert torch.allclose(WinogradConv2d(conv)(x), conv(x), atol=1e-4)

    @pytest.mark.parametrize("kwargs", [{"stride": 2}, {"dilation": 2, "padding": 2}, {"groups": 2}, {"padding": 0},
                                        {"padding_mode": "reflect"}])
    def test_refuses_convolutions_it_does_not_compute(self, kwargs):
        conv = _conv(8, 8, seed=0, **kwargs)
        assert not is_winograd_eligible(conv, min_out_channels=1)
        with pytest.raises(ValueError, match="3x3, stride 1, padding 1"):
            WinogradConv2d(conv)


@pytest.fixture(scope="module")
def ttn():
    torch.manual_seed(0)
    net = TTN().eval()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.normal_(0.0, 0.05)
    return net


class TestWithWinogradConvolutions:
    def test_swaps_the_wide_3x3_convolutions_and_leaves_the_network_alone(self, ttn):
        swapped = with_winograd_convolutions(ttn)
        names = {name for name, module in swapped.named_modules() if isinstance(module, WinogradConv2d)}
        # 64+ output channels, stride 1, 3x3: conv1, conv2, the 8 block convolutions, conv_mid,
        # up1_conv1; not the 7x7s, the stride-2 ones, nor up1_conv2 / up2_conv1 (32 outputs).
        assert names == {"conv1", "conv2", "conv_mid", "up1_conv1",
                         *(f"blocks.{i}.conv{j}" for i in range(4) for j in (1, 2))}
        assert not any(isinstance(module, WinogradConv2d) for module in ttn.modules())
        x = torch.rand(1, 3, 68, 100, generator=torch.Generator().manual_seed(0)) * 2 - 1
        with torch.inference_mode():
            assert psnr(swapped.forward_aligned(x).numpy(), ttn.forward_aligned(x).numpy()) > 100

    def test_exported_graph_runs_at_any_size(self, ttn):
        """Traced at 64x64, the gather indices are computed in the graph from the input's shape."""
        swapped = with_winograd_convolutions(ttn)
        session = onnx_session(onnx_bytes(swapped))
        for shape in [(1, 3, 100, 132), (2, 3, 36, 8)]:
            x = torch.rand(*shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
            with torch.inference_mode():
                expected = swapped.forward_aligned(x).numpy()
            got = session.run(None, {"image": x.numpy()})[0]
            assert got.shape == expected.shape and np.abs(got - expected).max() < 1e-4
