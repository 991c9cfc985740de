"""``auto``'s ranking of the CPU backends: measured once per machine and network architecture, on
that architecture (with random weights: speed does not depend on them) at the side it runs at, in
interleaved rounds, and remembered in ``$HF_HOME/portrait-stylize/backend-choice.json``, keyed by
what the measurement depends on; a ranking measured while other processes kept the CPU busy is not
remembered, and that process measures again after :data:`PROVISIONAL_SECONDS`
(``portrait-stylize backends`` shows the ranking, ``--measure`` measures again)."""

from __future__ import annotations

import contextlib
import copy
import importlib.metadata
import json
import logging
import math
import os
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..common.data_home import data_home
from ..common.files import write_atomically
from ..models.ttn import TTN
from ..options import INT8_BACKENDS
from . import cpu
from .onnx_export import GRAPH_VERSION
from .runners import int8_runner, make_runner

logger = logging.getLogger(__name__)

#: Largest side of the square test image ``auto`` times the backends on (a style's tile size when
#: smaller; 512 is the default tile, so most pictures run at it), and timed rounds: each round runs
#: every backend once, in a rotated order, after one warm-up run each; the fastest run counts.
#: Interleaving spreads a passing burst of other work over all backends instead of one.
PROBE_SIDE, _PROBE_ROUNDS = 512, 4
#: A measurement during which other processes used more than this share of the CPU is not
#: remembered (a busy machine ranked openvino first where torch-bf16 is 2.6x faster when quiet).
BUSY_SHARE = 0.15


