"""The papers' picture metrics, as documented tensor operations.

* :func:`ssim`: structural similarity of luma (Wang et al. 2004: 11-tap Gaussian window,
  sigma 1.5, K1 = 0.01, K2 = 0.03), photo against result: how much structure a style keeps.
* :func:`psnr`: peak signal-to-noise ratio of RGB, photo against result: how far its pixels moved.
* :func:`landmark_error`: how far a photo's face moved in the result, by the face detector's 5
  landmarks (the normalised mean error of face-alignment benchmarks): a face-geometry score that,
  unlike identity, needs no downloaded network with the MediaPipe face backend.
* :class:`PerceptualDistance`: LPIPS (Zhang et al. 2018) from the ``lpips`` package, AlexNet
  trunk with the v0.1 linear heads: 0 for identical pictures, larger is more different.
* :class:`SetDistance`: FID and KID (``torchmetrics``) between a set of results and a set of
  style exemplars, on Inception-v3 pool features: how close the results are to the style.
* :class:`FaceEmbedder`: ArcFace embeddings of faces aligned by their 5 landmarks; the cosine of
  a photo's and its result's embedding says whether the person is still recognisable (the
  identity score of DCT-Net's paper, which used CosFace).

SSIM, PSNR and the landmark error need no network weights from outside the package. Every network
is passed in (see :mod:`portrait_stylize.evaluation.metric_weights` for the real weights), so tests
run each metric on small random networks.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..faces.align import ARCFACE_TEMPLATE, similarity, warp_to_crop
from ..faces.face import Face
from ..imaging.ops import check_bchw, gaussian_blur, rgb_to_luma

_SSIM_C1, _SSIM_C2 = 0.01 ** 2, 0.03 ** 2


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean structural similarity of the luma of two batches of pictures.

    Args:
        a, b: ``(B, 3, H, W)`` RGB in [0, 1], the same shape (at least 11 px per side).

    Returns:
        ``(B,)`` in [-1, 1]: 1 for identical pictures.
    """
    check_bchw(a, "a")
    if a.shape != b.shape:
        raise ValueError(f"a {tuple(a.shape)} and b {tuple(b.shape)} must have the same shape")
    x, y = rgb_to_luma(a.double()), rgb_to_luma(b.double())

    def mean(t: torch.Tensor) -> torch.Tensor:
        return gaussian_blur(t, 1.5)[..., 5:-5, 5:-5]  # only windows wholly inside the picture

    mx, my = mean(x), mean(y)
    vx, vy, cxy = mean(x * x) - mx * mx, mean(y * y) - my * my, mean(x * y) - mx * my
    index = ((2 * mx * my + _SSIM_C1) * (2 * cxy + _SSIM_C2)) / ((mx * mx + my * my + _SSIM_C1) * (vx + vy + _SSIM_C2))
    return index.mean(dim=(1, 2, 3)).float()


