"""MediaPipe's custom TFLite operators in PyTorch (``mediapipe/util/tflite/operations/``), with the
signature of :mod:`.tflite_ops`: the face landmark model's attention crops
(``Landmarks2TransformMatrix``, ``TransformTensorBilinear``, ``TransformLandmarks``) and the selfie
model's transposed convolution (``Convolution2DTransposeBias``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .tflite_ops import nchw, nhwc


def landmarks_to_transform_matrix(inputs: list[Tensor | None], options: dict[str, Any]) -> Tensor:
    """MediaPipe's ``Landmarks2TransformMatrix`` (version 2): the matrix of the crop around a set of
    landmarks that the attention face mesh resamples its lips and eyes from.

    Input: landmarks (B, N, 3) as (x, y, z), x and y in the pixel units of the feature map to crop
    (the model scales its 192-pixel landmarks by 1/4 for a 48×48 map). Output: (B, 4, 4) affine
    matrices ``T`` (row-major, last two rows those of the identity) that map a pixel ``(u, v)`` of the
    ``output_width × output_height`` crop to ``T @ (u, v, 0, 1)`` in the feature map.

    With ``r = target_rotation_radians - atan2(yR - yL, xR - xL)`` (L, R = landmarks
    ``left_rotation_idx``, ``right_rotation_idx``), the ``subset_idxs`` landmarks rotated by ``r`` have
    a bounding box of size ``(w, h)`` and centre ``c'``; ``c = R(-r) c'`` is that centre unrotated, and

        T = shift(c) · R(-r) · scale(scale_x · w / output_width, scale_y · h / output_height)
            · shift(-output_width / 2, -output_height / 2).

    (MediaPipe reads ``subset_idxs`` as pairs and repeats an odd last index; only the set matters.)
    """
    points = inputs[0][..., :2]
    left, right = points[:, options["left_rotation_idx"]], points[:, options["right_rotation_idx"]]
    rotation = options["target_rotation_radians"] - torch.atan2(right[:, 1] - left[:, 1], right[:, 0] - left[:, 0])
    cos, sin = torch.cos(rotation)[:, None], torch.sin(rotation)[:, None]
    subset = points[:, options["subset_idxs"]]
    x, y = subset[..., 0], subset[..., 1]
    rotated_x, rotated_y = cos * x - sin * y, sin * x + cos * y
    (x_min, x_max), (y_min, y_max) = rotated_x.aminmax(dim=1), rotated_y.aminmax(dim=1)
    cos, sin = cos[:, 0], sin[:, 0]
    mid_x, mid_y = (x_min + x_max) / 2, (y_min + y_max) / 2
    centre_x, centre_y = cos * mid_x + sin * mid_y, -sin * mid_x + cos * mid_y
    width, height = options["output_width"], options["output_height"]
    scale_x = options["scale_x"] * (x_max - x_min) / width
    scale_y = options["scale_y"] * (y_max - y_min) / height
    # R(-r) · scale = [[a, b], [c, d]]; the translation moves the crop's centre onto `centre`.
    a, b, c, d = cos * scale_x, sin * scale_y, -sin * scale_x, cos * scale_y
    tx, ty = centre_x - (a * width + b * height) / 2, centre_y - (c * width + d * height) / 2
    zero, one = torch.zeros_like(a), torch.ones_like(a)
    rows = [[a, b, zero, tx], [c, d, zero, ty], [zero, zero, one, zero], [zero, zero, zero, one]]
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)


def transform_tensor_bilinear(inputs: list[Tensor | None], options: dict[str, Any]) -> Tensor:
    """MediaPipe's ``TransformTensorBilinear`` (version 2): resample a crop of a feature map.

    Inputs: features (B, H, W, C) and matrices (B, 4, 4) (from :func:`landmarks_to_transform_matrix`).
    Output: (B, ``output_height``, ``output_width``, C). Pixel centres map to pixel centres: output
    pixel ``(u, v)`` samples the features at ``(x, y) = T @ (u + ½, v + ½, 0, 1) - ½`` bilinearly; a
    sample outside ``[0, W - 1] × [0, H - 1]`` is 0.
    """
    features, matrix = inputs
    n, h, w, c = features.shape
    out_h, out_w = options["output_height"], options["output_width"]
    v, u = torch.meshgrid(torch.arange(out_h, device=features.device, dtype=matrix.dtype) + 0.5,
                          torch.arange(out_w, device=features.device, dtype=matrix.dtype) + 0.5, indexing="ij")
    m = matrix[:, :2, :, None, None]
    x = m[:, 0, 0] * u + m[:, 0, 1] * v + m[:, 0, 3] - 0.5
    y = m[:, 1, 0] * u + m[:, 1, 1] * v + m[:, 1, 3] - 0.5
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    # Zeroed outside so that a degenerate matrix (NaN, inf) cannot make an index out of range.
    x, y = torch.where(inside, x, 0.0), torch.where(inside, y, 0.0)
    x0, y0 = x.floor(), y.floor()
    fx, fy = (x - x0)[..., None].to(features.dtype), (y - y0)[..., None].to(features.dtype)
    # A zero row and column after the last: the +1 neighbours of a sample on the last row or column
    # (weight 0) read them, so one gather takes all four neighbours of every sample.
    flat = F.pad(features, (0, 0, 0, 1, 0, 1)).reshape(n, (h + 1) * (w + 1), c)
    first = (y0 * (w + 1) + x0).long().reshape(n, -1)
    index = torch.cat([first, first + 1, first + (w + 1), first + (w + 2)], dim=1)[..., None].expand(-1, -1, c)
    top_left, top_right, bottom_left, bottom_right = torch.gather(flat, 1, index).reshape(
        n, 4, out_h, out_w, c).unbind(1)
    top = (1 - fx) * top_left + fx * top_right
    bottom = (1 - fx) * bottom_left + fx * bottom_right
    return torch.where(inside[..., None], (1 - fy) * top + fy * bottom, 0.0)


def transform_landmarks(inputs: list[Tensor | None], options: dict[str, Any]) -> Tensor:
    """MediaPipe's ``TransformLandmarks`` (version 2): map landmarks found in a crop back.

    Inputs: landmarks (B, N, D), D = 2 (x, y) or 3 (x, y, z), and matrices (B, 4, 4). Output
    (B, N, D): ``(x', y') = T @ (x, y, 0, 1)`` (first two rows), z unchanged.
    """
    landmarks, matrix = inputs
    x, y = landmarks[..., 0], landmarks[..., 1]
    m = matrix[:, :, :, None]
    moved_x = m[:, 0, 0] * x + m[:, 0, 1] * y + m[:, 0, 3]
    moved_y = m[:, 1, 0] * x + m[:, 1, 1] * y + m[:, 1, 3]
    return torch.cat([torch.stack([moved_x, moved_y], dim=-1), landmarks[..., 2:]], dim=-1)


def transpose_conv_bias(inputs: list[Tensor | None], options: dict[str, Any]) -> Tensor:
    """MediaPipe's ``Convolution2DTransposeBias``: a transposed convolution plus a bias.

    Inputs: x (B, H, W, Cin), weight OHWI (Cout, kh, kw, Cin), bias (Cout,). Output (B, H', W', Cout):
    input pixel ``(i, j)`` adds ``x[i, j] · weight[:, ky, kx]`` at ``(i · sh - top + ky, j · sw - left + kx)``.
    ``VALID``: ``H' = sh · (H - 1) + kh``, no offset; ``SAME``: ``p = max(0, kh - (H - 1) % sh - 1)``,
    ``H' = sh · (H - 1) + kh - p``, ``top = p // 2`` (likewise for the width).
    """
    x, weight, bias = inputs
    (stride_h, stride_w), (kh, kw) = options["stride"], weight.shape[1:3]
    y = F.conv_transpose2d(nchw(x), weight.permute(3, 0, 1, 2), bias, stride=(stride_h, stride_w))
    if options["padding"] == "SAME":
        pad_h = max(0, kh - (x.shape[1] - 1) % stride_h - 1)
        pad_w = max(0, kw - (x.shape[2] - 1) % stride_w - 1)
        y = y[:, :, pad_h // 2: y.shape[2] - pad_h + pad_h // 2, pad_w // 2: y.shape[3] - pad_w + pad_w // 2]
    return nhwc(y)