def machine_key(threads: int, candidates: tuple[str, ...]) -> str:
    """What a measured choice depends on: CPU, its vector units (and any cap on them), threads,
    candidates, runtime versions and how our graphs are made (:data:`.onnx_export.GRAPH_VERSION`)."""
    versions = []
    for package in ("torch", "onnxruntime", "openvino"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions.append(f"{package}={importlib.metadata.version(package)}")
    # A cap on oneDNN's instruction set changes what the same CPU runs at.
    isa_cap = f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', '')}"
    return " | ".join([cpu.cpu_description(), isa_cap, f"threads={threads}", ",".join(candidates), *versions,
                       f"graphs={GRAPH_VERSION}"])


def network_key(net: nn.Module | None, side: int) -> str:
    """What a ranking depends on besides the machine: the network's class and configuration (the
    default, ``None``: a DCT-Net-shaped TTN, what most styles run) and the side it is timed at."""
    net = TTN() if net is None else net
    return f"{type(net).__name__} {json.dumps(getattr(net, 'config', {}), sort_keys=True)} at {side}x{side}"


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


def measure_backends(candidates: tuple[str, ...], side: int = PROBE_SIDE, rounds: int = _PROBE_ROUNDS,
                     net: nn.Module | None = None) -> dict[str, float]:
    """Fastest of ``rounds`` interleaved timed runs (seconds) of each backend on a copy of ``net``
    (default: a DCT-Net-shaped TTN) with seeded random weights and a ``side``² input, on the
    current thread count; ``inf`` for a backend that cannot run the network (e.g. the int8 ones
    need a U-Net and a guided filter apart)."""
    net = (TTN() if net is None else copy.deepcopy(net)).float().cpu().eval()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        for parameter in net.parameters():
            parameter.data.normal_(0.0, 0.05)
        x = torch.rand(1, 3, side, side) * 2 - 1
    seconds: dict[str, float] = {}
    runners = {}
    with torch.inference_mode():
        for backend in candidates:
            try:
                # Random weights say nothing about int8 precision: int8 is timed without the floors.
                runner = (int8_runner(net, backend, checked=False) if backend in INT8_BACKENDS
                          else make_runner(net, backend, torch.device("cpu")))
                runner(x)  # warm-up: exported, compiled, caches filled
            except Exception as exc:  # any failure only rules this backend out for this network
                logger.info("%s cannot run %s: %s", backend, type(net).__name__, exc)
                seconds[backend] = math.inf
                continue
            runners[backend] = runner
        ran = tuple(b for b in candidates if b in runners)
        for round_ in range(rounds):
            for backend in ran[round_ % len(ran):] + ran[:round_ % len(ran)]:
                start = time.perf_counter()
                runners[backend](x)
                seconds[backend] = min(seconds.get(backend, math.inf), time.perf_counter() - start)
    return {b: seconds[b] for b in candidates}


def remembered_ranking(candidates: tuple[str, ...], threads: int, net: nn.Module | None = None,
                       side: int = PROBE_SIDE) -> dict | None:
    """The remembered entry for ``candidates`` at ``threads`` threads on this machine, for ``net``'s
    architecture at ``side`` (see :func:`measure_ranking`), or ``None``."""
    entry = _remembered().get(f"{machine_key(threads, candidates)} | {network_key(net, side)}")
    if isinstance(entry, dict) and sorted(entry.get("ranking") or []) == sorted(candidates) \
            and isinstance(entry.get("seconds"), dict):
        return entry
    return None


def measure_ranking(candidates: tuple[str, ...], threads: int, net: nn.Module | None = None,
                    side: int = PROBE_SIDE) -> dict:
    """Measure ``candidates`` on ``net``'s architecture at ``side`` now (:func:`measure_backends`)
    and, when the machine was quiet meanwhile, remember the ranking for :func:`ranked_cpu_backends`.

    Returns:
        the entry: ``ranking`` (fastest first), ``seconds`` per backend, ``measured`` (local time),
        ``others_share`` (the CPU share other processes used meanwhile; ``None``: unknown) and
        ``remembered``.
    """
    with cpu.others_share() as share:
        seconds = measure_backends(candidates, side, net=net)
    busy = share() is not None and share() > BUSY_SHARE
    entry = {"ranking": sorted(seconds, key=seconds.get),
             "seconds": {b: round(t, 4) if math.isfinite(t) else None for b, t in seconds.items()},
             "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
             "others_share": None if share() is None else round(share(), 3), "remembered": not busy}
    if busy:
        logger.warning("other processes used %.0f%% of the CPU while the backends were timed: this ranking (%s) "
                       "is not remembered; styles loaded in the next %d minutes use it, later ones measure again",
                       100 * share(), ", ".join(entry["ranking"]), PROVISIONAL_SECONDS // 60)
    else:
        _remember(f"{machine_key(threads, candidates)} | {network_key(net, side)}",
                  {k: v for k, v in entry.items() if k != "remembered"})
    return entry


#: How long a process keeps using a ranking measured on a busy machine before measuring again
#: (measuring takes seconds: a busy server loading many styles should not pay it at every load).
PROVISIONAL_SECONDS = 600
#: Rankings this process settled on, by (candidates, threads, network key), with when they expire: read
#: from the file or measured on a quiet machine (never), or measured on a busy one (PROVISIONAL_SECONDS on).
_SETTLED: dict[tuple[tuple[str, ...], int, str], tuple[dict, float]] = {}
#: One measurement at a time: two at once would slow each other down.
_MEASURING = threading.Lock()


def forget() -> None:
    """Forget the rankings this process settled on (the file stays): the next load reads or measures anew."""
    _SETTLED.clear()


def _settled_entry(candidates: tuple[str, ...], threads: int, net: nn.Module | None, side: int) -> dict:
    key = (candidates, threads, network_key(net, side))
    with _MEASURING:
        entry, expires = _SETTLED.get(key, ({}, 0.0))
        if entry and time.monotonic() < expires:
            return entry
        remembered = remembered_ranking(candidates, threads, net, side)
        if remembered is not None:
            _SETTLED[key] = remembered, math.inf
            return remembered
        logger.info("measuring which backend is fastest on this machine for this network (once): %s",
                    ", ".join(candidates))
        entry = measure_ranking(candidates, threads, net, side)
        logger.info("fastest backend here: %s (%s)", entry["ranking"][0],
                    ", ".join(f"{b} {t * 1000:.0f} ms" for b, t in entry["seconds"].items() if t is not None))
        _SETTLED[key] = entry, math.inf if entry["remembered"] else time.monotonic() + PROVISIONAL_SECONDS
        return entry


def ranked_cpu_backends(candidates: tuple[str, ...], threads: int, net: nn.Module | None = None,
                        side: int = PROBE_SIDE) -> tuple[str, ...]:
    """``candidates``, fastest first here at ``threads`` threads for ``net``'s architecture (default:
    a DCT-Net-shaped TTN) at ``side``: remembered, or measured (:func:`measure_ranking`; kept only
    when measured on a quiet machine)."""
    if len(candidates) == 1:
        return candidates
    return tuple(_settled_entry(candidates, threads, net, side)["ranking"])


def forget_ranking(candidates: tuple[str, ...], threads: int, net: nn.Module | None, side: int) -> None:
    """Drop the ranking for these from this process and from the file: the next load measures anew."""
    with _MEASURING:
        _SETTLED.pop((candidates, threads, network_key(net, side)), None)
        key = f"{machine_key(threads, candidates)} | {network_key(net, side)}"
        remembered = _remembered()
        if remembered.pop(key, None) is not None:
            text = json.dumps(remembered, indent=1)
            try:
                write_atomically(choice_file(), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
            except OSError as exc:
                logger.info("could not update %s: %s", choice_file(), exc)


#: Real calls of ``auto``'s choice that :class:`CallCheck` times (not the first at each input shape,
#: which compiles and warms caches), and how much slower per pixel than the runner-up's measurement
#: their median may be before the ranking counts as contradicted.
CHECKED_CALLS, CONTRADICTION = 5, 1.5


class CallCheck:
    """Checks ``auto``'s ranking for a network against its first real calls: when the chosen
    backend's median time per pixel over :data:`CHECKED_CALLS` calls (at shapes it ran before)
    is :data:`CONTRADICTION` times the runner-up's measured time per pixel or more, while other
    processes left the CPU quiet (:data:`BUSY_SHARE`), the ranking is forgotten (:func:`forget_ranking`) with a warning,
    and the next load measures again. Thread-safe; after its calls it only passes calls through."""

    def __init__(self, candidates: tuple[str, ...], threads: int, net: nn.Module | None, side: int) -> None:
        entry = _settled_entry(candidates, threads, net, side)
        self.backend, runner_up = entry["ranking"][:2]
        seconds = entry["seconds"][runner_up]
        self._bound = math.inf if seconds is None else CONTRADICTION * seconds / side**2
        self._forget = (candidates, threads, net, side)
        self._per_pixel: list[float] = []
        self._shapes: set[tuple[int, ...]] = set()
        self._start: tuple | None = None
        self._lock = threading.Lock()

    def timed(self, runner: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        """``runner`` (the chosen backend's, for the checked network), its calls timed."""

        def run(x: torch.Tensor) -> torch.Tensor:
            if len(self._per_pixel) >= CHECKED_CALLS:
                return runner(x)
            start = time.perf_counter()
            out = runner(x)
            self._observe(tuple(x.shape), (time.perf_counter() - start) / (x.shape[0] * x.shape[-2] * x.shape[-1]))
            return out

        run.runner = runner  # what runs underneath, for callers that look
        return run

    def _observe(self, shape: tuple[int, ...], per_pixel: float) -> None:
        with self._lock:
            if shape not in self._shapes:  # the first call at a shape compiles (OpenVINO): not counted
                self._shapes.add(shape)
                return
            if self._start is None:
                self._start = cpu.cpu_snapshot()
            if len(self._per_pixel) >= CHECKED_CALLS:
                return
            self._per_pixel.append(per_pixel)
            if len(self._per_pixel) < CHECKED_CALLS:
                return
            share = cpu.others_share_since(self._start)
            median = statistics.median(self._per_pixel)
        if median >= self._bound and (share is None or share <= BUSY_SHARE):
            logger.warning("%s took %.2g s per megapixel in real calls, more than %.1f times what the runner-up "
                           "measured: the backend ranking is forgotten and the next load measures again",
                           self.backend, median * 1e6, CONTRADICTION)
            forget_ranking(*self._forget)
