"""The picture-quality measures (one class per op) and the fast guided filter they steer."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from portrait_stylize.imaging.ops import gaussian_blur, guided_filter
from portrait_stylize.imaging.quality import (
    DEGRADATIONS,
    Conditions,
    blockiness,
    blur_sigma,
    degrade,
    measure,
    noise_sigma,
)


def _step_image(size: int = 256) -> torch.Tensor:
    """(1, 1, size, size): vertical and horizontal steps between 0.2 and 0.8 (sharp edges)."""
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return (0.2 + 0.6 * (((x // 32) + (y // 48)) % 2)).float()[None, None]


def _smooth_noise(size: int = 256, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return gaussian_blur(torch.rand(1, 1, size, size, generator=generator), 3.0)


class TestBlurSigma:
    def test_recovers_a_known_gaussian_blur(self):
        sharp = _step_image()
        assert float(blur_sigma(sharp)[0]) < 0.5
        for sigma in (1.5, 3.0, 5.0):
            estimate = float(blur_sigma(gaussian_blur(sharp, sigma))[0])
            assert estimate == pytest.approx(sigma, rel=0.25), (sigma, estimate)

    def test_grows_monotonically_and_is_per_image(self):
        sharp = _step_image()
        batch = torch.cat([sharp, gaussian_blur(sharp, 2.0), gaussian_blur(sharp, 4.0)])
        estimates = blur_sigma(batch)
        assert estimates.shape == (3,) and bool((estimates.diff() > 0).all()), estimates

    def test_flat_picture_has_no_edges(self):
        assert math.isinf(float(blur_sigma(torch.full((1, 1, 32, 32), 0.5))[0]))


class TestNoiseSigma:
    def test_reads_added_gaussian_noise(self):
        generator = torch.Generator().manual_seed(1)
        clean = _smooth_noise() * 0.3 + 0.35
        for sigma in (0.01, 0.03):
            noisy = clean + sigma * torch.randn(clean.shape, generator=generator)
            assert float(noise_sigma(noisy)[0]) == pytest.approx(sigma, rel=0.15)
        assert float(noise_sigma(clean)[0]) < 0.002

    def test_edges_are_not_noise(self):
        assert float(noise_sigma(_step_image())[0]) < 1e-3


class TestBlockiness:
    def test_block_steps_stand_out_and_photos_do_not(self):
        smooth = _smooth_noise()
        blocks = torch.nn.functional.avg_pool2d(smooth, 8).repeat_interleave(8, -1).repeat_interleave(8, -2)
        ratio, excess = blockiness(blocks + 0.002 * _smooth_noise(seed=3))
        assert float(ratio[0]) > 5 and float(excess[0]) > 0.0
        ratio, excess = blockiness(smooth)
        assert float(ratio[0]) == pytest.approx(1.0, abs=0.05) and float(excess[0]) < 1e-3

    def test_real_jpeg_blocks_and_a_shifted_grid(self):
        rgb = (_smooth_noise(seed=4).repeat(1, 3, 1, 1)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        encoded = io.BytesIO()
        Image.fromarray(rgb).save(encoded, "JPEG", quality=15)
        jpeg = torch.from_numpy(np.asarray(Image.open(encoded).convert("L"), dtype=np.float32) / 255)[None, None]
        assert float(blockiness(jpeg)[0][0]) > 1.5
        shifted = jpeg[..., 3:, 3:]  # a crop: the grid now lies at phase 5
        assert float(blockiness(shifted)[0][0]) < 1.2  # phase 0 misses it ...
        assert float(blockiness(shifted, phase=None)[0][0]) > 1.5  # ... the strongest phase finds it
        assert float(blockiness(shifted, phase=5)[0][0]) == pytest.approx(float(blockiness(jpeg)[0][0]), rel=0.05)


class TestMeasure:
    def _rgb(self, size: int) -> torch.Tensor:
        image = torch.nn.functional.interpolate(_step_image(256), size=(size, size), mode="nearest")
        return image.repeat(1, 3, 1, 1)

    def test_scale_follows_size_and_blur(self):
        assert measure(self._rgb(512)).scale == pytest.approx(1.0)
        assert measure(self._rgb(1024)).scale == pytest.approx(2.0)
        assert measure(self._rgb(128)).scale == 0.5  # small pictures keep half the kernels
        blurred = measure(gaussian_blur(self._rgb(512), 4.0))
        assert blurred.scale > 2.0  # blurred: its detail is that of a smaller picture

    def test_artefacts_follow_noise(self):
        clean = _smooth_noise().repeat(1, 3, 1, 1)
        grey_noise = torch.randn(1, 1, 256, 256, generator=torch.Generator().manual_seed(5))
        noisy = clean + 0.02 * grey_noise  # the same in R, G, B: luma noise of sigma 0.02
        assert measure(noisy).artefacts == pytest.approx(0.04, rel=0.2)
        assert measure(clean).artefacts < 0.005
        assert isinstance(measure(clean), Conditions)


class TestFastGuidedFilter:
    def test_subsample_one_is_the_exact_filter_and_larger_stays_close(self):
        guide = _smooth_noise(96).repeat(1, 3, 1, 1)
        src = guide + 0.05 * torch.randn(guide.shape, generator=torch.Generator().manual_seed(2))
        exact = guided_filter(guide, src, 8, 1e-3)
        assert torch.equal(guided_filter(guide, src, 8, 1e-3, subsample=1), exact)
        fast = guided_filter(guide, src, 8, 1e-3, subsample=4)
        assert fast.shape == exact.shape and float((fast - exact).abs().mean()) < 0.01
        with pytest.raises(ValueError, match="subsample"):
            guided_filter(guide, src, 8, 1e-3, subsample=0)

    def test_crops_on_the_cell_grid_match_the_whole(self):
        """A crop whose offset is a multiple of ``subsample`` gives the whole picture's result
        away from its borders (what exact tiling relies on), also for sides not a multiple."""
        image = _smooth_noise(101).repeat(1, 3, 1, 1)
        whole = guided_filter(image, image, 12, 1e-3, subsample=3)
        crop = guided_filter(image[..., 30:, 27:], image[..., 30:, 27:], 12, 1e-3, subsample=3)
        assert torch.allclose(crop[..., 36:, 36:], whole[..., 66:, 63:], atol=1e-6)
        shifted = guided_filter(image[..., 31:, 28:], image[..., 31:, 28:], 12, 1e-3, subsample=3)
        assert not torch.allclose(shifted[..., 36:, 36:], whole[..., 67:, 64:], atol=1e-4)  # off the grid: it differs


class TestDegrade:
    def test_each_copy_shows_the_damage_it_names(self):
        rgb = (_step_image(128).repeat(1, 3, 1, 1)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        photo = Image.fromarray(rgb)

        def luma(image: Image.Image) -> torch.Tensor:
            return torch.from_numpy(np.asarray(image.convert("L"), dtype=np.float32) / 255)[None, None]

        sharp = luma(degrade(photo, "sharp"))
        copies = {how: degrade(photo, how) for how in DEGRADATIONS}
        assert all(copy.size == photo.size and copy.mode == "RGB" for copy in copies.values())
        assert float(blur_sigma(luma(copies["blur2"]))[0]) > 1.5 > 0.5 > float(blur_sigma(sharp)[0])
        assert float(blur_sigma(luma(copies["down4"]))[0]) > 1.0
        smooth = Image.fromarray((_smooth_noise(128)[0, 0].numpy() * 255).astype(np.uint8)).convert("RGB")
        assert float(blockiness(luma(degrade(smooth, "jpeg20")))[0][0]) > 1.3 > float(blockiness(luma(smooth))[0][0])
        with pytest.raises(ValueError, match="unknown degradation 'jpeg'"):
            degrade(photo, "jpeg")


def test_measure_looks_at_the_middle_of_large_pictures():
    """A 50-MP photo costs what a 1-MP one does: only the middle 1024 px square is measured
    (on the 8x8 grid), while the size scale still comes from the whole picture."""
    big = torch.rand(1, 3, 1500, 2100, generator=torch.Generator().manual_seed(6))
    middle = big[..., 232:232 + 1024, 536:536 + 1024]
    assert measure(big).artefacts == measure(middle).artefacts
    assert measure(big).scale == pytest.approx(1500 / 512)


@pytest.mark.parametrize("shape", [(1, 1), (1, 1024), (300, 1), (2, 40), (15, 15)])
def test_slivers_get_the_defaults(shape):
    assert measure(torch.rand(1, 3, *shape)) == Conditions(scale=0.5, artefacts=0.0)


def test_faces_smaller_than_a_portraits_set_the_scale():
    """A group photo's or half-length shot's faces look as they would in a portrait: the size
    scale is their median box side over 300 px when that is smaller than the picture's."""
    picture = torch.nn.functional.interpolate(_step_image(256), size=(2048, 2048), mode="nearest").repeat(1, 3, 1, 1)
    assert measure(picture).scale == pytest.approx(4.0)
    assert measure(picture, [150, 300, 450]).scale == pytest.approx(1.0)
    assert measure(picture, [3000]).scale == pytest.approx(4.0)  # a face larger than a portrait's: the size
    assert measure(picture, [30]).scale == 0.5


