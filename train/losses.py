"""Losses of the TTN (DCT-Net / White-box) and the region-masked Gram loss of paper 2.

Images are ``(B, 3, H, W)`` float tensors in [-1, 1], RGB, unless a docstring says otherwise.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from portrait_stylize.imaging.ops import guided_filter

# White-box's colour-shift ranges for the random grayscale of the texture representation.
_SHIFT_LOW = torch.tensor([0.199, 0.487, 0.014])
_SHIFT_HIGH = torch.tensor([0.399, 0.687, 0.214])


def lsgan_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN discriminator loss: real logits -> 1, fake -> 0."""
    return 0.5 * (((real - 1) ** 2).mean() + (fake**2).mean())


def lsgan_g(fake: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN generator loss: fake logits -> 1."""
    return 0.5 * ((fake - 1) ** 2).mean()


def surface(x: torch.Tensor, radius: int = 5, eps: float = 0.2) -> torch.Tensor:
    """Surface representation: ``x`` guided-filtered by itself (smooth areas, kept edges)."""
    return guided_filter(x, x, radius, eps)


def random_colour_weights(batch: int, generator: torch.Generator) -> torch.Tensor:
    """``(B, 3)`` random RGB weights for :func:`texture` (one draw per image, per step)."""
    u = torch.rand(batch, 3, generator=generator)
    return _SHIFT_LOW + u * (_SHIFT_HIGH - _SHIFT_LOW)


def texture(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Texture representation: a randomly weighted grayscale ``(B, 1, H, W)`` (colour-blind, so the
    texture discriminator judges strokes and detail, not colour)."""
    w = weights.to(x.device, x.dtype)[..., None, None]
    return (x * w).sum(1, keepdim=True) / w.sum(1, keepdim=True)


def tv_loss(x: torch.Tensor) -> torch.Tensor:
    """Total variation: mean squared difference of neighbouring pixels (0 for a constant image)."""
    return ((x[..., 1:, :] - x[..., :-1, :]) ** 2).mean() + ((x[..., :, 1:] - x[..., :, :-1]) ** 2).mean()


def superpixel_average(x: torch.Tensor, segments: int = 200) -> torch.Tensor:
    """Each image replaced by the mean colour of its SLIC superpixels (White-box's structure
    representation); computed without gradient, same shape and range as ``x``."""
    from skimage.segmentation import slic

    out = torch.empty_like(x)
    for i, img in enumerate(x.detach().float().cpu().numpy().transpose(0, 2, 3, 1)):
        labels = slic((img + 1) / 2, n_segments=segments, compactness=10, start_label=0, channel_axis=-1)
        flat, counts = labels.ravel(), np.bincount(labels.ravel())
        means = np.stack([np.bincount(flat, img[..., c].ravel()) / np.maximum(counts, 1) for c in range(3)], -1)
        out[i] = torch.from_numpy(means[labels].transpose(2, 0, 1).astype(np.float32))
    return out


def gram(features: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Gram matrix ``(B, C, C)`` of ``(B, C, H, W)`` features, over the pixels where ``mask``
    (``(B, 1, H, W)`` in [0, 1], resized to the features) is on; normalised by the mask area."""
    b, c, h, w = features.shape
    if mask is None:
        mask = features.new_ones(b, 1, h, w)
    else:
        mask = F.interpolate(mask.to(features.dtype), size=(h, w), mode="bilinear", align_corners=False)
    f = (features * mask).reshape(b, c, h * w)
    area = mask.reshape(b, -1).sum(1).clamp_min(1.0)
    return f @ f.transpose(1, 2) / (area[:, None, None] * c)


def masked_gram_loss(out_features: torch.Tensor, style_features: torch.Tensor, out_mask: torch.Tensor,
                     style_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Paper 2's local style loss: MSE between Gram matrices of the output features inside its
    region mask and of the style features (inside theirs, when given). Pixels outside the
    masks do not matter."""
    return F.mse_loss(gram(out_features, out_mask), gram(style_features, style_mask))


def expression_loss(predicted: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The facial perception loss: L2 between expression values (eye/eye/mouth opening) the
    regressor sees in the output and those measured on the photo, over photos with a face."""
    if not valid.any():
        return predicted.sum() * 0.0
    return F.mse_loss(predicted[valid], target[valid])
