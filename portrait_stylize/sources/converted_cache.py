"""Styles converted on first use from their publishers' files, cached as style folders.

A ``modelscope``, ``url`` or ``github`` style (see :mod:`portrait_stylize.sources.registry`) is
downloaded, verified, converted (:func:`portrait_stylize.convert.ttn_releases.convert`, or
:func:`portrait_stylize.convert.checkpoints.convert_checkpoint` for a PyTorch checkpoint) and kept under
``$HF_HOME/portrait-stylize/converted/KIND/ID/REVISION/`` (``$HF_HOME`` defaults to
``~/.cache/huggingface``, the home of the Hub cache), next to a ``provenance.json``: source, model
id, revision, every file's sha256 and the converter version. Later uses read that folder and need
no network.

Building is atomic and exclusive: files are downloaded and converted in a temporary folder inside
the cache, which is renamed into place only when everything checked out, under a file lock, so a
failure leaves nothing behind that a later call would trust and two processes never write the same
style at once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from filelock import FileLock

from ..common.data_home import data_home
from ..common.style_files import CONFIG_NAME, WEIGHTS_NAME

#: Bumped whenever the converter would write a different style from the same files.
CONVERTER_VERSION = 1
PROVENANCE_NAME = "provenance.json"
ENV_CACHE = "PORTRAIT_STYLIZE_CACHE"


@dataclass
class Provenance:
    """Where a converted style came from (``provenance.json``).

    Attributes:
        kind: the registry kind (``modelscope``, ``url``, ``github``).
        source: the model id, URL, or ``owner/name/path`` of a GitHub file.
        revision: the tag, the URL file's sha256 (first 16 digits), or the commit.
        files: file name -> sha256 of every downloaded file (a GitHub file's git blob id too,
            under ``"NAME (git blob)"``).
        converter_version: :data:`CONVERTER_VERSION` at conversion time.
    """

    kind: str
    source: str
    revision: str
    files: dict[str, str] = field(default_factory=dict)
    converter_version: int = CONVERTER_VERSION


def cache_root() -> Path:
    """``$PORTRAIT_STYLIZE_CACHE``, else ``$HF_HOME/portrait-stylize/converted`` (read at every call)."""
    raw = os.environ.get(ENV_CACHE) or str(data_home() / "converted")
    return Path(os.path.expandvars(os.path.expanduser(raw)))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "--", text).strip("-.") or "style"


def style_folder(kind: str, source: str, revision: str) -> Path:
    """The cache folder of one converted style."""
    return cache_root() / kind / _slug(source) / _slug(revision)


def read_provenance(folder: Path) -> Provenance | None:
    """The provenance of a complete converted style in ``folder``, or ``None``."""
    try:
        data = json.loads((folder / PROVENANCE_NAME).read_text(encoding="utf-8"))
        provenance = Provenance(**data)
    except (OSError, ValueError, TypeError):
        return None
    complete = (folder / CONFIG_NAME).is_file() and (folder / WEIGHTS_NAME).is_file()
    return provenance if complete and provenance.converter_version == CONVERTER_VERSION else None


def _matches(folder: Path, expected: dict[str, str]) -> bool:
    provenance = read_provenance(folder)
    return provenance is not None and all(provenance.files.get(k) == v for k, v in expected.items())


def find_cached(kind: str, source: str, revision: str | None, expected: dict[str, str]) -> Path | None:
    """A cached conversion of ``source`` at ``revision`` (``None``: the newest cached one) whose
    files have the ``expected`` sha256 values (name -> hex; unnamed files are not checked)."""
    if revision is not None:
        folders = [style_folder(kind, source, revision)]
    else:
        parent = cache_root() / kind / _slug(source)
        folders = sorted((p for p in parent.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime,
                         reverse=True) if parent.is_dir() else []
    return next((folder for folder in folders if _matches(folder, expected)), None)


def build(folder: Path, expected: dict[str, str], make: Callable[[Path], Provenance]) -> Path:
    """Create the converted style ``folder`` with ``make(work)``, which downloads into and converts
    inside the empty folder ``work``, leaves the style in ``work / "style"`` and returns its
    provenance; exclusive (file lock) and atomic.

    If another process finished the same folder (with the ``expected`` file hashes) while this one
    waited for the lock, that result is kept.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder.parent / f".{folder.name}.lock")):
        if _matches(folder, expected):
            return folder
        work = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.tmp-"))
        try:
            provenance = make(work)
            style = work / "style"
            (style / PROVENANCE_NAME).write_text(json.dumps(asdict(provenance), indent=2) + "\n", encoding="utf-8")
            shutil.rmtree(folder, ignore_errors=True)  # an incomplete or outdated folder
            os.replace(style, folder)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return folder