#: The smallest mean squared error :func:`psnr` tells apart: that of rounding to 8 bits, (1/255)² / 12.
#: Photos and results are 8-bit, so smaller differences are not measurable, and identical pictures
#: score 10·log10(12·255²) ≈ 58.9 dB rather than infinity, which a mean over photos and JSON cannot hold.
PSNR_MSE_FLOOR = (1 / 255) ** 2 / 12


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio of two batches of pictures, over all three channels, in dB.

    Args:
        a, b: ``(B, 3, H, W)`` RGB in [0, 1] (the peak), the same shape.

    Returns:
        ``(B,)``: 10·log10(1 / MSE), MSE at least :data:`PSNR_MSE_FLOOR`; higher is closer.
    """
    check_bchw(a, "a")
    if a.shape != b.shape:
        raise ValueError(f"a {tuple(a.shape)} and b {tuple(b.shape)} must have the same shape")
    mse = (a.double() - b.double()).square().mean(dim=(1, 2, 3)).clamp_min(PSNR_MSE_FLOOR)
    return (-10 * torch.log10(mse)).float()


def landmark_error(landmarks: np.ndarray, found: list[Face]) -> float | None:
    """How far the face at ``landmarks`` in a photo moved in the result, where ``found`` are the
    faces detected: the mean distance of the 5 landmarks over the photo's distance between the
    eyes (the normalised mean error of face-alignment benchmarks); 0 for a face left in place.

    Styles keep faces where they were, so the photo's face is the one whose box in the result holds
    the photo's nose tip (the nearest such, if several).

    Args:
        landmarks: ``(5, 2)`` ``(x, y)`` in :data:`portrait_stylize.faces.face.LANDMARK_NAMES` order.
        found: the faces detected in the result.

    Returns:
        The error, or ``None`` when no face was found there (the style made it undetectable).
    """
    landmarks = np.asarray(landmarks, np.float64)
    (nx, ny), eyes = landmarks[2], float(np.linalg.norm(landmarks[0] - landmarks[1]))
    errors = [float(np.linalg.norm(face.landmarks - landmarks, axis=1).mean()) / eyes for face in found
              if face.box[0] <= nx <= face.box[2] and face.box[1] <= ny <= face.box[3]]
    return min(errors, default=None)


class PerceptualDistance(nn.Module):
    """LPIPS distance (``lpips`` package, AlexNet trunk, v0.1 heads).

    Args:
        state_dict: the trunk and head weights (``metric_weights_path("lpips")``); ``None``
            keeps random weights (tests), with the heads made non-negative as trained LPIPS
            heads are, so distances stay >= 0.

    Shapes:
        ``forward(a, b)``: ``(B, 3, H, W)`` RGB in [0, 1] each -> ``(B,)``, >= 0; 0 for identical
        pictures.
    """

    def __init__(self, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        import lpips

        # pnet_rand / pretrained=False: nothing is fetched or unpickled here; weights come in.
        with warnings.catch_warnings():  # lpips still passes torchvision's deprecated `pretrained`
            warnings.simplefilter("ignore", UserWarning)
            self.net = lpips.LPIPS(net="alex", pretrained=False, pnet_rand=True, verbose=False)
        if state_dict is not None:
            missing, unexpected = self.net.load_state_dict(state_dict, strict=False)
            # lins.N is lpips's second name for linN (the same module); the scaling is fixed.
            wanted = [k for k in missing if not k.startswith(("scaling_layer.", "lins."))]
            if wanted or unexpected:
                raise ValueError(f"LPIPS weights do not fit: missing {wanted[:4]}, unexpected {unexpected[:4]}")
        else:
            for head in self.net.lins:
                head.model[-1].weight.data.abs_()
        self.net.eval().requires_grad_(False)

    @torch.inference_mode()
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.net(a.float(), b.float(), normalize=True).flatten()


class PoolFeatures(nn.Module):
    """Inception-v3 (torchvision layout) up to its 2048-d average pool, for FID and KID.

    Args:
        state_dict: ``metric_weights_path("inception")``'s tensors; ``None``: random (tests).

    Shapes:
        ``forward(x)``: ``(B, 3, H, W)`` RGB in [0, 1] (resized to 299² inside, bilinear, then
        normalized with ImageNet's mean and std) -> ``(B, 2048)``.
    """

    num_features = 2048

    def __init__(self, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        from torchvision.models import inception_v3

        # transform_input: the Google-trained weights expect [-1, 1] inputs; torchvision maps its
        # ImageNet-normalized input to that, as it does when it loads these weights itself.
        self.net = inception_v3(weights=None, aux_logits=False, init_weights=state_dict is None, transform_input=True)
        if state_dict is not None:
            self.net.load_state_dict(state_dict)
        self.net.fc = nn.Identity()
        self.net.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x.float(), size=(299, 299), mode="bilinear", align_corners=False, antialias=True)
        return self.net((x - self.mean) / self.std)


class _Given(nn.Module):
    """Stands in for the feature network inside torchmetrics once the features are computed."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


class SetDistance:
    """FID and KID of sets of pictures against one reference set (``torchmetrics``), on a feature
    network; the reference set's features are computed once, here.

    Args:
        features: maps ``(B, 3, H, W)`` RGB in [0, 1] to ``(B, D)`` (e.g. :class:`PoolFeatures`).
        real: the reference set (e.g. style exemplars): ``(1, 3, H, W)`` RGB in [0, 1] each, one
            size, at least 2.
        kid_subset: pictures per KID subset (at most the smaller set's size).
        batch: pictures per feature-network call.
    """

    def __init__(self, features: nn.Module, real: list[torch.Tensor], kid_subset: int = 50, batch: int = 16) -> None:
        self.features = features
        self.kid_subset = kid_subset
        self.batch = batch
        self.real = self._features(_at_least_two(real))

    @torch.inference_mode()
    def _features(self, images: list[torch.Tensor]) -> torch.Tensor:
        stacked = torch.cat(images)
        return torch.cat([self.features(stacked[i:i + self.batch])
                          for i in range(0, len(stacked), self.batch)]).double()

    def __call__(self, fake: list[torch.Tensor]) -> dict[str, float]:
        """``fake``: ``(1, 3, H, W)`` RGB in [0, 1] each, one size, at least 2.

        Returns:
            ``{"fid": ..., "kid": ..., "kid_std": ...}``; 0 for the reference set itself.
        """
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance

        # Features once per picture, shared by both metrics (each would run the network again).
        fake_f = self._features(_at_least_two(fake))
        given = _Given(self.real.shape[1])
        fid = FrechetInceptionDistance(feature=given)
        kid = KernelInceptionDistance(feature=given, subset_size=min(self.kid_subset, len(self.real), len(fake_f)),
                                      subsets=20)
        for metric in (fid, kid):
            metric.update(self.real, real=True)
            metric.update(fake_f, real=False)
        with torch.random.fork_rng(devices=[]):  # KID draws random subsets: the same report every run
            torch.manual_seed(0)
            kid_mean, kid_std = kid.compute()
        return {"fid": max(float(fid.compute()), 0.0), "kid": float(kid_mean), "kid_std": float(kid_std)}


def _at_least_two(images: list[torch.Tensor]) -> list[torch.Tensor]:
    if len(images) < 2:
        raise ValueError(f"FID and KID need at least 2 pictures per set, got {len(images)}")
    return images


#: ArcFace's input side and normalization: RGB, (x - 127.5) / 127.5.
ARCFACE_SIDE = 112


class FaceEmbedder:
    """ArcFace embeddings of faces, run by ONNX Runtime.

    Args:
        onnx_path: an ONNX model mapping ``(B, 3, 112, 112)`` float RGB in [-1, 1] to ``(B, D)``
            (``metric_weights_path("arcface")``, or a small random model in tests).
    """

    def __init__(self, onnx_path) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """The unit-length embedding of the face at ``landmarks``.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            landmarks: ``(5, 2)`` float ``(x, y)``: eyes, nose tip, mouth corners
                (:data:`portrait_stylize.faces.face.LANDMARK_NAMES` order).

        Returns:
            ``(D,)`` float32, unit length.
        """
        crop = warp_to_crop(image, similarity(np.asarray(landmarks, np.float64), ARCFACE_TEMPLATE), ARCFACE_SIDE)
        x = (crop.astype(np.float32).transpose(2, 0, 1)[None] - 127.5) / 127.5
        embedding = self.session.run(None, {self.input: x})[0][0].astype(np.float32)
        return embedding / max(float(np.linalg.norm(embedding)), 1e-12)


def identity_similarity(embed: Callable[[np.ndarray, np.ndarray], np.ndarray], photo: np.ndarray,
                        result: np.ndarray, landmarks: np.ndarray) -> float:
    """Cosine similarity of the face at ``landmarks`` in ``photo`` and in ``result`` (both
    ``(H, W, 3)`` uint8 RGB of the same size; a style keeps the face where it was, so the photo's
    landmarks place the face in the result too): 1 for the same picture."""
    return float(np.dot(embed(photo, landmarks), embed(result, landmarks)))
