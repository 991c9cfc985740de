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


def result_path(name: str, keep: int | None = None) -> Path:
    """A fresh path ``<results folder>/<new sub-folder>/<name>`` for one result. With ``keep``,
    older results are deleted first so that, counting this one, only the newest ``keep`` remain
    (bounded disk use); ``None`` keeps them all."""
    root = _results_dir()
    if keep is not None:
        folders = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
        for old in folders[:max(0, len(folders) - keep + 1)]:
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=root)) / name
