"""Files of public GitHub repositories, pinned by commit and verified by their git blob SHA-1.

A ``github`` registry entry names a repository, a commit, a file's path and the git blob SHA-1
that the commit's tree records for the file (``git ls-tree <commit> <path>``). The file is fetched
from GitHub's raw-file host at that commit, ``{raw}/{owner}/{name}/{commit}/{path}`` (``raw``:
``https://raw.githubusercontent.com``, or ``$PORTRAIT_STYLIZE_GITHUB_RAW`` for a mirror or a test
stand-in), and is used only when the blob id of the bytes received equals the pinned one: the
commit's own record of the content, so no hash has to be trusted on first use. Its sha256 is then
recorded with the converted style.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

from ..common.downloads import download
from ..common.files import git_blob_sha1_file
from ..errors import ChecksumMismatchError

DEFAULT_RAW = "https://raw.githubusercontent.com"
ENV_RAW = "PORTRAIT_STYLIZE_GITHUB_RAW"
#: The largest file accepted (its size is only known from the download itself; the AnimeGANv2
#: checkpoints are about 8.6 MB).
MAX_FILE_BYTES = 1 << 30


def raw_base() -> str:
    """The raw-file host (``$PORTRAIT_STYLIZE_GITHUB_RAW`` read at every call)."""
    return os.environ.get(ENV_RAW, "").strip().rstrip("/") or DEFAULT_RAW


def raw_url(repo: str, commit: str, path: str) -> str:
    """Where ``path`` of ``repo`` (``owner/name``) at ``commit`` is downloaded from."""
    return f"{raw_base()}/{repo}/{commit}/{quote(path)}"


def fetch_verified(repo: str, commit: str, path: str, blob_sha1: str, dest: Path, label: str) -> Path:
    """Download ``path`` of ``repo`` at ``commit`` to ``dest`` and check its git blob id.

    Raises:
        ChecksumMismatchError: the bytes are not the blob ``blob_sha1`` (``dest`` is removed).
        StyleNotCachedError, StyleDownloadError: see :func:`portrait_stylize.common.downloads.download`
            (a file over :data:`MAX_FILE_BYTES` too).
    """
    url = raw_url(repo, commit, path)
    download(url, dest, label=label, max_size=MAX_FILE_BYTES)
    actual = git_blob_sha1_file(dest)
    if actual != blob_sha1:
        size = dest.stat().st_size
        dest.unlink()
        raise ChecksumMismatchError(
            f"{label}: {url} gave {size} bytes whose git blob id is {actual}, but commit {commit[:12]} records "
            f"{blob_sha1} for {path}. Nothing was kept; try again, and if it persists the download is being "
            "altered on the way (a proxy?) or the registry entry is wrong.")
    return dest
