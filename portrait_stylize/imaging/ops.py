"""Pure tensor image operations shared by the networks and the built-in styles.

All functions take ``(B, C, H, W)`` float tensors and work on any device and dtype. They never
change the value range of their input; callers document the range they use.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# ITU-R BT.601 luma weights for RGB input.
_LUMA_RGB = (0.299, 0.587, 0.114)


def check_bchw(x: torch.Tensor, name: str = "input") -> None:
    if x.ndim != 4:
        raise ValueError(f"{name} must be a (B, C, H, W) tensor, got shape {tuple(x.shape)}")


def box_filter(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a ``(2r+1)²`` window, counting only pixels inside the image.

    This equals TensorFlow's ``depthwise_conv2d(x, ones, 'SAME') / N`` used by the official
    guided filter, where ``N`` is the same box sum over an image of ones.

    Args:
        x: ``(B, C, H, W)`` tensor.
        radius: window radius ``r >= 0``; the window is ``2r+1`` pixels wide.

    Returns:
        ``(B, C, H, W)`` tensor of local means.
    """
    check_bchw(x)
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    if radius == 0:
        return x
    h, w = x.shape[-2:]
    # Box sums as 2r+1 shifted slices per axis of the zero-padded input: exact (no cumulative
    # sums) and several times faster than avg_pool2d(count_include_pad=False) on CPU. The sums
    # and the division work in place on tensors made here (one pass over memory fewer each).
    x = F.pad(x, (radius, radius, radius, radius))
    for axis, size in ((-2, h), (-1, w)):
        total = x.narrow(axis, 0, size) + x.narrow(axis, 1, size)
        for i in range(2, 2 * radius + 1):
            total += x.narrow(axis, i, size)
        x = total
    return x.div_(_window_counts(h, radius, x)[:, None] * _window_counts(w, radius, x)[None, :])


def _window_counts(n: int, radius: int, like: torch.Tensor) -> torch.Tensor:
    """How many of the ``2r+1`` window positions around each of ``n`` pixels lie inside the image."""
    i = torch.arange(n, device=like.device)
    return ((i + radius).clamp(max=n - 1) - (i - radius).clamp(min=0) + 1).to(like.dtype)


#: On the CPU the exact guided filter works on bands of rows holding about this many values per
#: tensor (1 MB in float32): its dozen temporaries then stay in the CPU's caches and are reused
#: instead of being fresh page-faulted allocations: 2.9-3.8x faster at 2048² and 4K, 1.0-1.2x at
#: 512², bit-identical (docs/performance.md, "The guided filter in bands").
BAND_VALUES = 1 << 18


