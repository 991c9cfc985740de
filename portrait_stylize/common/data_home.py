"""Where this package keeps what it makes on a machine."""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import constants


def data_home() -> Path:
    """``$HF_HOME/portrait-stylize``: where this package keeps what it makes on a machine
    (conversions, the measured backend choice, int8 networks); read at every call."""
    return Path(os.environ.get("HF_HOME") or constants.HF_HOME) / "portrait-stylize"
