"""Files written so that a crash never leaves half of one: hashing and atomic writes.

Every file this package writes (results, caches, registries, converted styles) goes through
:func:`write_atomically`: a temporary file next to the target, renamed into place.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def _hash_file(path: str | os.PathLike, digest: hashlib._Hash) -> str:
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    return _hash_file(path, hashlib.sha256())


def git_blob_sha1_file(path: str | os.PathLike) -> str:
    """The git blob id of a file's content: hex SHA-1 of ``b"blob <size>\\0"`` followed by the
    bytes, which is what a commit's tree records for the file."""
    digest = hashlib.sha1(f"blob {os.path.getsize(path)}\0".encode(), usedforsecurity=False)
    return _hash_file(path, digest)


def write_atomically(path: str | os.PathLike, write: Callable[[str], None], *, suffix: str = "",
                     follow_umask: bool = False) -> None:
    """Have ``write(tmp)`` fill a temporary file next to ``path``, then rename it into place, so a
    crash never leaves a half-written ``path`` (the temporary is removed on any failure).

    Args:
        path: the file to write; its folder must exist.
        write: called with the temporary file's path (ending in ``suffix``, for writers that
            choose the format by suffix).
        follow_umask: give the result the permissions any tool's output gets (the process umask)
            rather than the temporary's private 0600: for results a user asked for.
    """
    path = Path(path)
    _remove_stale_temporaries(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMP_PREFIX}{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        if follow_umask:
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


#: Every temporary this package writes starts with this, so a later run can tell its own
#: leftovers (from a killed process) from other files.
TEMP_PREFIX = ".portrait-stylize-tmp."
#: Temporaries older than this were left by a killed run (a live save takes seconds).
STALE_SECONDS = 3600


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (other threads may be
    creating files at this moment)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@functools.lru_cache(maxsize=256)
def _remove_stale_temporaries(folder: Path) -> None:
    """Delete temporaries that a killed run left in ``folder`` (only ours, only old ones); once
    per folder and process, so a batch into a large folder does not rescan it for every image."""
    now = time.time()
    for stale in folder.glob(f"{TEMP_PREFIX}*"):
        try:
            if now - stale.stat().st_mtime > STALE_SECONDS:
                stale.unlink()
        except OSError:
            pass
