"""What this CPU and installation offer the backends: the CPU's feature flags and a one-line
description of it, whether it has bfloat16 or int8 units, which optional runtimes are
installed, and how much of the CPU other processes are using."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import platform
import time
from collections.abc import Callable, Iterator
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
    vector instruction set the runtimes use with the int8/bf16/matrix units they see, e.g. ``"AMD
    EPYC; 2 cores; avx avx2 avx512_bf16 ... fma; kernels: AVX512 (VNNI, BF16)"`` (printed with every
    benchmark figure). The flags are the hardware's (``/proc/cpuinfo``); the kernels and units are
    what PyTorch found by asking the CPU itself, so a run capped by ``benchmarks/isa_cap.py`` says
    ``kernels: AVX2`` or ``kernels: AVX512 (VNNI)``."""
    model = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), "")
    wanted = sorted(f for f in cpu_flags() if f.startswith(("avx", "amx", "asimd", "sve")) or f in ("fma", "f16c"))
    # The units the runtimes see (CPUID, capped or not), beside the vector width of the kernels.
    units = [name for name, probe in (("VNNI", "_is_vnni_supported"), ("BF16", "_is_avx512_bf16_supported"),
                                      ("AMX", "_is_amx_tile_supported")) if getattr(torch.cpu, probe, lambda: False)()]
    return (f"{model or platform.processor() or platform.machine()}; {os.cpu_count()} cores; {' '.join(wanted)}; "
            f"kernels: {torch.backends.cpu.get_cpu_capability()}" + (f" ({', '.join(units)})" if units else ""))


def has_native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 convolutions in hardware (not emulated)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
        return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)
    return False


def has_int8_units() -> bool:
    """Whether the CPU has int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI or AMX int8), as
    the CPUID instruction reports them (so a process capped by ``benchmarks/isa_cap.py`` sees what
    its runtimes see; ``/proc/cpuinfo`` lists the hardware's flags), or ``/proc/cpuinfo`` where
    PyTorch has no probe."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_vnni_supported", "_is_amx_tile_supported")]
    if all(probe is not None for probe in probes):
        return any(probe() for probe in probes)
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


def has_packages(*names: str) -> bool:
    """Whether every one of the packages ``names`` is installed (e.g. ``"onnx", "openvino"``)."""
    return all(importlib.util.find_spec(name) is not None for name in names)


#: The shortest block :func:`others_share` measures.
MIN_SHARE_SECONDS = 0.25


def _busy_seconds() -> float | None:
    """CPU seconds the whole machine has been busy since boot (``/proc/stat``: all but idle and
    iowait), or ``None`` where that cannot be read."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        ticks = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
    except (OSError, ValueError, IndexError):
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot() -> tuple[float | None, float, float]:
    """``(machine busy seconds or None, this process's CPU seconds, wall clock)`` now, for
    :func:`others_share_since`."""
    return _busy_seconds(), sum(os.times()[:2]), time.perf_counter()


def others_share_since(start: tuple[float | None, float, float]) -> float | None:
    """The share of the CPU other processes used since ``start`` (:func:`cpu_snapshot`): CPU time
    of other processes / (wall time x cores), in [0, 1]. The machine's busy time (``/proc/stat``)
    less this process's own CPU time: whatever else ran meanwhile, which would have slowed some of
    this process's runs and not others. ``None`` (unknown) where ``/proc/stat`` cannot be read, or
    after less than :data:`MIN_SHARE_SECONDS` (the kernel counts in 10-ms ticks)."""
    (start_busy, start_own, start_wall), (end_busy, end_own, end_wall) = start, cpu_snapshot()
    wall = end_wall - start_wall
    if start_busy is None or end_busy is None or wall < MIN_SHARE_SECONDS:
        return None
    others = (end_busy - start_busy) - (end_own - start_own)
    return min(max(others / (wall * (os.cpu_count() or 1)), 0.0), 1.0)


@contextlib.contextmanager
def others_share() -> Iterator[Callable[[], float | None]]:
    """:func:`others_share_since` over a block::

        with others_share() as share:
            ...  # e.g. time the backends
        share()  # in [0, 1]; None: unknown
    """
    start, result = cpu_snapshot(), [None]
    try:
        yield lambda: result[0]
    finally:
        result[0] = others_share_since(start)
