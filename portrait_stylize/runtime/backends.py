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
  portraits and a texture, the guided filter in float32; :mod:`portrait_stylize.runtime.quantize`);
  refused for a style whose int8 network is under 40 dB from float32 on a held-out portrait or
  under 35 dB on a held-out texture. Fast only where the CPU has int8 dot-product units (VNNI,
  AMX), so ``auto`` considers it only there. (Without them, OpenVINO's int8 kernels are faster
  than its float32 but multiply bytes in pairs that saturate at 16 bits: the White-box style fell
  to 33 dB on a portrait on a CPU capped to AVX2, under the floor its load-time check measured.)
* ``openvino-int8``: the same int8 U-Net run by OpenVINO (2.5-4x faster than ONNX Runtime's
  int8 kernels on AVX-512 CPUs; docs/performance.md); same floors, same condition.
* ``openvino``: OpenVINO on the CPU, float32 throughout (its inference-precision hint is set to
  f32, so CPUs with bf16 units do not silently drop to bf16), from an ONNX graph of the same
  weights in which the 3×3 convolutions with 64 or more output channels are computed by
  Winograd's F(4×4, 3×3) (:mod:`portrait_stylize.runtime.winograd`: a quarter of the
  multiplications, what makes float32 fast on AVX2-only CPUs; 135-140 dB from direct float32 on
  the White-box network); compiled once per input shape on first use.
* ``openvino-bf16``: the U-Net in OpenVINO with bfloat16 inference precision, the guided filter
  in float32; 60-65 dB from float32. Fast where the CPU has AMX (its bf16 matrix unit); ``auto``
  considers it where bf16 is native.

``auto`` (the default) on the CPU measures the backends installed here once per machine and
network architecture (the style's own largest sub-network, random weights, at its tile size up to
512²; interleaved rounds; seconds, once: docs/performance.md) and remembers the ranking, unless
other processes kept the CPU busy meanwhile (:mod:`.ranking`), in
``$HF_HOME/portrait-stylize/backend-choice.json``, keyed by the CPU, its flags (and the kernels
the runtimes chose, or any ``ONEDNN_MAX_CPU_ISA`` cap), the thread count, the runtimes' versions,
the architecture and the side, and checked against the style's first real calls
(:class:`.ranking.CallCheck`: a ranking they contradict is measured again at the next load); the
bf16 backends are candidates only where bf16 is native (emulated it is several times slower), the
int8 ones only where int8 units are. When ``auto`` picked an int8 backend and a style turns out
too far from float32 in int8, the fastest float backend runs it. On a GPU ``auto`` is
``torch-bf16`` where bf16 is native, else ``torch``.
Figures: ``benchmarks/bench_peer_tflite.py`` and docs/performance.md.

This module makes the choice (:func:`resolve_backend`, :func:`choose_runners`); what the machine
offers is in :mod:`.cpu`, ``auto``'s measured ranking in :mod:`.ranking`, the runners in
:mod:`.runners` and OpenVINO's per-shape compiled graphs in :mod:`.openvino_graph`.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InvalidArgumentError
from ..options import BACKENDS, INT8_BACKENDS

# The machine's facts and the measured ranking are read through their modules, so that a test
# patching them where they are defined sees the choice change.
from . import cpu, ranking
from .runners import Runners, takes

#: What each backend outside PyTorch needs installed (the int8 ones quantize with ONNX Runtime).
_NEEDS = {"onnx": ("onnx", "onnxruntime"), "onnx-int8": ("onnx", "onnxruntime"), "openvino": ("onnx", "openvino"),
          "openvino-bf16": ("onnx", "openvino"), "openvino-int8": ("onnx", "onnxruntime", "openvino")}


def cpu_candidates(net: nn.Module | None = None) -> list[str]:
    """The CPU backends ``auto`` chooses among on this machine (for ``net``: those that can run it)."""
    bf16, int8 = cpu.has_native_bf16(torch.device("cpu")), cpu.has_int8_units()

    def usable(backend: str) -> bool:
        return cpu.has_packages(*_NEEDS.get(backend, ())) and (bf16 or "bf16" not in backend) and (
            int8 or backend not in INT8_BACKENDS)

    return [b for b in BACKENDS if usable(b) and (net is None or takes(net, b))]


