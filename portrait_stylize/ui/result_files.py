"""Where results wait to be downloaded: one temporary folder per process, a sub-folder per
result (so the download keeps a readable file name), the oldest deleted as new ones arrive."""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path


@functools.lru_cache(maxsize=1)
def _results_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="portrait-stylize-results-"))


def _age(folder: Path) -> float | None:
    """``folder``'s modification time, or ``None`` when it is gone or not a folder: another request
    may prune it between the listing and this look."""
    try:
        info = folder.stat()
    except OSError:
        return None
    return info.st_mtime if folder.is_dir() else None


def result_path(name: str, keep: int | None = None) -> Path:
    """A fresh path ``<results folder>/<new sub-folder>/<name>`` for one result. With ``keep``,
    older results are deleted first so that, counting this one, only the newest ``keep`` remain
    (bounded disk use); ``None`` keeps them all. Safe while other requests prune the same folder,
    and after a cleaner removed the folder itself (it is made again)."""
    root = _results_dir()
    root.mkdir(parents=True, exist_ok=True)
    if keep is not None:
        aged = [(age, folder) for folder in root.iterdir() if (age := _age(folder)) is not None]
        for _, old in sorted(aged)[:max(0, len(aged) - keep + 1)]:
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=root)) / name