def guided_filter(guide: torch.Tensor, src: torch.Tensor, radius: int, eps: float, subsample: int = 1) -> torch.Tensor:
    """Edge-preserving guided filter (He et al. 2013), as used after DCT-Net's and White-box's U-Net.

    The output is locally a linear function of ``guide`` (``a * guide + b`` per window), so it keeps
    the guide's edges while taking ``src``'s colours. Channels are filtered independently.

    Args:
        guide: ``(B, C, H, W)`` guidance image (DCT-Net: the network input, in [-1, 1]).
        src: ``(B, C, H, W)`` image to filter (DCT-Net: the raw network output), same shape.
            ``guide`` may also have ``C == 1`` to guide every channel of ``src`` by one map.
        radius: box radius (DCT-Net/White-box inference: 1).
        eps: regularisation; larger means smoother (White-box 5e-3, DCT-Net 1e-2, surface
            representation in training 0.2).
        subsample: fit the per-window coefficients on copies shrunk by this factor (area
            averaging) and upsample them bilinearly before applying them to the full-size
            ``guide`` (He & Sun's fast guided filter): a window of ``radius`` full-size pixels
            then costs ``1/subsample²`` as much, and edges stay as sharp as the guide's.
            1 (the default) is the exact filter.

    Returns:
        ``(B, C, H, W)`` filtered ``src``.
    """
    check_bchw(guide, "guide")
    check_bchw(src, "src")
    if guide.shape[-2:] != src.shape[-2:] or guide.shape[1] not in (1, src.shape[1]):
        raise ValueError(
            f"guide {tuple(guide.shape)} and src {tuple(src.shape)} must share B, H, W and have "
            "the same number of channels (or guide has 1)"
        )
    if subsample < 1:
        raise ValueError(f"subsample must be >= 1, got {subsample}")
    if subsample > 1:
        # Pad to whole cells so the cells sit on the same grid in any crop whose offset is a
        # multiple of subsample: tiles of a large picture then match the untiled result.
        height, width = guide.shape[-2:]
        pad = (0, -width % subsample, 0, -height % subsample)
        a, b = _mean_coefficients(F.avg_pool2d(F.pad(guide, pad, mode="replicate"), subsample),
                                  F.avg_pool2d(F.pad(src, pad, mode="replicate"), subsample),
                                  max(1, round(radius / subsample)), eps)
        a = F.interpolate(a, scale_factor=subsample, mode="bilinear", align_corners=False)[..., :height, :width]
        b = F.interpolate(b, scale_factor=subsample, mode="bilinear", align_corners=False)[..., :height, :width]
        return a * guide + b
    # On the CPU, bands of rows, each with the 2r rows above and below that its output reads (two
    # box passes): inside a band every window sum and count is the whole image's, so the result is
    # the unbanded one, bit for bit. (A GPU gains nothing from bands, and pays per kernel launch.)
    height, reach = guide.shape[-2], 2 * radius
    rows = height if src.device.type != "cpu" else \
        max(1, 8 * reach, BAND_VALUES // (src.shape[0] * src.shape[1] * src.shape[-1]))
    parts = []
    for top in range(0, height, rows):
        start, stop = max(0, top - reach), min(height, top + rows + reach)
        a, b = _mean_coefficients(guide[..., start:stop, :], src[..., start:stop, :], radius, eps)
        part = a * guide[..., start:stop, :] + b
        parts.append(part[..., top - start:top - start + min(rows, height - top), :])
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-2)


