"""The offline switch, read by every part that could touch the network (Hub, other downloads,
face-model weights): ``HF_HUB_OFFLINE`` or ``PORTRAIT_STYLIZE_OFFLINE`` set to a true value."""

from __future__ import annotations

import os

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "PORTRAIT_STYLIZE_OFFLINE")


def is_offline() -> bool:
    """``True`` when either of :data:`OFFLINE_VARIABLES` is ``1``/``true``/``yes``/``on`` (read at every call)."""
    return any(os.environ.get(v, "").strip().upper() in ("1", "ON", "YES", "TRUE") for v in OFFLINE_VARIABLES)