def auto_backend(device: torch.device, net: nn.Module | None = None, side: int = ranking.PROBE_SIDE) -> str:
    """The fastest backend for ``device`` (see the module docstring), for ``net``'s architecture
    at ``side`` (default: a DCT-Net-shaped TTN at 512²)."""
    if device.type != "cpu":
        return "torch-bf16" if cpu.has_native_bf16(device) else "torch"
    return ranking.ranked_cpu_backends(tuple(cpu_candidates(net)), torch.get_num_threads(), net, side)[0]


def auto_fallback(device: torch.device, net: nn.Module | None = None, side: int = ranking.PROBE_SIDE) -> str:
    """What ``auto`` runs a style on when int8 would cost it too much precision: the fastest
    float backend here (for ``net`` at ``side``, as :func:`auto_backend`)."""
    if device.type != "cpu":
        return auto_backend(device)
    ranked = ranking.ranked_cpu_backends(tuple(cpu_candidates(net)), torch.get_num_threads(), net, side)
    return next(b for b in ranked if b not in INT8_BACKENDS)


def resolve_backend(backend: str | None, device: torch.device, net: nn.Module | None = None,
                    side: int = ranking.PROBE_SIDE) -> str:
    """Check ``backend`` (``None`` or ``"auto"`` picks :func:`auto_backend` for ``net`` at
    ``side``) against ``device``."""
    if backend in (None, "auto"):
        return auto_backend(device, net, side)
    if backend not in BACKENDS:
        raise InvalidArgumentError(f"unknown backend {backend!r}; choose auto, {', '.join(BACKENDS)}")
    if backend in _NEEDS:
        if device.type != "cpu":
            raise InvalidArgumentError(
                f"the {backend} backend runs on the CPU, not {device}; use --device cpu or backend torch")
        if not cpu.has_packages(*_NEEDS[backend]):
            needs = " ".join(_NEEDS[backend])
            raise InvalidArgumentError(f"the {backend} backend needs {needs}: pip install {needs}")
    return backend


def ranking_probe(subnetworks: dict[str, nn.Module], tile_size: int | None) -> tuple[nn.Module, int]:
    """What ``auto`` times for a style: its largest sub-network (the whole picture's, for DCT-Net
    styles), at its tile size up to :data:`.ranking.PROBE_SIDE` (``None``: that side)."""
    net = max(subnetworks.values(), key=lambda n: sum(p.numel() for p in n.parameters()))
    return net, min(tile_size or ranking.PROBE_SIDE, ranking.PROBE_SIDE)


def choose_runners(subnetworks: dict[str, nn.Module], choice: str | None, device: torch.device,
                   tile_size: int | None = None) -> Runners:
    """The runners for a style's ``subnetworks`` on ``device`` with the backend ``choice``
    (:func:`resolve_backend`; a style without sub-networks, a built-in filter, runs on ``torch``).
    ``auto`` measures the largest sub-network at ``tile_size`` (at most, and by default,
    :data:`.ranking.PROBE_SIDE`), and checks its ranking against that network's first real calls
    (:class:`.ranking.CallCheck`). When ``auto`` picked an int8 backend, a network int8 makes too
    imprecise switches the style to :func:`auto_fallback`; a backend named by the caller raises
    instead."""
    if not subnetworks:
        return Runners(subnetworks, "torch", device)
    net, side = ranking_probe(subnetworks, tile_size)
    backend = resolve_backend(choice, device, net, side)
    candidates = tuple(cpu_candidates(net))
    check = (ranking.CallCheck(candidates, torch.get_num_threads(), net, side)
             if choice in (None, "auto") and device.type == "cpu" and len(candidates) > 1 else None)
    fallback = (auto_fallback(device, net, side) if backend in INT8_BACKENDS and choice in (None, "auto")
                else None)
    checked = next(name for name, sub in subnetworks.items() if sub is net)
    return Runners(subnetworks, backend, device, fallback, check, checked)
