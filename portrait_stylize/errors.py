"""Exceptions raised by portrait-stylize: the one error contract.

Every error a user can cause (a bad file, a bad argument, an unknown style name, a download that
is impossible offline) derives from :class:`PortraitStylizeError`, so callers (the CLI, the web
app, your program) catch one type and show its message, which says what went wrong, with which
file or name, and what to do about it. Anything else escaping the library is a bug.

Each class says how the ``portrait-stylize`` command ends when it stops a run
(:attr:`PortraitStylizeError.exit_code`): 2 = the command line or its arguments are wrong,
1 = the run failed (download, unreadable input, broken style, no space ...).
"""

from __future__ import annotations

#: ``portrait-stylize`` exit codes.
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class PortraitStylizeError(Exception):
    """Base class of every error raised on purpose by portrait-stylize."""

    #: How ``portrait-stylize`` exits when this error stops it.
    exit_code: int = EXIT_FAILED


# --- the request is wrong (exit 2) ----------------------------------------------------------------


class InvalidArgumentError(PortraitStylizeError, ValueError):
    """An option has a value it cannot take (a strength of 1.5, an unknown region, a face index
    that is not in the picture, a device this machine lacks); the message names the option and
    what it accepts."""

    exit_code = EXIT_USAGE


class StyleNotFoundError(PortraitStylizeError, KeyError):
    """The style name is neither registered, a local style folder, nor an ``org/repo`` id."""

    exit_code = EXIT_USAGE

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


# --- an input is unusable (exit 1) ----------------------------------------------------------------


class InvalidImageError(PortraitStylizeError, ValueError):
    """The input is not a readable image (missing, empty, truncated, not an image)."""


class ImageTooLargeError(InvalidImageError):
    """The image has more pixels than the configured limit (decompression-bomb guard)."""


class RegistryError(PortraitStylizeError, ValueError):
    """``checkpoints.json`` (or another registry file) is malformed."""


class InvalidStyleError(PortraitStylizeError, ValueError):
    """A style folder is incomplete or its ``config.json`` cannot build a model."""


class UnsafeWeightsError(PortraitStylizeError):
    """Weights are not in safetensors format (pickle-based files are never loaded)."""


class ConversionError(PortraitStylizeError, ValueError):
    """The source does not have the structure of a DCT-Net/White-box TTN, or cannot be read."""


# --- fetching failed (exit 1) ---------------------------------------------------------------------


class StyleNotCachedError(PortraitStylizeError):
    """The style's weights are not in the local cache and downloading is not possible (offline)."""


class StyleDownloadError(PortraitStylizeError):
    """The Hub answered, but the repository, revision or file does not exist or is not accessible."""


class ChecksumMismatchError(PortraitStylizeError):
    """A downloaded file's sha256 differs from the one recorded in the registry."""


class MetricWeightsError(PortraitStylizeError):
    """A metric network's weights cannot be fetched, verified or converted."""


class HubUploadError(PortraitStylizeError):
    """Creating a Hub repository or uploading a style to it failed."""


# --- this machine cannot do it (exit 1) -----------------------------------------------------------


class MissingDependencyError(PortraitStylizeError, ImportError):
    """An optional package that a feature needs is not installed (the message names the extra)."""


class ExportError(PortraitStylizeError, RuntimeError):
    """The ONNX export failed or does not reproduce PyTorch."""


class QuantizationError(PortraitStylizeError, RuntimeError):
    """The int8 network is too far from float32 (or could not be made)."""
