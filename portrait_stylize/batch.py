"""Stylize many files: planned once, split across processes, GPUs and machines, resumable.

``portrait-stylize batch`` runs here. Every process reads the same inputs and plans the same
``input -> output`` pairs (:func:`output_paths`), then takes every ``world``-th pair starting at
its ``rank`` (:func:`shard`). Under ``accelerate launch`` (or ``torchrun``) the rank, world size
and device come from the launcher through Accelerate's ``PartialState``; without one, a single
process does everything, so the same command runs on a laptop with no configuration.

Results are written atomically (a temporary file renamed into place), so an output this batch
wrote is complete: a rerun after a crash skips it and redoes only what is missing (``overwrite``
redoes everything). An existing output is checked before it is trusted (the CLI checks that it
decodes to its last pixel): one cut short or emptied by something else (another tool, a full
disk, a copy) is redone and reported.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InvalidArgumentError, PortraitStylizeError
from .options import IMAGE_SUFFIXES

DEFAULT_NAME_PATTERN = "{name}.{style}.png"


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files as given; folders replaced by the images directly inside them (sorted); ``@LIST``
    replaced by the paths in the text file ``LIST`` (one per line; blank lines and lines starting
    with ``#`` ignored; relative paths are relative to the list's folder).

    Raises:
        InvalidArgumentError: a list file that cannot be read.
    """
    files: list[Path] = []
    for item in inputs:
        if item.startswith("@"):
            listing = Path(item[1:])
            try:
                lines = listing.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise InvalidArgumentError(f"{item}: cannot read the file list ({exc})") from None
            files.extend(listing.parent / line.strip() for line in lines if line.strip() and not line.startswith("#"))
            continue
        path = Path(item)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()))
        else:
            files.append(path)
    return files


def output_paths(files: list[Path], out: Path, single_file: bool, style: str, pattern: str) -> list[Path]:
    """One output per input, never an input itself and never two inputs on one output: folder
    outputs are named by ``pattern`` (``a.jpg`` -> ``a.toon.png``); a name that would overwrite an
    input, or repeats another, gets a number (``a_1.toon.png``). Deterministic, so every process
    of a batch plans the same pairs."""
    inputs = {f.resolve() for f in files}
    if single_file:
        if out.resolve() in inputs:
            raise InvalidArgumentError(f"-o {out} is the input image itself; choose another output name "
                                       "(your photo is never overwritten)")
        return [out]
    taken: set[Path] = set()
    paths = []
    for f in files:
        candidate, n = out / pattern.format(name=f.stem, style=style), 1
        while candidate.resolve() in taken | inputs:
            candidate, n = out / pattern.format(name=f"{f.stem}_{n}", style=style), n + 1
        taken.add(candidate.resolve())
        paths.append(candidate)
    return paths


def shard(items: list, rank: int, world: int) -> list:
    """The items process ``rank`` of ``world`` takes: every ``world``-th from ``rank`` (interleaved,
    so a folder sorted by size or date spreads its large files over all processes)."""
    return items[rank::world]


@dataclass(frozen=True)
class Processes:
    """Where this process sits in a launched job (``accelerate launch``, ``torchrun``) or alone."""

    rank: int = 0
    world: int = 1
    local_world: int = 1
    device: str | None = None


def current_processes() -> tuple[Processes, Callable[[], None]]:
    """This process's place and a barrier (waits for every process; a no-op alone).

    Raises:
        InvalidArgumentError: launched with several processes but without Accelerate installed.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Processes(), lambda: None
    try:
        import torch
        from accelerate import PartialState
    except ImportError:
        raise InvalidArgumentError("several processes were launched (WORLD_SIZE > 1), but splitting work needs "
                                   "Accelerate: pip install accelerate") from None
    # Without GPUs, Accelerate joins launched processes only when told to run on the CPU (gloo).
    state = PartialState(cpu=not torch.cuda.is_available())
    local = int(os.environ.get("LOCAL_WORLD_SIZE", state.num_processes))
    device = None if state.device.type == "cpu" else str(state.device)
    return Processes(state.process_index, state.num_processes, local, device), state.wait_for_everyone


@dataclass
class BatchReport:
    """What one process did: written, skipped (already there), failed ``(input, reason)``; ``redone``
    lists the written ones whose earlier result was there but damaged."""

    written: list[Path] = field(default_factory=list)
    existing: list[Path] = field(default_factory=list)
    redone: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0


def run_pairs(stylize: Callable[[Path, Path], Any], pairs: list[tuple[Path, Path]], overwrite: bool = False,
              progress: Callable[[Path, Path, str], None] | None = None,
              complete: Callable[[Path], bool] = lambda path: True) -> BatchReport:
    """Call ``stylize(src, dst)`` for each pair whose ``dst`` does not exist yet, or exists but is
    not ``complete(dst)`` (all of them with ``overwrite``); a failure of one file (its message)
    never stops the others.

    Args:
        stylize: writes the result of ``src`` to ``dst`` (atomically).
        progress: called after each pair with ``(src, dst, outcome)``, outcome ``"written"``,
            ``"redone"`` (a damaged earlier result replaced), ``"existing"`` or the failure's message.
        complete: whether an existing result can be trusted.
    """
    report = BatchReport()
    start = time.perf_counter()
    for src, dst in pairs:
        damaged = dst.exists() and not overwrite and not complete(dst)
        if dst.exists() and not overwrite and not damaged:
            report.existing.append(dst)
            outcome = "existing"
        else:
            try:
                stylize(src, dst)
                report.written.append(dst)
                outcome = "written"
                if damaged:
                    report.redone.append(dst)
                    outcome = "redone"
            except (PortraitStylizeError, ValueError, OSError, RuntimeError) as exc:  # RuntimeError: out of memory
                text = str(exc)
                report.failed.append((src, text if str(src) in text else f"{src}: {text}"))
                outcome = report.failed[-1][1]
        if progress is not None:
            progress(src, dst, outcome)
    report.seconds = time.perf_counter() - start
    return report


if __name__ == "__main__":
    # This module is the library's; the command is the CLI's (which imports this one).
    print("run batches with: portrait-stylize batch IMAGES... -o FOLDER (or python -m portrait_stylize batch ...)",
          file=sys.stderr)
    sys.exit(2)
