"""Converted White-box TFLite weights reproduce the TFLite runtime's own outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from portrait_stylize.convert import ConversionError, TTNWeights, read_tflite, ttn_from_weights
from portrait_stylize.models.ttn import TTN


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(2.0 ** 2 / np.mean((a - b) ** 2)))  # values in [-1, 1]: peak-to-peak 2


@pytest.mark.parametrize("model,reference,min_psnr", [
    ("whitebox_cartoon_gan_fp16.tflite", "whitebox_fp16_224", 60.0),
    ("whitebox_cartoon_gan_dr.tflite", "whitebox_dr_512", 42.0),
])
def test_tflite_matches_reference_runtime(fixtures, model, reference, min_psnr):
    weights = read_tflite(fixtures / "weights" / model)
    assert len(weights.convs) == 18 and weights.negative_slope == pytest.approx(0.2)
    assert weights.gf_eps == pytest.approx(5e-3, rel=1e-3)
    net = ttn_from_weights(weights, model)
    ref = fixtures / "reference" / reference
    for case in json.loads((ref / "index.json").read_text())["cases"]:
        x = np.load(ref / case["input"])
        with torch.no_grad():
            out = net(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
        assert _psnr(out, np.load(ref / case["output"])) >= min_psnr, case["image"]


def _zero_weights(n: int) -> TTNWeights:
    """``n`` zero convolutions shaped like the TTN's layers in order (cycling past the last)."""
    layers = [conv for _, conv in TTN().conv_layers()]
    convs = [(np.zeros((c.out_channels, *c.kernel_size, c.in_channels), np.float32), np.zeros(c.out_channels, np.float32))
             for c in (layers[i % len(layers)] for i in range(n))]
    return TTNWeights(convs=convs, gf_eps=None, negative_slope=None)


def test_structure_errors_name_the_layer():
    with pytest.raises(ConversionError, match=r"missing layer 17 \(conv_out"):
        ttn_from_weights(_zero_weights(17), "g.pb")
    with pytest.raises(ConversionError, match="extra convolution"):
        ttn_from_weights(_zero_weights(19), "g.pb")
    bad = _zero_weights(18)
    bad.convs[4] = (np.zeros((64, 3, 3, 64), np.float32), np.zeros(64, np.float32))
    with pytest.raises(ConversionError, match=r"layer 4 \(conv2\) has weight \(64, 64, 3, 3\)"):
        ttn_from_weights(bad, "g.pb")
