"""The files of a style folder, and the check that weights are safetensors; no torch here, so
listing styles and looking into the cache stay fast."""

from __future__ import annotations

import os
import struct
from pathlib import Path

from ..errors import UnsafeWeightsError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
#: File suffixes of pickle-based checkpoints, which are never loaded.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def check_safetensors(path: str | os.PathLike) -> None:
    """Raise :class:`UnsafeWeightsError` unless ``path`` starts like a safetensors file.

    A safetensors file begins with an 8-byte little-endian header length followed by a JSON
    object; anything else (a pickle, a zip written by ``torch.save``) is refused before loading.
    """
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise UnsafeWeightsError(
            f"{path}: pickle-based checkpoints are never loaded (they can run code); "
            "convert it to safetensors (safetensors.torch.save_file) first"
        )
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(9)
    header_len = struct.unpack("<Q", head[:8])[0] if len(head) == 9 else 0
    if not (0 < header_len <= size - 8 and head[8:9] == b"{"):
        raise UnsafeWeightsError(f"{path}: not a safetensors file (bad header); only safetensors weights are loaded")
