"""The style the demo shows first.

Where the internet is reachable (a Space), the demo opens on a learned style, fetched and
converted in a background thread from start-up so that the visitor's first click does not wait
for the download; offline, for a style that is not registered, or once its fetch has failed, on
the registry's default (a built-in, ready at once). Which learned style is the host's decision
(``space_policy.FIRST_STYLE``), passed in.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ..common.offline import is_offline
from ..errors import PortraitStylizeError
from ..loading import list_styles
from ..pipeline import cached_stylizer
from .catalogue import default_style
from .errors import user_message

logger = logging.getLogger(__name__)


class FirstStyle:
    """Call it for the style to show now: ``preferred`` unless it cannot be had, else the
    registry's default. Made once per process (it starts the background fetch).

    Args:
        preferred: a registered style name, or ``None`` for the default.
        load: loads a style by name (default: the demo's stylizer cache, so the click that follows
            finds it loaded).
    """

    def __init__(self, preferred: str | None, load: Callable[[str], object] = cached_stylizer) -> None:
        self.preferred = preferred
        self.fallback = default_style()
        #: Why ``preferred`` is not shown (``None`` while it is, or may still be, available).
        self.failure: str | None = None
        self._load = load
        self._done = threading.Event()
        spec = next((s for s in list_styles() if s.name == preferred), None) if preferred else None
        if preferred is None or preferred == self.fallback:
            self.failure = "no other first style was chosen"
        elif spec is None:
            self.failure = f"{preferred!r} is not a registered style"
        elif not spec.available_offline and is_offline():
            self.failure = f"{preferred!r} is not on this machine and offline mode is on"
        if self.failure is not None:
            self._done.set()
            return
        threading.Thread(target=self._fetch, name=f"fetch style {preferred}", daemon=True).start()

    def _fetch(self) -> None:
        try:
            self._load(self.preferred)
        except PortraitStylizeError as exc:
            self.failure = user_message(exc)
        except Exception as exc:  # a background warm-up must never take the demo down
            logger.exception("loading the first style %r failed", self.preferred)
            self.failure = f"{type(exc).__name__}: {exc}"
        finally:
            if self.failure is not None:
                logger.warning("the demo opens on %r instead of %r: %s", self.fallback, self.preferred, self.failure)
            self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the background fetch has ended (or ``timeout`` seconds); whether it has."""
        return self._done.wait(timeout)

    def __call__(self) -> str:
        return self.fallback if self.failure is not None else self.preferred
