"""Run an image-to-image function on large images in tiles, bounding memory by the tile size.

Two ways, chosen by what is known about the function:

* **Exact** (``context=(halo, align)``, styles that know their reach, networks and built-in
  filters: see
  :meth:`StyleNetwork.tiling_context <portrait_stylize.models.base.StyleNetwork.tiling_context>`):
  the image is cut into cores of about ``tile_size``; each runs in a window starting at a
  multiple of ``align`` with at least ``halo`` pixels of context on every side (but at the image
  border, where the untiled run sees the border too: the edge windows give that room to their
  cores, so that all have one shape) and only its core is kept. With a halo at least the
  function's reach, every output pixel sees exactly what it sees untiled: the result equals the
  untiled one up to float rounding (the tests require ≥ 60 dB; most pixels are bit-identical),
  with no seams to hide.
* **Cross-faded** (no context known): overlapping tiles, the outer quarter of each overlap
  discarded and the middle half cross-faded. Close to the untiled result for local functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from ..errors import InvalidArgumentError


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Evenly spread tile start offsets covering ``[0, length)`` with at least ``overlap`` shared pixels."""
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def _ramp(overlap: int, device: torch.device) -> torch.Tensor:
    """Blend weights rising from 0 to 1 across an overlap of ``overlap`` pixels.

    The outer quarter on each side gets weight 0 (pixels there saw too little context), the
    middle half a smoothstep, so neighbouring ramps sum to one.
    """
    dead = overlap // 4
    rise = max(overlap - 2 * dead, 1)
    t = (torch.arange(overlap, device=device, dtype=torch.float32) - dead + 0.5) / rise
    t = t.clamp(0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _axis_weights(start: int, size: int, prev_end: int | None, next_start: int | None,
                  device: torch.device) -> torch.Tensor:
    w = torch.ones(size, device=device)
    if prev_end is not None:
        ov = prev_end - start
        w[:ov] = torch.minimum(w[:ov], _ramp(ov, device))
    if next_start is not None:
        ov = start + size - next_start
        w[size - ov:] = torch.minimum(w[size - ov:], _ramp(ov, device).flip(0))
    return w


def _axis_plan(length: int, tile: int, overlap: int, device: torch.device) -> list[tuple[int, int, torch.Tensor]]:
    starts = tile_starts(length, tile, overlap)
    size = min(tile, length)
    plan = []
    for i, s in enumerate(starts):
        prev_end = starts[i - 1] + size if i > 0 else None
        next_start = starts[i + 1] if i + 1 < len(starts) else None
        plan.append((s, size, _axis_weights(s, size, prev_end, next_start, device)))
    return plan


def _last_start(length: int, window: int, align: int) -> int:
    """Where the last window of ``window`` pixels starts: on the ``align`` grid, ending at the
    image's end or up to ``align - 1`` pixels short of a whole window past it."""
    return -(-(length - window) // align) * align


def _windows(length: int, window: int, halo: int, align: int) -> list[tuple[int, int, int, int]]:
    """``(core start, core end, window start, window end)`` along one axis of ``length`` pixels,
    in windows of one length, ``window`` (a multiple of ``align``, more than ``2 * halo``).

    Windows start at multiples of ``align`` (as the untiled run's grid does) and neighbours share
    exactly ``2 * halo`` pixels, so each core is its window less ``halo`` on its inner sides only:
    the windows at the image's edges need no context there and give that room to their cores. The
    last window ends at the image's end and is up to ``align - 1`` shorter: padded at the end to a
    multiple of ``align``, as the function pads the untiled image (a style pads to its alignment),
    it is as long as the others. A backend that compiles per input shape (OpenVINO, about 250 MB
    per compiled shape of a DCT-Net TTN at 640²) then sees one shape per picture. An axis no longer
    than one window is one core."""
    if length <= window:
        return [(0, length, 0, length)]
    step = window - 2 * halo
    last = _last_start(length, window, align)
    starts = [*range(0, last, step), last]
    bounds = [0, *(start + halo for start in starts[1:]), length]
    return [(bounds[i], bounds[i + 1], start, min(start + window, length)) for i, start in enumerate(starts)]


def _fixed_windows(length: int, core: int, halo: int, align: int) -> list[tuple[int, int, int, int]]:
    """Windows of ``core + 2 * halo`` pixels whatever the picture's size (:func:`_windows`)."""
    return _windows(length, core + 2 * halo, halo, align)


def _even_size(length: int, core: int, align: int) -> int:
    """The core size of as few cores of at most ``core`` pixels as cover ``length``, as even as
    multiples of ``align`` allow (the last may be shorter)."""
    count = -(-length // core)
    return -(-length // count // align) * align


def _even_cores(length: int, core: int, halo: int, align: int) -> list[tuple[int, int, int, int]]:
    """As few cores of at most ``core`` pixels (rounded up to ``align``) as cover ``length``, of
    equal size but the last, each window ``halo`` wider on its inner sides only."""
    size = _even_size(length, core, align)
    return [(start, min(start + size, length), max(start - halo, 0), min(start + size + halo, length))
            for start in range(0, length, size)]


def _even_windows(length: int, core: int, halo: int, align: int) -> list[tuple[int, int, int, int]]:
    """No more windows than :func:`_even_cores` has cores, of one length (:func:`_windows`), the
    shortest with which that many cover ``length``: one compiled shape per picture size, and each window's
    context only on its inner sides, as :func:`_even_cores` computes it (a 4K picture's width in
    4 windows: 4224 pixels, where windows of its even cores' length plus context on both sides
    took 4344)."""
    count = -(-length // core)
    if count == 1:
        return [(0, length, 0, length)]
    window = -(-(length + 2 * halo * (count - 1)) // count // align) * align
    while _last_start(length, window, align) > (count - 1) * (window - 2 * halo):
        window += align
    return _windows(length, window, halo, align)


#: How exact tiling cuts each axis (``run_tiled``'s ``cores``): "fixed": windows of ``tile_size``
#: plus context whatever the picture's size (a backend compiling per shape compiles once for
#: every picture); "even": as few windows as cores of ``tile_size`` allow, of one length per
#: picture (fewer tiles, less context recomputed, a compile per picture size); "tight": even
#: cores, each window only as wide as its context needs (for functions that do not compile per shape).
CORE_PLANS = {"fixed": _fixed_windows, "even": _even_windows, "tight": _even_cores}


def _run_exact(fn: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor,
               rows: list[tuple[int, int, int, int]], cols: list[tuple[int, int, int, int]], bar) -> torch.Tensor:
    height, width = image.shape[-2:]
    out: torch.Tensor | None = None
    for y0, y1, wy0, wy1 in rows:
        for x0, x1, wx0, wx1 in cols:
            result = fn(image[..., wy0:wy1, wx0:wx1]).float().cpu()
            if out is None:
                out = torch.empty(1, result.shape[1], height, width)
            out[..., y0:y1, x0:x1] = result[..., y0 - wy0:y1 - wy0, x0 - wx0:x1 - wx0]
            bar.update()
    return out


def run_tiled(fn: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, tile_size: int | None,
              overlap: int = 128, progress: bool = False,
              context: Callable[[], tuple[int, int] | None] | None = None, cores: str = "fixed") -> torch.Tensor:
    """Apply ``fn`` to ``image`` tile by tile (see the module docstring).

    Args:
        fn: maps ``(1, C, h, w)`` to ``(1, C', h, w)`` (a style's forward pass).
        image: ``(1, C, H, W)`` tensor. Tiles are sliced from it and passed to ``fn`` as they are
            (``fn`` moves them to its device).
        tile_size: side of a square tile (exact tiling: of a tile's core, rounded down to a
            multiple of ``align``); ``None`` or an image no larger than one tile runs ``fn`` once
            on the whole image.
        overlap: cross-faded tiling: pixels shared by neighbouring tiles (``< tile_size``).
        progress: show a tqdm bar over tiles.
        context: returns ``(halo, align)`` for exact tiling, or ``None`` to cross-fade; called
            only when the image is tiled (measuring a network's reach takes a moment).
        cores: how exact tiling cuts the picture (:data:`CORE_PLANS`): ``"fixed"``, ``"even"``
            (large tiles of a backend that compiles per shape, which would otherwise spend up to
            half their work on windows of the fixed size) or ``"tight"`` (a network streamed by
            rows: :mod:`portrait_stylize.runtime.row_stream`).

    Returns:
        ``(1, C', H, W)`` float32 tensor on the CPU.
    """
    height, width = image.shape[-2:]
    if tile_size is None or (height <= tile_size and width <= tile_size):
        return fn(image).float().cpu()
    exact = context() if context is not None else None
    if exact is not None:
        halo, align = exact
        halo = -(-halo // align) * align  # neighbours then start on the grid too (styles give one)
        # Cores at least 8 halos wide: with a wide reach, small cores would spend most of the
        # work on context (a 4K photo through a broad filter ran 3x slower in 512-px tiles).
        core = max(max(tile_size, 8 * halo) // align, 1) * align
        plan = CORE_PLANS[cores]
        rows, cols = plan(height, core, halo, align), plan(width, core, halo, align)
        with tqdm(total=len(rows) * len(cols), desc="tiles", unit="tile", disable=not progress, leave=False) as bar:
            return _run_exact(fn, image, rows, cols, bar)
    if not 0 <= overlap < tile_size:
        raise InvalidArgumentError(f"overlap must be in [0, tile_size={tile_size}), got {overlap}")
    rows = _axis_plan(height, tile_size, overlap, torch.device("cpu"))
    cols = _axis_plan(width, tile_size, overlap, torch.device("cpu"))
    out: torch.Tensor | None = None
    weight_sum = torch.zeros(1, 1, height, width)
    bar = tqdm(total=len(rows) * len(cols), desc="tiles", unit="tile", disable=not progress, leave=False)
    for y0, h, wy in rows:
        for x0, w, wx in cols:
            result = fn(image[..., y0:y0 + h, x0:x0 + w]).float().cpu()
            if out is None:
                out = torch.zeros(1, result.shape[1], height, width)
            weight = (wy[:, None] * wx[None, :])[None, None]
            out[..., y0:y0 + h, x0:x0 + w] += result * weight
            weight_sum[..., y0:y0 + h, x0:x0 + w] += weight
            bar.update()
    bar.close()
    return out.div_(weight_sum.clamp_min_(1e-8))
