"""Checked numbers: options and configs (which come from untrusted repositories) are validated
here, with a message naming the option."""

from __future__ import annotations

import math
from typing import Any

from ..errors import InvalidArgumentError


def bounded_int(name: str, value: Any, lo: int, hi: int) -> int:
    """``value`` if it is an integer in ``[lo, hi]``, else :class:`InvalidArgumentError` naming ``name``. Configs
    come from untrusted repositories: unbounded sizes would exhaust memory before any check ran."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidArgumentError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def bounded_number(name: str, value: Any, lo: float, hi: float) -> float:
    """``value`` as a float if it is a finite number in ``[lo, hi]``, else :class:`InvalidArgumentError`
    naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not lo <= value <= hi:
        raise InvalidArgumentError(f"{name} must be a finite number in [{lo:g}, {hi:g}], got {value!r}")
    return float(value)
