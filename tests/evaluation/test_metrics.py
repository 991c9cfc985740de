"""The evaluation metrics (one class per metric) on small random networks, offline: the
properties a metric must have, and agreement with reference implementations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import nn

from portrait_stylize.evaluation.metrics import (
    FaceEmbedder,
    PerceptualDistance,
    SetDistance,
    identity_similarity,
    landmark_error,
    psnr,
    ssim,
)
from portrait_stylize.faces.face import Face
from portrait_stylize.imaging.ops import gaussian_blur

from helpers import tiny_face_onnx


def _pictures(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    """``(n, 3, size, size)`` smooth random RGB pictures in [0, 1] (structure at several scales)."""
    generator = torch.Generator().manual_seed(seed)
    x = gaussian_blur(torch.rand(n, 3, size, size, generator=generator), 2.0)
    return ((x - x.amin(dim=(1, 2, 3), keepdim=True))
            / (x.amax(dim=(1, 2, 3), keepdim=True) - x.amin(dim=(1, 2, 3), keepdim=True)))


def _noisy(x: torch.Tensor, sigma: float, seed: int = 1) -> torch.Tensor:
    return (x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))).clamp(0, 1)


class TestSsim:
    def test_identical_is_one_and_damage_lowers_it(self):
        x = _pictures(2)
        assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-6)
        slight, strong = ssim(x, _noisy(x, 0.05)), ssim(x, _noisy(x, 0.3))
        assert bool((strong < slight).all() and (slight < 0.99).all())
        assert bool((ssim(x, x.roll(20, dims=-1)) < slight).all())  # shuffled content

    def test_matches_scikit_image_on_luma(self):
        x, y = _pictures(1), _noisy(_pictures(1), 0.1)
        luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        a, b = ((t * luma).sum(1)[0].double().numpy() for t in (x, y))
        reference = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                          data_range=1.0)
        assert float(ssim(x, y)[0]) == pytest.approx(reference, abs=2e-3)

    def test_refuses_mismatched_shapes(self):
        with pytest.raises(ValueError, match="same shape"):
            ssim(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 40))


class TestPsnr:
    def test_known_pairs(self):
        """Grey 0.5 against 0.6 and 0.51: MSE 0.01 and 0.0001 over every channel, so 20 and 40 dB."""
        x = torch.full((2, 3, 16, 16), 0.5, dtype=torch.float64)
        y = x + torch.tensor([0.1, 0.01], dtype=torch.float64).view(2, 1, 1, 1)
        assert psnr(x, y).tolist() == pytest.approx([20.0, 40.0], abs=1e-4)

    def test_identical_pictures_score_the_8_bit_ceiling(self):
        """Not infinity: the rounding noise of 8 bits, (1/255)² / 12, is the smallest error told apart."""
        x = _pictures(2)
        assert psnr(x, x).tolist() == pytest.approx([10 * np.log10(12 * 255**2)] * 2, abs=1e-4)  # 58.92 dB

    def test_matches_scikit_image(self):
        x, y = _pictures(1), _noisy(_pictures(1), 0.1)
        reference = peak_signal_noise_ratio(x[0].double().numpy(), y[0].double().numpy(), data_range=1.0)
        assert float(psnr(x, y)[0]) == pytest.approx(reference, abs=1e-4)

    def test_refuses_mismatched_shapes(self):
        with pytest.raises(ValueError, match="same shape"):
            psnr(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 40))


class TestLandmarkError:
    #: Eyes 50 px apart, nose tip at (125, 130).
    PHOTO = np.array([[100, 110], [150, 110], [125, 130], [108, 150], [142, 150]], np.float64)

    @staticmethod
    def _face(landmarks: np.ndarray, box=(90.0, 90.0, 160.0, 170.0)) -> Face:
        return Face(box=box, landmarks=np.asarray(landmarks, np.float64), score=0.9)

    def test_is_the_mean_shift_over_the_eye_distance(self):
        assert landmark_error(self.PHOTO, [self._face(self.PHOTO)]) == 0.0
        assert landmark_error(self.PHOTO, [self._face(self.PHOTO + [5, 0])]) == pytest.approx(0.1)  # 5 px / 50 px
        moved = self.PHOTO.copy()
        moved[3:] += [0, 10]  # only the mouth corners, 10 px each: 20 px over 5 points
        assert landmark_error(self.PHOTO, [self._face(moved)]) == pytest.approx(20 / 5 / 50)

    def test_the_face_is_the_one_over_the_photos_nose_and_the_nearest_of_those(self):
        elsewhere = self._face(self.PHOTO + [300, 0], box=(390.0, 90.0, 460.0, 170.0))
        assert landmark_error(self.PHOTO, [elsewhere]) is None  # a face, but not this one: lost
        assert landmark_error(self.PHOTO, []) is None
        near, far = self._face(self.PHOTO + [2, 0]), self._face(self.PHOTO + [10, 0])
        assert landmark_error(self.PHOTO, [far, elsewhere, near]) == pytest.approx(0.04)


class TestPerceptualDistance:
    def test_identical_is_zero_and_grows_with_damage(self):
        torch.manual_seed(0)
        lpips = PerceptualDistance()
        x = _pictures(2)
        assert torch.allclose(lpips(x, x), torch.zeros(2), atol=1e-7)
        slight, strong = lpips(x, _noisy(x, 0.05)), lpips(x, _noisy(x, 0.3))
        assert bool((slight > 0).all() and (strong > slight).all())

    def test_loads_a_state_dict_and_refuses_one_that_does_not_fit(self):
        torch.manual_seed(0)
        source = PerceptualDistance()
        weights = {k: v for k, v in source.net.state_dict().items() if not k.startswith(("scaling_layer.", "lins."))}
        torch.manual_seed(1)
        copy = PerceptualDistance(weights)
        x, y = _pictures(1), _noisy(_pictures(1), 0.2)
        assert torch.equal(copy(x, y), source(x, y))
        with pytest.raises(ValueError, match="missing"):
            PerceptualDistance({k: v for k, v in weights.items() if "slice1" not in k})


class TinyFeatures(nn.Module):
    """A small random feature network standing in for Inception (16 pool features)."""

    num_features = 16

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x):
        return self.body(x.float())


class TestSetDistance:
    def test_a_set_against_itself_is_near_zero_and_noise_increases_it(self):
        real = [p[None] for p in _pictures(24, seed=2)]
        distance = SetDistance(TinyFeatures(), real, kid_subset=12)
        same = distance(real)
        assert abs(same["fid"]) < 1e-3 and abs(same["kid"]) < 1e-3
        slight = distance([_noisy(p, 0.05, seed=i) for i, p in enumerate(real)])
        strong = distance([_noisy(p, 0.3, seed=i) for i, p in enumerate(real)])
        assert 0 < slight["fid"] < strong["fid"] and slight["kid"] < strong["kid"]
        assert strong["kid_std"] >= 0

    def test_needs_two_pictures_per_set(self):
        with pytest.raises(ValueError, match="at least 2"):
            SetDistance(TinyFeatures(), [_pictures(1)])
        with pytest.raises(ValueError, match="at least 2"):
            SetDistance(TinyFeatures(), [_pictures(1), _pictures(1)])([_pictures(1)])


class TestFaceEmbedder:
    def test_identity_is_one_for_the_same_face_and_lower_for_damage(self, tmp_path):
        tiny_face_onnx(tmp_path / "face.onnx")
        embed = FaceEmbedder(tmp_path / "face.onnx")
        photo = (_pictures(1, 256)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        landmarks = np.array([[100, 110], [156, 110], [128, 140], [106, 170], [150, 170]], np.float64)
        vector = embed(photo, landmarks)
        assert vector.shape == (32,) and abs(float(np.linalg.norm(vector)) - 1) < 1e-5
        assert identity_similarity(embed, photo, photo, landmarks) == pytest.approx(1.0, abs=1e-5)
        noisy = np.clip(photo + np.random.default_rng(0).normal(0, 15, photo.shape), 0, 255).astype(np.uint8)
        other = (_pictures(1, 256, seed=9)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)  # someone else
        assert (identity_similarity(embed, photo, other, landmarks)
                < identity_similarity(embed, photo, noisy, landmarks) < 0.9999)
