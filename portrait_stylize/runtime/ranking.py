"""``auto``'s ranking of the CPU backends: measured once per machine and remembered in
``$HF_HOME/portrait-stylize/backend-choice.json``, keyed by what the measurement depends on."""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import json
import logging
import os
import time
from pathlib import Path

import torch

from ..common.data_home import data_home
from ..common.files import write_atomically
from ..models.ttn import TTN
from . import cpu
from .runners import int8_runner, make_runner

logger = logging.getLogger(__name__)

#: Side of the square test image ``auto`` times the backends on, and runs per backend (the
#: first, a warm-up, is not counted; the fastest of the rest is).
_PROBE_SIDE, _PROBE_RUNS = 384, 4


def machine_key(threads: int, candidates: tuple[str, ...]) -> str:
    """What a measured choice depends on: CPU, its vector units (and any cap on them), threads,
    candidates, runtime versions."""
    versions = []
    for package in ("torch", "onnxruntime", "openvino"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions.append(f"{package}={importlib.metadata.version(package)}")
    # A cap on oneDNN's instruction set changes what the same CPU runs at.
    isa_cap = f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', '')}"
    return " | ".join([cpu.cpu_description(), isa_cap, f"threads={threads}", ",".join(candidates), *versions])


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


def measure_backends(candidates: tuple[str, ...], side: int = _PROBE_SIDE,
                     runs: int = _PROBE_RUNS) -> dict[str, float]:
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
            if backend == "onnx-int8":
                runner = int8_runner(net, None)
            else:
                runner = make_runner(net, backend, torch.device("cpu"))
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                runner(x)
                times.append(time.perf_counter() - start)
            seconds[backend] = min(times[1:])
    return seconds


@functools.cache
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
    logger.info("fastest backend here: %s (%s)", ranking[0],
                ", ".join(f"{b} {t * 1000:.0f} ms" for b, t in seconds.items()))
    return ranking
