"""Memory back to the system when the demo has nothing to do: the last of the requests running at
once returns the allocator's free memory as it ends (:func:`~portrait_stylize.common.allocator.
release_freed_memory`), so a server's idle size is its working set, not its busiest moment's."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TypeVar

from ..common.allocator import release_freed_memory

_T = TypeVar("_T")
_lock = threading.Lock()
_running = 0


def serving(fn: Callable[..., _T]) -> Callable[..., _T]:
    """``fn`` counted as a running request; when the last one running ends, freed memory goes back."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs) -> _T:
        global _running
        with _lock:
            _running += 1
        try:
            return fn(*args, **kwargs)
        finally:
            with _lock:
                _running -= 1
                idle = _running == 0
            if idle:
                release_freed_memory()

    return wrapper