@pytest.mark.slow
def test_the_pipeline_scales_builtin_styles_with_the_faces_it_finds():
    """The astronaut (a half-length shot, 512 px): her face is ~105 px, so toon runs at the
    scale of her face, not of the picture, and the pipeline's result is that style's."""
    import portrait_stylize as ps
    from portrait_stylize.imaging.io import pil_to_tensor
    from portrait_stylize.pipeline import StylizeDetails

    from helpers import REPO

    photo = Image.open(REPO / "examples" / "astronaut.jpg").convert("RGB")
    st = ps.load_style("toon", face_backend="mediapipe")
    sizes = st.face_sizes(np.asarray(photo), StylizeDetails())
    assert len(sizes) == 1 and 80 < sizes[0] < 150, sizes
    adapted = st.model.adapted_to(pil_to_tensor(photo), sizes)
    alone = measure(pil_to_tensor(photo))
    assert adapted.conditions.scale < alone.scale and adapted.conditions.artefacts == alone.artefacts
    with torch.inference_mode():
        expected = adapted(pil_to_tensor(photo))[0].permute(1, 2, 0).numpy() * 255
    assert np.abs(np.asarray(st(photo), dtype=float) - expected).max() <= 1.0
    assert st.face_sizes(np.asarray(photo), StylizeDetails()) and not ps.load_style("sketch").face_sizes(
        np.zeros((8, 8, 3), np.uint8), StylizeDetails())  # slivers: no detection
