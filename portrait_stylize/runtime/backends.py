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
DCT-Net-shaped TTN at 384², a few runs each: 7.8 s with five backends on 2 cores) and remembers
the ranking in ``$HF_HOME/portrait-stylize/backend-choice.json``, keyed by the CPU, its flags
(and the kernels the runtimes chose, or any ``ONEDNN_MAX_CPU_ISA`` cap), the thread count and the runtimes' versions; ``torch-bf16`` is a candidate only where bf16 is native (emulated it
is several times slower), ``onnx-int8`` only where int8 units are. When ``auto`` picked
``onnx-int8`` and a style turns out too far from float32 in int8, the next fastest runs it. On a
GPU ``auto`` is ``torch-bf16`` where bf16 is native, else ``torch``.
Figures: ``benchmarks/bench_peer_tflite.py`` and docs/performance.md.
"""

from __future__ import annotations

import copy
import functools
import importlib.metadata
import importlib.util
import json
import logging
import os
import platform
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..common.data_home import data_home
from ..errors import InvalidArgumentError
from ..common.files import write_atomically
from ..models.base import Runner
from ..models.ttn import TTN
from ..imaging.ops import pad_to_multiple
from .winograd import with_winograd_convolutions
from ..options import BACKENDS
from .quantize import QuantizationError

logger = logging.getLogger(__name__)

#: Side of the square test image ``auto`` times the backends on, and runs per backend (the
#: first, a warm-up, is not counted; the fastest of the rest is).
_PROBE_SIDE, _PROBE_RUNS = 384, 4
#: Input shapes an OpenVINO runner keeps compiled (each costs memory; a batch of photos of
#: different sizes would otherwise recompile for every one).
OPENVINO_SHAPES = 4
_MISSING = {"onnx": "the onnx backend needs onnx and onnxruntime: pip install 'onnx<1.20' onnxruntime",
            "onnx-int8": "the onnx-int8 backend needs onnx and onnxruntime: pip install 'onnx<1.20' onnxruntime",
            "openvino": "the openvino backend needs onnx and openvino: pip install 'onnx<1.20' openvino"}


def has_native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 convolutions in hardware (not emulated)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = torch.cpu
        return any(getattr(cpu, probe, lambda: False)() for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))
    return False


def _installed(*names: str) -> bool:
    return all(importlib.util.find_spec(name) is not None for name in names)


def has_onnxruntime() -> bool:
    """Whether the ONNX backend's packages (``onnx`` to export, ``onnxruntime`` to run) are installed."""
    return _installed("onnx", "onnxruntime")


def has_openvino() -> bool:
    """Whether the OpenVINO backend's packages (``onnx`` to export, ``openvino`` to run) are installed."""
    return _installed("onnx", "openvino")


def has_int8_units() -> bool:
    """Whether the CPU has int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI or AMX int8)."""
    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


def cpu_candidates() -> list[str]:
    """The CPU backends ``auto`` chooses among on this machine."""
    available = {"torch": True, "torch-bf16": has_native_bf16(torch.device("cpu")), "onnx": has_onnxruntime(),
                 "onnx-int8": has_onnxruntime() and has_int8_units(), "openvino": has_openvino()}
    return [b for b in BACKENDS if available[b]]


def auto_backend(device: torch.device) -> str:
    """The fastest backend for ``device`` (see the module docstring)."""
    if device.type != "cpu":
        return "torch-bf16" if has_native_bf16(device) else "torch"
    return ranked_cpu_backends(tuple(cpu_candidates()), torch.get_num_threads())[0]


def auto_fallback(device: torch.device) -> str:
    """What ``auto`` runs a style on when int8 would cost it too much precision: the fastest
    float backend here."""
    if device.type != "cpu":
        return auto_backend(device)
    ranked = ranked_cpu_backends(tuple(cpu_candidates()), torch.get_num_threads())
    return next(b for b in ranked if b != "onnx-int8")


def resolve_backend(backend: str | None, device: torch.device) -> str:
    """Check ``backend`` (``None`` or ``"auto"`` picks :func:`auto_backend`) against ``device``."""
    if backend in (None, "auto"):
        return auto_backend(device)
    if backend not in BACKENDS:
        raise InvalidArgumentError(f"unknown backend {backend!r}; choose auto, {', '.join(BACKENDS)}")
    if backend in _MISSING:
        if device.type != "cpu":
            raise InvalidArgumentError(f"the {backend} backend runs on the CPU, not {device}; use --device cpu or backend torch")
        if not (has_openvino() if backend == "openvino" else has_onnxruntime()):
            raise InvalidArgumentError(_MISSING[backend])
    return backend


