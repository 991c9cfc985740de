"""What this CPU and installation offer the backends: the CPU's feature flags and a one-line
description of it, whether it has bfloat16 or int8 units, and which optional runtimes are
installed."""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
from pathlib import Path

import torch


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
    except OSError:
        return []


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``/proc/cpuinfo``, read once; empty where it cannot be read)."""
    lines = (line for line in _cpuinfo() if line.startswith(("flags", "Features")))
    return frozenset(next((line.split(":", 1)[1].split() for line in lines), []))


def cpu_description() -> str:
    """The CPU model, core count, the vector/matrix extensions that decide speed and the widest
    vector instruction set the runtimes use, e.g. ``"AMD EPYC; 2 cores; avx avx2 avx512_bf16 ...
    fma; kernels: AVX512"`` (printed with every benchmark figure). The flags are the hardware's
    (``/proc/cpuinfo``); the kernels are what PyTorch found by asking the CPU itself, so a run
    capped to AVX2 (``benchmarks/isa_cap.py``) says ``kernels: AVX2``."""
    model = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), "")
    wanted = sorted(f for f in cpu_flags() if f.startswith(("avx", "amx", "asimd", "sve")) or f in ("fma", "f16c"))
    return (f"{model or platform.processor() or platform.machine()}; {os.cpu_count()} cores; {' '.join(wanted)}; "
            f"kernels: {torch.backends.cpu.get_cpu_capability()}")


def has_native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 convolutions in hardware (not emulated)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
        return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)
    return False


def has_int8_units() -> bool:
    """Whether the CPU has int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI or AMX int8)."""
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


def _installed(*names: str) -> bool:
    return all(importlib.util.find_spec(name) is not None for name in names)


def has_onnxruntime() -> bool:
    """Whether the ONNX backend's packages (``onnx`` to export, ``onnxruntime`` to run) are installed."""
    return _installed("onnx", "onnxruntime")


def has_openvino() -> bool:
    """Whether the OpenVINO backend's packages (``onnx`` to export, ``openvino`` to run) are installed."""
    return _installed("onnx", "openvino")
