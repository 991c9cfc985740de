"""A TTN streamed by rows (:mod:`portrait_stylize.runtime.row_stream`) computes what the whole
network computes, holds memory that does not grow with the picture's height, and is what the
PyTorch backends run on the CPU."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from portrait_stylize.models.ttn import TTN
from portrait_stylize.runtime import row_stream
from portrait_stylize.runtime.row_stream import RowStreamedTTN, band_rows
from portrait_stylize.runtime.runners import Runners, make_runner, streams

CPU = torch.device("cpu")


def _random_ttn(seed: int = 0, **config) -> TTN:
    torch.manual_seed(seed)
    net = TTN(**config).eval()
    with torch.no_grad():  # weights large enough that every layer matters
        for parameter in net.parameters():
            parameter.normal_(0.0, 0.15)
    return net


@pytest.fixture
def small_bands(monkeypatch):
    """Bands of ``rows`` rows of a picture ``width`` wide (float32): many bands on small pictures."""

    def set_bands(rows: int, width: int) -> None:
        monkeypatch.setattr(row_stream, "BAND_BYTES", rows * width * 4)
        assert band_rows(width, 4) == rows // 4 * 4

    return set_bands


def _relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got - expected).abs().max() / expected.abs().max())


class TestRowStreamedTTN:
    @pytest.mark.parametrize("upsample", ["tf_legacy", "half_pixel"])
    @pytest.mark.parametrize("padding", ["tf_same", "symmetric"])
    # Bands of 12 rows add nothing that 4 and 40 do not hold (CI's slow run has them).
    @pytest.mark.parametrize("band", [4, pytest.param(12, marks=pytest.mark.slow), 40])
    def test_equals_the_whole_network(self, small_bands, upsample, padding, band):
        """Odd sizes (padded to the U-Net's multiple inside), bands from 4 rows (one quarter-
        resolution row per band) to 40, every padding and upsampling the TTN has."""
        net = _random_ttn(upsample=upsample, padding=padding)
        small_bands(band, 171)
        x = torch.rand(2, 3, 301, 171, generator=torch.Generator().manual_seed(1)) * 2 - 1
        with torch.inference_mode():
            expected, got = net(x), RowStreamedTTN(net)(x)
        assert got.shape == expected.shape
        assert _relative_error(got, expected) < 1e-5

    @pytest.mark.parametrize("height", [97, 98, 99, 100])
    def test_every_remainder_of_the_last_band(self, small_bands, height):
        net = _random_ttn(seed=2)
        small_bands(12, 90)
        x = torch.rand(1, 3, height, 90, generator=torch.Generator().manual_seed(height)) * 2 - 1
        with torch.inference_mode():
            assert _relative_error(RowStreamedTTN(net)(x), net(x)) < 1e-5

    def test_a_change_reaches_as_far_as_in_the_whole_network(self, small_bands):
        """Rows seen across band boundaries: one poked pixel changes the same output pixels."""
        net = _random_ttn(seed=3)
        small_bands(8, 128)
        x = torch.rand(1, 3, 256, 128, generator=torch.Generator().manual_seed(3)) * 2 - 1
        poked = x.clone()
        poked[..., 130, 64] += 1.0
        stream = RowStreamedTTN(net)
        with torch.inference_mode():
            before = net(x)
            change_whole = net(poked) - before
            change_stream = stream(poked) - stream(x)
        rows = (change_whole.abs().amax(1) > 1e-3 * float(change_whole.abs().max())).nonzero()[:, 1]
        assert rows.min() < 120 and rows.max() > 140  # the change crossed band boundaries
        torch.testing.assert_close(change_stream, change_whole, rtol=0, atol=1e-5 * float(before.abs().max()))

    def test_without_a_guided_filter(self, small_bands):
        net = _random_ttn(seed=4, gf_radius=0)
        small_bands(8, 64)
        x = torch.rand(1, 3, 150, 64) * 2 - 1
        with torch.inference_mode():
            assert _relative_error(RowStreamedTTN(net)(x), net(x)) < 1e-5

    def test_bfloat16_channels_last_as_the_backend_runs_it(self, small_bands):
        net = copy.deepcopy(_random_ttn(seed=5)).to(dtype=torch.bfloat16, memory_format=torch.channels_last)
        small_bands(16, 200)
        x = torch.rand(1, 3, 333, 200, generator=torch.Generator().manual_seed(5)) * 2 - 1
        with torch.inference_mode():
            expected, got = net(x), RowStreamedTTN(net)(x)
        assert got.dtype == torch.float32  # the guided filter in the input's precision, as the TTN
        mse = float(((got - expected) ** 2).mean())
        assert mse == 0.0 or 10 * math.log10(4.0 / mse) > 60.0

    def test_a_picture_of_two_bands_runs_the_network_as_it_is(self, small_bands):
        net = _random_ttn(seed=6)
        small_bands(40, 64)
        x = torch.rand(1, 3, 80, 64) * 2 - 1
        with torch.inference_mode():
            assert torch.equal(RowStreamedTTN(net)(x), net(x))

    def test_memory_does_not_grow_with_the_height(self, small_bands, monkeypatch):
        """What the layers hold at once (their windows' storage), on a picture 4x as tall: the
        same, give or take a band, and a few bands in all."""
        net = _random_ttn(seed=7)
        small_bands(16, 96)
        held = []
        advance = row_stream._Stream.advance

        def tracked(self, band):
            advance(self, band)
            if isinstance(self, row_stream._Finish):
                held[-1] = max(held[-1], sum(layer.rows.untyped_storage().nbytes()
                                             for layer in self.layers if layer.rows is not None))

        layers = RowStreamedTTN._layers

        def remembered(self, x, result):
            streams = layers(self, x, result)
            streams[-1].layers = streams[:-1]
            return streams

        monkeypatch.setattr(row_stream._Stream, "advance", tracked)
        monkeypatch.setattr(RowStreamedTTN, "_layers", remembered)
        stream = RowStreamedTTN(net)
        with torch.inference_mode():
            for height in (256, 1024):
                held.append(0)
                stream(torch.rand(1, 3, height, 96) * 2 - 1)
        short, tall = held
        assert short > 0 and tall <= 1.15 * short, (short, tall)
        # Layers let go of a band once read: about 9 bands of the first layer's activations
        # held at once (a band of each of the 40 layers, kept, would be 30).
        band = 16 * 96 * net.conv_in.out_channels * 4
        assert tall <= 12 * band, tall / band

    def test_refuses_a_network_it_cannot_stream(self):
        class Squashed(TTN):
            def unet(self, x):
                return torch.sigmoid(super().unet(x))

        with pytest.raises(TypeError, match="sigmoid"):
            RowStreamedTTN(Squashed())


class TestWhereItRuns:
    def test_the_pytorch_backends_stream_ttns_on_the_cpu(self):
        net = _random_ttn()
        for backend in ("torch", "torch-bf16"):
            assert streams(net, backend, CPU)
            assert isinstance(make_runner(net, backend, CPU), RowStreamedTTN)
        assert not streams(net, "onnx", CPU)
        assert not streams(net, "torch", torch.device("cuda"))
        assert not streams(nn.Conv2d(3, 3, 1), "torch", CPU)

    def test_a_style_streams_only_when_every_network_does(self):
        assert Runners({"head": _random_ttn(), "bg": _random_ttn(1)}, "torch-bf16", CPU).tiling == (4, "tight")
        assert Runners({"head": _random_ttn(), "bg": nn.Conv2d(3, 3, 1)}, "torch", CPU).tiling == (1, "fixed")
        assert Runners({"head": _random_ttn()}, "openvino", CPU).tiling == (1, "fixed")
        assert Runners({}, "torch", CPU).tiling == (1, "fixed")  # a style without networks tiles as it always did

    def test_int8_and_bf16_graphs_of_a_ttn_take_larger_even_tiles(self):
        from portrait_stylize.runtime.runners import GRAPH_TILE_FACTOR, tiling

        for backend in ("openvino-int8", "openvino-bf16"):
            assert tiling(_random_ttn(), backend, CPU) == (GRAPH_TILE_FACTOR, "even")
            assert tiling(nn.Conv2d(3, 3, 1), backend, CPU) == (1, "fixed")  # not a TTN: these backends refuse it
        assert tiling(_random_ttn(), "onnx-int8", CPU) == (1, "fixed")  # ONNX Runtime compiles no shapes
