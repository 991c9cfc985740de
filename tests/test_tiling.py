"""Tiled inference: seams invisible, weights exact, memory bounded."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import portrait_stylize as ps
from portrait_stylize.pipeline import Stylizer
from portrait_stylize.registry import StyleSpec
from portrait_stylize.tiling import run_tiled, tile_starts

from conftest import REPO, lively_style_model


@pytest.mark.parametrize("length,tile,overlap", [(1024, 256, 64), (1000, 256, 64), (300, 256, 64), (5000, 512, 0)])
def test_tile_starts_cover_with_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + tile == length
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))


def test_identity_through_tiles_is_exact():
    x = torch.rand(1, 3, 301, 517)
    assert torch.allclose(run_tiled(lambda t: t, x, 128, 48), x, atol=1e-6)


@pytest.fixture(scope="module")
def photo_1024(fixtures):
    return ps.load_image(fixtures / "faces" / "whole" / "Blake_Lively.jpg").resize((1024, 1024))


@pytest.mark.parametrize("style", ["ttn", "toon", "sketch"])
def test_tiled_matches_untiled(style, photo_1024):
    model = lively_style_model() if style == "ttn" else ps.load_style(style).model
    spec = StyleSpec(name=style, kind="local")
    whole = np.asarray(Stylizer(model, spec, device="cpu", tile_size=None)(photo_1024), dtype=float)
    tiled = np.asarray(Stylizer(model, spec, device="cpu", tile_size=256)(photo_1024), dtype=float)
    diff = np.abs(whole - tiled)
    assert np.percentile(diff, 99) <= 2.0, np.percentile(diff, 99)
    # A seam is a line: the mean difference along every row and every column (tile boundaries
    # included) stays within half a grey level. Measured: at most 0.29 (ttn), 0.03 (sketch).
    line_error = max(diff.mean(axis=(0, 2)).max(), diff.mean(axis=(1, 2)).max())
    assert line_error <= 0.5, line_error
    # The network's output really depends on context: without overlap the seams show, as lines.
    if style == "ttn":
        seams = np.asarray(Stylizer(model, spec, device="cpu", tile_size=256, tile_overlap=0)(photo_1024), dtype=float)
        assert np.abs(whole - seams).mean(axis=(0, 2)).max() > 10


@pytest.mark.slow
def test_4k_group_photo_with_faces_regions_and_harmonize_stays_under_2gb(fixtures):
    """The whole pipeline on a real group photo at 4K (5 faces: face pass, region parsing,
    harmonizing, compositing) peaks under 2 GB, imports and the input picture included.
    Before blocks and in-place steps it peaked at 2.2 GB here (3.7 GB on the reviewer's machine)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_inference import measure_4k  # the docs' numbers come from the same measurement

    whole = fixtures / "faces" / "whole"
    report = measure_4k("cpu", [whole / "00.jpg", whole / "10045.png"], ["hair", "skin", "lips"], 0.5)
    print(report)
    assert report["size"] == [3840, 2926] and report["faces"] == 5, report
    assert report["peak_mb"] < 2048, report
