"""How a style's sub-networks run: PyTorch float32 or bfloat16, ONNX Runtime, or OpenVINO.

Every backend stands in for one sub-network (:meth:`StyleNetwork.subnetworks
<portrait_stylize.models.base.StyleNetwork.subnetworks>`, e.g. a TTN), mapping ``(B, 3, H, W)``
float32 in the network's colour order and range to its output, for any ``H, W``; they differ in
speed and in the last bits of precision:

* ``torch``: PyTorch float32 (channels-last) on the chosen device; the reference.
* ``torch-bf16``: the U-Net in bfloat16 (channels-last), the guided filter in float32; 55-65 dB
  PSNR against float32, and fast only where the hardware has bfloat16 units (AMX or AVX-512 BF16
  CPUs, recent GPUs).
* ``onnx``: ONNX Runtime on the CPU, from a graph exported from the same weights when first used;
  within 1e-4 of float32.
* ``onnx-int8``: ONNX Runtime on the CPU with the U-Net quantized to int8 (calibrated on
  portraits, the guided filter in float32; :mod:`portrait_stylize.runtime.quantize`); refused for a style
  whose int8 network is under 35 dB from float32. Fast only where the CPU has int8 dot-product
  units (VNNI, AMX), so ``auto`` considers it only there.
* ``openvino``: OpenVINO on the CPU, float32 throughout (its inference-precision hint is set to
  f32, so CPUs with bf16 units do not silently drop to bf16), from an ONNX graph of the same
  weights in which the 3×3 convolutions with 64 or more output channels are computed by
  Winograd's F(4×4, 3×3) (:mod:`portrait_stylize.runtime.winograd`: a quarter of the
  multiplications, what makes float32 fast on AVX2-only CPUs; 135-140 dB from direct float32 on
  the White-box network); compiled once per input shape on first use.

``auto`` (the default) on the CPU measures the backends installed here once per machine (a
DCT-Net-shaped TTN at 384², interleaved rounds; seconds, once: docs/performance.md) and remembers
the ranking, unless other processes kept the CPU busy meanwhile (:mod:`.ranking`), in
``$HF_HOME/portrait-stylize/backend-choice.json``, keyed by the CPU, its flags
(and the kernels the runtimes chose, or any ``ONEDNN_MAX_CPU_ISA`` cap), the thread count and
the runtimes' versions; ``torch-bf16`` is a candidate only where bf16 is native (emulated it is
several times slower), ``onnx-int8`` only where int8 units are. When ``auto`` picked
``onnx-int8`` and a style turns out too far from float32 in int8, the next fastest runs it. On a
GPU ``auto`` is ``torch-bf16`` where bf16 is native, else ``torch``.
Figures: ``benchmarks/bench_peer_tflite.py`` and docs/performance.md.

This module makes the choice (:func:`resolve_backend`, :func:`choose_runners`); what the machine
offers is in :mod:`.cpu`, ``auto``'s measured ranking in :mod:`.ranking`, the runners in
:mod:`.runners` and OpenVINO's per-shape compiled graphs in :mod:`.openvino_graph`.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InvalidArgumentError
from ..options import BACKENDS

# The machine's facts and the measured ranking are read through their modules, so that a test
# patching them where they are defined sees the choice change.
from . import cpu, ranking
from .runners import Runners

_MISSING = {"onnx": "the onnx backend needs onnx and onnxruntime: pip install onnx onnxruntime",
            "onnx-int8": "the onnx-int8 backend needs onnx and onnxruntime: pip install onnx onnxruntime",
            "openvino": "the openvino backend needs onnx and openvino: pip install onnx openvino"}


def cpu_candidates() -> list[str]:
    """The CPU backends ``auto`` chooses among on this machine."""
    available = {"torch": True, "torch-bf16": cpu.has_native_bf16(torch.device("cpu")), "onnx": cpu.has_onnxruntime(),
                 "onnx-int8": cpu.has_onnxruntime() and cpu.has_int8_units(), "openvino": cpu.has_openvino()}
    return [b for b in BACKENDS if available[b]]


def auto_backend(device: torch.device) -> str:
    """The fastest backend for ``device`` (see the module docstring)."""
    if device.type != "cpu":
        return "torch-bf16" if cpu.has_native_bf16(device) else "torch"
    return ranking.ranked_cpu_backends(tuple(cpu_candidates()), torch.get_num_threads())[0]


def auto_fallback(device: torch.device) -> str:
    """What ``auto`` runs a style on when int8 would cost it too much precision: the fastest
    float backend here."""
    if device.type != "cpu":
        return auto_backend(device)
    ranked = ranking.ranked_cpu_backends(tuple(cpu_candidates()), torch.get_num_threads())
    return next(b for b in ranked if b != "onnx-int8")


def resolve_backend(backend: str | None, device: torch.device) -> str:
    """Check ``backend`` (``None`` or ``"auto"`` picks :func:`auto_backend`) against ``device``."""
    if backend in (None, "auto"):
        return auto_backend(device)
    if backend not in BACKENDS:
        raise InvalidArgumentError(f"unknown backend {backend!r}; choose auto, {', '.join(BACKENDS)}")
    if backend in _MISSING:
        if device.type != "cpu":
            raise InvalidArgumentError(
                f"the {backend} backend runs on the CPU, not {device}; use --device cpu or backend torch")
        if not (cpu.has_openvino() if backend == "openvino" else cpu.has_onnxruntime()):
            raise InvalidArgumentError(_MISSING[backend])
    return backend


def choose_runners(subnetworks: dict[str, nn.Module], choice: str | None, device: torch.device) -> Runners:
    """The runners for a style's ``subnetworks`` on ``device`` with the backend ``choice``
    (:func:`resolve_backend`; a style without sub-networks, a built-in filter, runs on ``torch``).
    When ``auto`` picked ``onnx-int8``, a network int8 makes too imprecise switches the style to
    :func:`auto_fallback`; a backend named by the caller raises instead."""
    backend = resolve_backend(choice, device) if subnetworks else "torch"
    fallback = auto_fallback(device) if backend == "onnx-int8" and choice in (None, "auto") else None
    return Runners(subnetworks, backend, device, fallback)
