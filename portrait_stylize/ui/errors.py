"""What the demo's visitor is told when something goes wrong: :class:`UserError` and the library's
messages made readable for someone who never saw the server's temporary upload paths."""

from __future__ import annotations

from ..errors import PortraitStylizeError


class UserError(PortraitStylizeError):
    """Something the user can fix (bad file, bad setting); the message says what and how."""


def user_message(exc: Exception) -> str:
    """The message of ``exc`` without the temporary upload path that starts it (``/tmp/.../x.png: ...``)."""
    text = str(exc)
    head, sep, tail = text.partition(": ")
    return tail if sep and ("/" in head or "\\" in head) else text
