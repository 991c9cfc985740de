"""The exported TTN graph's two rewrites: the output convolution as a sub-pixel convolution
(:mod:`portrait_stylize.runtime.subpixel`) and stride-2 convolutions padding inside ``Conv``
(``models.ttn._PaddedConv``). Both must compute exactly what PyTorch computes."""

from __future__ import annotations

import onnx
import pytest
import torch
from torch import nn

from portrait_stylize.models.ttn import TTN, Conv2dSame
from portrait_stylize.runtime.onnx_export import max_onnx_difference, onnx_bytes, onnx_session
from portrait_stylize.runtime.subpixel import SubpixelConv2d, with_subpixel_output


def _ops(model: bytes) -> list[str]:
    return [node.op_type for node in onnx.load_from_string(model).graph.node]


class TestSubpixelConv2d:
    @pytest.mark.parametrize("kernel, cin, cout, bias", [(7, 32, 3, True), (3, 5, 2, True), (1, 4, 3, False),
                                                          (5, 3, 1, True)])
    def test_equals_the_convolution(self, kernel, cin, cout, bias):
        torch.manual_seed(kernel)
        conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=bias)
        x = torch.randn(2, cin, 14, 22)
        with torch.inference_mode():
            expected, got = conv(x), SubpixelConv2d(conv)(x)
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)

    def test_each_output_phase_has_its_own_channel(self):
        # A kernel that picks one input pixel: the output is the input moved by that offset, so a
        # wrong phase order or offset shows at once.
        conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
        with torch.no_grad():
            conv.weight.zero_()
            conv.weight[0, 0, 0, 2] = 1.0  # out[y, x] = in[y - 1, x + 1]
        x = torch.arange(36.0).view(1, 1, 6, 6)
        with torch.inference_mode():
            got = SubpixelConv2d(conv)(x)
        assert got[0, 0, 1, 0] == x[0, 0, 0, 1] and got[0, 0, 4, 3] == x[0, 0, 3, 4]
        assert got[0, 0, 0].abs().sum() == 0 and got[0, 0, :, 5].abs().sum() == 0  # the zero padding

    @pytest.mark.parametrize("conv", [nn.Conv2d(4, 3, 3, stride=2, padding=1), nn.Conv2d(4, 3, 4, padding=2),
                                      nn.Conv2d(4, 4, 3, padding=1, groups=2), nn.Conv2d(4, 3, 3, padding=0),
                                      nn.Conv2d(4, 3, 3, padding=1, dilation=2)])
    def test_refuses_what_it_cannot_rewrite_exactly(self, conv):
        with pytest.raises(ValueError, match="stride-1 'same'"):
            SubpixelConv2d(conv)


class TestWithSubpixelOutput:
    def test_ttn_output_is_unchanged(self):
        torch.manual_seed(0)
        net = TTN(channels=8, num_blocks=1).eval()
        rewritten = with_subpixel_output(net)
        assert isinstance(rewritten.conv_out, SubpixelConv2d) and isinstance(net.conv_out, Conv2dSame)
        x = torch.rand(1, 3, 36, 52) * 2 - 1
        with torch.inference_mode():
            torch.testing.assert_close(rewritten.forward_aligned(x), net.forward_aligned(x), atol=1e-5, rtol=1e-5)

    def test_other_networks_are_left_as_they_are(self):
        net = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1))
        assert with_subpixel_output(net) is net


class TestExportedGraph:
    def test_unet_graph_has_no_pad_and_a_depth_to_space_and_the_ttn_matches_pytorch(self):
        torch.manual_seed(1)
        net = TTN(channels=8, num_blocks=1, padding="tf_same").eval()
        ops = _ops(onnx_bytes(net, "unet"))  # (the guided filter's box sums pad)
        assert "Pad" not in ops and ops.count("DepthToSpace") == 1
        assert max_onnx_difference(net, onnx_session(onnx_bytes(net))) < 1e-4

    def test_stride_two_convolutions_pad_like_tensorflow_inside_conv(self):
        graph = onnx.load_from_string(onnx_bytes(TTN(channels=8, num_blocks=0, padding="tf_same").eval(), "unet"))
        strided = [n for n in graph.graph.node if n.op_type == "Conv"
                   and any(a.name == "strides" and list(a.ints) == [2, 2] for a in n.attribute)]
        pads = [list(next(a.ints for a in n.attribute if a.name == "pads")) for n in strided]
        # down1, down2: TensorFlow's SAME on even sides (0 before, 1 after); the output conv: 3 all round.
        assert pads.count([0, 0, 1, 1]) == 2 and pads.count([3, 3, 3, 3]) == 1
