"""How a style's sub-networks run: PyTorch float32, PyTorch bfloat16, or ONNX Runtime.

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

``auto`` (the default) picks ``torch-bf16`` where the device has native bfloat16, else ``onnx`` on
the CPU when ``onnx`` and ``onnxruntime`` are installed, else ``torch``: the fastest measured order
on each kind of machine (``benchmarks/bench_peer_tflite.py``).
"""

from __future__ import annotations

import copy
import importlib.util
import logging

import torch
from torch import nn

from .errors import InvalidArgumentError
from .models.base import Runner
from .models.ttn import pad_to_multiple
from .options import BACKENDS

logger = logging.getLogger(__name__)


def has_native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 convolutions in hardware (not emulated)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = torch.cpu
        return any(getattr(cpu, probe, lambda: False)() for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))
    return False


def has_onnxruntime() -> bool:
    """Whether the ONNX backend's packages (``onnx`` to export, ``onnxruntime`` to run) are installed."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime"))


def auto_backend(device: torch.device) -> str:
    """The fastest backend for ``device`` (see the module docstring for the order)."""
    if has_native_bf16(device):
        return "torch-bf16"
    if device.type == "cpu" and has_onnxruntime():
        return "onnx"
    return "torch"


def resolve_backend(backend: str | None, device: torch.device) -> str:
    """Check ``backend`` (``None`` or ``"auto"`` picks :func:`auto_backend`) against ``device``."""
    if backend in (None, "auto"):
        return auto_backend(device)
    if backend not in BACKENDS:
        raise InvalidArgumentError(f"unknown backend {backend!r}; choose auto, {', '.join(BACKENDS)}")
    if backend == "onnx":
        if device.type != "cpu":
            raise InvalidArgumentError(f"the onnx backend runs on the CPU, not {device}; use --device cpu or backend torch")
        if not has_onnxruntime():
            raise InvalidArgumentError("the onnx backend needs onnx and onnxruntime: pip install 'onnx<1.20' onnxruntime")
    return backend


def make_runner(net: nn.Module, backend: str, device: torch.device) -> Runner:
    """A callable running the sub-network ``net`` with ``backend`` on ``device``; ``net`` itself
    is not modified.

    The PyTorch backends run a channels-last copy (faster for these convolutions on CPU and GPU;
    a copy because channels-last parameters cannot be saved as safetensors).
    """
    if backend in ("torch", "torch-bf16"):
        dtype = torch.bfloat16 if backend == "torch-bf16" else torch.float32
        return copy.deepcopy(net).to(device=device, dtype=dtype, memory_format=torch.channels_last)
    if backend == "onnx":
        from .export import onnx_bytes, onnx_session

        session = onnx_session(onnx_bytes(net))

        def run(x: torch.Tensor) -> torch.Tensor:
            h, w = x.shape[-2:]
            padded = pad_to_multiple(x.float(), net.size_multiple).cpu().contiguous().numpy()
            y = torch.from_numpy(session.run(None, {"image": padded})[0])
            return y[..., :h, :w].to(x.device)

        return run
    raise InvalidArgumentError(f"unknown backend {backend!r}; choose auto, {', '.join(BACKENDS)}")


class Runners(dict):
    """Runners for a style's sub-networks by name, each made on first use (an ONNX export or a
    bfloat16 copy costs time and memory, and a style may never use its face network).

    Args:
        nets: the sub-networks by name (:meth:`StyleNetwork.subnetworks`).
        backend, device: as :func:`make_runner`.
    """

    def __init__(self, nets: dict[str, nn.Module], backend: str, device: torch.device) -> None:
        super().__init__()
        self.nets, self.backend, self.device = nets, backend, device

    def __missing__(self, name: str) -> Runner:
        self[name] = make_runner(self.nets[name], self.backend, self.device)
        return self[name]