def _mean_coefficients(guide: torch.Tensor, src: torch.Tensor, radius: int,
                       eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The guided filter's per-window linear coefficients ``a``, ``b`` averaged over each pixel's
    windows: the output is ``a * guide + b``."""
    mean_g = box_filter(guide, radius)
    mean_s = box_filter(src, radius)
    cov_gs = box_filter(guide * src, radius) - mean_g * mean_s
    var_g = box_filter(guide * guide, radius) - mean_g * mean_g
    a = cov_gs / (var_g + eps)
    return box_filter(a, radius), box_filter(mean_s - a * mean_g, radius)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with reflected borders.

    Args:
        x: ``(B, C, H, W)`` tensor.
        sigma: standard deviation in pixels (``<= 0`` returns ``x``). The kernel spans ±3σ.

    Returns:
        ``(B, C, H, W)`` blurred tensor.
    """
    check_bchw(x)
    if sigma <= 0:
        return x
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    # Reflect padding needs the pad to be smaller than the side; replicate works for any size.
    mode = "reflect" if min(x.shape[-2:]) > radius else "replicate"
    x = F.pad(x, (radius, radius, radius, radius), mode=mode)
    x = F.conv2d(x, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return F.conv2d(x, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)


def rgb_to_luma(x: torch.Tensor) -> torch.Tensor:
    """Luma of an RGB image.

    Args:
        x: ``(B, 3, H, W)`` RGB tensor (any range).

    Returns:
        ``(B, 1, H, W)`` tensor in the same range.
    """
    check_bchw(x)
    if x.shape[1] != 3:
        raise ValueError(f"expected 3 RGB channels, got shape {tuple(x.shape)}")
    w = torch.tensor(_LUMA_RGB, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


# OKLab (Björn Ottosson, 2020): linear sRGB -> LMS-like cone responses, cube root, -> Lab. A
# perceptual space where equal steps look equal, so colours can be quantized and mixed without
# hue shifts.
_RGB_TO_LMS = ((0.4122214708, 0.5363325363, 0.0514459929), (0.2119034982, 0.6806995451, 0.1073969566),
               (0.0883024619, 0.2817188376, 0.6299787005))
_LMS_TO_LAB = ((0.2104542553, 0.7936177850, -0.0040720468), (1.9779984951, -2.4285922050, 0.4505937099),
               (0.0259040371, 0.7827717662, -0.8086757660))
_LAB_TO_LMS = ((1.0, 0.3963377774, 0.2158037573), (1.0, -0.1055613458, -0.0638541728),
               (1.0, -0.0894841775, -1.2914855480))
_LMS_TO_RGB = ((4.0767416621, -3.3077115913, 0.2309699292), (-1.2684380046, 2.6097574011, -0.3413193965),
               (-0.0041960863, -0.7034186147, 1.7076147010))


def _mix(x: torch.Tensor, matrix) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", torch.tensor(matrix, device=x.device, dtype=x.dtype), x)


def rgb_to_oklab(x: torch.Tensor) -> torch.Tensor:
    """sRGB to OKLab.

    Args:
        x: ``(B, 3, H, W)`` sRGB (gamma-encoded) in [0, 1].

    Returns:
        ``(B, 3, H, W)``: ``L`` in [0, 1] (black to white), ``a`` (green-red) and ``b``
        (blue-yellow) in about [-0.4, 0.4]. White is ``(1, 0, 0)``, sRGB red
        ``(0.628, 0.225, 0.126)``.
    """
    check_bchw(x)
    linear = torch.where(x > 0.04045, ((x.clamp_min(0.0) + 0.055) / 1.055) ** 2.4, x / 12.92)
    return _mix(torch.sign(lms := _mix(linear, _RGB_TO_LMS)) * lms.abs() ** (1.0 / 3.0), _LMS_TO_LAB)


def oklab_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """OKLab to sRGB, the inverse of :func:`rgb_to_oklab`.

    Args:
        x: ``(B, 3, H, W)`` OKLab (``L``, ``a``, ``b``).

    Returns:
        ``(B, 3, H, W)`` sRGB (gamma-encoded), clipped to [0, 1] (colours outside the sRGB gamut
        are clipped per channel).
    """
    check_bchw(x)
    linear = _mix(_mix(x, _LAB_TO_LMS) ** 3, _LMS_TO_RGB).clamp(0.0, 1.0)
    return torch.where(linear > 0.0031308, 1.055 * linear ** (1.0 / 2.4) - 0.055, 12.92 * linear)


def quantize_soft(x: torch.Tensor, step: float, sharpness: float) -> torch.Tensor:
    """Round ``x`` to multiples of ``step`` with smooth (anti-aliased) transitions between them.

    Args:
        x: tensor of any shape.
        step: distance between the levels (> 0).
        sharpness: how hard the transitions are: 0 returns ``x`` unchanged, large values give
            a staircase (each transition is a logistic curve of this slope, in steps).

    Returns:
        Tensor of ``x``'s shape; ``k * step`` for values near ``k * step``.
    """
    if step <= 0:
        raise ValueError(f"step must be > 0, got {step}")
    v = x / step
    k = torch.floor(v)
    if sharpness <= 0:
        return x
    # Rescaled so the curve meets 0 and 1 at the ends of each step: no jumps between steps.
    edge = torch.sigmoid(torch.tensor(sharpness / 2, dtype=x.dtype, device=x.device))
    frac = (torch.sigmoid((v - k - 0.5) * sharpness) - (1 - edge)) / (2 * edge - 1)
    return (k + frac) * step


def xdog(luma: torch.Tensor, sigma: float, threshold: float, gain: float) -> torch.Tensor:
    """Line darkness from an extended difference of Gaussians (Winnemöller et al. 2012): the dark
    side of edges at the scale ``sigma``.

    Args:
        luma: ``(B, 1, H, W)`` brightness in [0, 1].
        sigma: scale of the lines in pixels (the second Gaussian is 1.6 times wider).
        threshold: contrast below which nothing is drawn (noise, JPEG blocks).
        gain: how fast lines go from nothing to full ink above the threshold.

    Returns:
        ``(B, 1, H, W)`` ink coverage in [0, 1].
    """
    dog = gaussian_blur(luma, sigma) - gaussian_blur(luma, 1.6 * sigma)
    return torch.clamp((-dog - threshold) * gain, 0.0, 1.0)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Edge-replicate ``(B, C, H, W)`` at the bottom/right so that ``H`` and ``W`` are multiples of ``multiple``."""
    pad_h, pad_w = -x.shape[-2] % multiple, -x.shape[-1] % multiple
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else x