# --- measuring which backend is fastest here ---------------------------------------------------


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
    except OSError:
        return []


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``/proc/cpuinfo``, read once; empty where it cannot be read)."""
    return frozenset(next((line.split(":", 1)[1].split() for line in _cpuinfo() if line.startswith(("flags", "Features"))), []))


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


def machine_key(threads: int, candidates: tuple[str, ...]) -> str:
    """What a measured choice depends on: CPU, its vector units (and any cap on them), threads,
    candidates, runtime versions."""
    versions = []
    for package in ("torch", "onnxruntime", "openvino"):
        try:
            versions.append(f"{package}={importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    # A cap on oneDNN's instruction set changes what the same CPU runs at.
    isa_cap = f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', '')}"
    return " | ".join([cpu_description(), isa_cap, f"threads={threads}", ",".join(candidates), *versions])


def choice_file() -> Path:
    """``$HF_HOME/portrait-stylize/backend-choice.json`` (read at every call)."""
    return data_home() / "backend-choice.json"


def _remembered() -> dict:
    try:
        data = json.loads(choice_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # none yet, or damaged: measure again and rewrite it
    return data if isinstance(data, dict) else {}


def _remember(key: str, entry: dict) -> None:
    """Add ``entry`` under ``key``, written to a temporary file and renamed into place (a crash
    never leaves a half-written file; a read-only cache only costs a new measurement next time)."""
    path = choice_file()
    text = json.dumps({**_remembered(), key: entry}, indent=1)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    except OSError as exc:
        logger.info("could not remember the backend choice in %s: %s", path, exc)


def measure_backends(candidates: tuple[str, ...], side: int = _PROBE_SIDE, runs: int = _PROBE_RUNS) -> dict[str, float]:
    """Fastest of ``runs - 1`` timed runs (seconds) of each backend on a DCT-Net-shaped TTN with
    seeded random weights and a ``side``² input, on the current thread count."""
    net = TTN().eval()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        for parameter in net.parameters():
            parameter.data.normal_(0.0, 0.05)
        x = torch.rand(1, 3, side, side) * 2 - 1
    seconds = {}
    with torch.inference_mode():
        for backend in candidates:
            # Random weights say nothing about int8 precision: time it without the floor.
            runner = _int8_runner(net, None) if backend == "onnx-int8" else make_runner(net, backend, torch.device("cpu"))
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                runner(x)
                times.append(time.perf_counter() - start)
            seconds[backend] = min(times[1:])
    return seconds


@functools.lru_cache(maxsize=None)
def ranked_cpu_backends(candidates: tuple[str, ...], threads: int) -> tuple[str, ...]:
    """``candidates``, fastest first here at ``threads`` threads: remembered, or measured once
    (:func:`measure_backends`) and remembered in :func:`choice_file`."""
    if len(candidates) == 1:
        return candidates
    key = machine_key(threads, candidates)
    remembered = _remembered().get(key)
    if isinstance(remembered, dict) and sorted(remembered.get("ranking") or []) == sorted(candidates):
        return tuple(remembered["ranking"])
    logger.info("measuring which backend is fastest on this machine (once): %s", ", ".join(candidates))
    seconds = measure_backends(candidates)
    ranking = tuple(sorted(seconds, key=seconds.get))
    _remember(key, {"ranking": list(ranking), "seconds": {b: round(t, 4) for b, t in seconds.items()},
                    "measured": time.strftime("%Y-%m-%d %H:%M:%S")})
    logger.info("fastest backend here: %s (%s)", ranking[0], ", ".join(f"{b} {t * 1000:.0f} ms" for b, t in seconds.items()))
    return ranking


# --- runners -----------------------------------------------------------------------------------


def _padded(run: Callable[[np.ndarray], np.ndarray], multiple: int) -> Runner:
    """A runner for a numpy graph ``run`` whose sides must be multiples of ``multiple``: pads by
    edge replication, runs on the CPU in float32, crops, and returns on the input's device."""

    def runner(x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        padded = pad_to_multiple(x.float(), multiple).cpu().contiguous().numpy()
        return torch.from_numpy(run(padded))[..., :h, :w].to(x.device)

    return runner


class OpenVINOGraph:
    """An ONNX graph compiled by OpenVINO for the CPU, once per input shape (the first call at a
    new shape compiles; :data:`OPENVINO_SHAPES` shapes are kept), float32, ``threads`` threads
    (default: ``torch.get_num_threads()``). Calls from several threads are safe."""

    def __init__(self, onnx: bytes, threads: int | None = None) -> None:
        import openvino

        self._core = openvino.Core()
        self._onnx = onnx
        self._config = {"INFERENCE_NUM_THREADS": threads or torch.get_num_threads(), "NUM_STREAMS": 1,
                        "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        self._compiled: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def _compiled_for(self, shape: tuple[int, ...]):
        with self._lock:
            if shape not in self._compiled:
                model = self._core.read_model(self._onnx, b"")
                model.reshape(list(shape))
                self._compiled[shape] = self._core.compile_model(model, "CPU", self._config)
                if len(self._compiled) > OPENVINO_SHAPES:
                    self._compiled.popitem(last=False)
            self._compiled.move_to_end(shape)
            return self._compiled[shape]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        request = self._compiled_for(x.shape).create_infer_request()  # one per call: thread-safe
        request.infer({0: x})
        return request.get_output_tensor(0).data.copy()


def _int8_runner(net: nn.Module, min_psnr: float | None) -> Runner:
    """The U-Net in int8 under ONNX Runtime, the guided filter in float32 (``net.finish``);
    refused below ``min_psnr`` dB from float32 (``None``: timing runs, any precision)."""
    from .onnx_export import onnx_session
    from .quantize import quantized_unet

    session = onnx_session(quantized_unet(net, min_psnr).onnx)

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net.finish(torch.from_numpy(x), torch.from_numpy(session.run(None, {"image": x})[0])).numpy()

    return _padded(run, net.size_multiple)


def make_runner(net: nn.Module, backend: str, device: torch.device) -> Runner:
    """A callable running the sub-network ``net`` with ``backend`` on ``device``; ``net`` itself
    is not modified.

    The PyTorch backends run a channels-last copy (faster for these convolutions on CPU and GPU;
    a copy because channels-last parameters cannot be saved as safetensors).
    """
    if backend in ("torch", "torch-bf16"):
        dtype = torch.bfloat16 if backend == "torch-bf16" else torch.float32
        return copy.deepcopy(net).to(device=device, dtype=dtype, memory_format=torch.channels_last)
    if backend == "onnx-int8":
        from .quantize import MIN_INT8_PSNR

        return _int8_runner(net, MIN_INT8_PSNR)
    if backend in ("onnx", "openvino"):
        from .onnx_export import onnx_bytes, onnx_session
        from .onnx_layout import without_transpose_round_trips

        if backend == "openvino":
            graph = without_transpose_round_trips(onnx_bytes(with_winograd_convolutions(net)))
            return _padded(OpenVINOGraph(graph), net.size_multiple)
        session = onnx_session(onnx_bytes(net))
        return _padded(lambda x: session.run(None, {"image": x})[0], net.size_multiple)
    raise InvalidArgumentError(f"unknown backend {backend!r}; choose auto, {', '.join(BACKENDS)}")


class Runners(dict):
    """Runners for a style's sub-networks by name, each made on first use (an ONNX export or a
    bfloat16 copy costs time and memory, and a style may never use its face network).

    Args:
        nets: the sub-networks by name (:meth:`StyleNetwork.subnetworks`).
        backend, device: as :func:`make_runner`.
        fallback: the backend to switch to (for every sub-network) when ``backend`` refuses a
            network as too imprecise (int8 picked by ``auto``); ``None``: raise instead.
    """

    def __init__(self, nets: dict[str, nn.Module], backend: str, device: torch.device,
                 fallback: str | None = None) -> None:
        super().__init__()
        self.nets, self.backend, self.device, self.fallback = nets, backend, device, fallback

    def __missing__(self, name: str) -> Runner:
        try:
            runner = make_runner(self.nets[name], self.backend, self.device)
        except QuantizationError as exc:
            if self.fallback is None:
                raise
            logger.warning("%s: running this style on %s instead", exc, self.fallback)
            self.backend, self.fallback = self.fallback, None
            self.clear()
            runner = make_runner(self.nets[name], self.backend, self.device)
        self[name] = runner
        return runner
