"""Exceptions raised by portrait-stylize.

Every error a user can cause derives from :class:`PortraitStylizeError`, so callers (the CLI,
the web app) can catch one type and show its message, which always says what went wrong,
with which file or name, and what to do about it.
"""

from __future__ import annotations


class PortraitStylizeError(Exception):
    """Base class of every error raised on purpose by portrait-stylize."""


class InvalidArgumentError(PortraitStylizeError, ValueError):
    """An option has a value it cannot take (a strength of 1.5, an unknown region, a face index
    that is not in the picture, a device this machine lacks); the message names the option and
    what it accepts."""


class InvalidImageError(PortraitStylizeError, ValueError):
    """The input is not a readable image (missing, empty, truncated, not an image)."""


class ImageTooLargeError(InvalidImageError):
    """The image has more pixels than the configured limit (decompression-bomb guard)."""


class RegistryError(PortraitStylizeError, ValueError):
    """``checkpoints.json`` (or another registry file) is malformed."""


class StyleNotFoundError(PortraitStylizeError, KeyError):
    """The style name is neither registered, a local style folder, nor an ``org/repo`` id."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


class StyleNotCachedError(PortraitStylizeError):
    """The style's weights are not in the local cache and downloading is not possible (offline)."""


class StyleDownloadError(PortraitStylizeError):
    """The Hub answered, but the repository, revision or file does not exist or is not accessible."""


class ChecksumMismatchError(PortraitStylizeError):
    """A downloaded file's sha256 differs from the one recorded in the registry."""


class UnsafeWeightsError(PortraitStylizeError):
    """Weights are not in safetensors format (pickle-based files are never loaded)."""


class InvalidStyleError(PortraitStylizeError, ValueError):
    """A style folder is incomplete or its ``config.json`` cannot build a model."""


class HubUploadError(PortraitStylizeError):
    """Creating a Hub repository or uploading a style to it failed."""


class MissingDependencyError(PortraitStylizeError, ImportError):
    """An optional package that a feature needs is not installed (the message names the extra)."""
