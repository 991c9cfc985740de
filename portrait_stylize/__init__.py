"""portrait-stylize: turn portrait photos into artworks, whole or region by region.

>>> import portrait_stylize as ps
>>> [s.name for s in ps.list_styles("t*")]          # doctest: +SKIP
['toon']
>>> ps.load_style("toon")("photo.jpg").save("toon.png")   # doctest: +SKIP
>>> ps.load_style("toon")("photo.jpg", regions=["hair", "lips"])   # doctest: +SKIP

The package is layered, one subpackage per role (docs/development.md has the map):
``common`` and ``imaging`` at the bottom, then ``models``, ``faces``, ``runtime`` and ``convert``,
``sources``; the use cases ``loading``, ``pipeline``, ``video``, ``batch`` and ``evaluation``; the
front ends ``cli`` and ``ui`` on top. Every error a user can cause is a
:class:`PortraitStylizeError` (``errors``).
"""

from .common.allocator import bound_kernel_cache, keep_freed_memory
from .errors import (
    ChecksumMismatchError,
    ImageTooLargeError,
    InvalidArgumentError,
    InvalidImageError,
    InvalidStyleError,
    PortraitStylizeError,
    RegistryError,
    StyleDownloadError,
    StyleNotCachedError,
    StyleNotFoundError,
    UnsafeWeightsError,
)
from .sources.registry import StyleSpec
from .version import __version__

# Before any network runs: freed activations are kept for the next pass, compiled kernels bounded
# (see common/allocator.py).
keep_freed_memory()
bound_kernel_cache()

#: Public names that need torch or MediaPipe, imported on first use (PEP 562), so that
#: ``portrait-stylize --help`` and other light commands start at once.
_LAZY = {"REGIONS": "faces", "Face": "faces", "detect_faces": "faces", "parse_faces": "faces",
         "load_image": "imaging.io", "Stylizer": "pipeline", "StylizeDetails": "pipeline", "list_styles": "loading",
         "load_style": "pipeline", "stylize": "pipeline"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

__all__ = [
    "__version__",
    "list_styles",
    "load_style",
    "stylize",
    "Stylizer",
    "StylizeDetails",
    "StyleSpec",
    "detect_faces",
    "parse_faces",
    "Face",
    "REGIONS",
    "load_image",
    "PortraitStylizeError",
    "InvalidArgumentError",
    "InvalidImageError",
    "ImageTooLargeError",
    "RegistryError",
    "StyleNotFoundError",
    "StyleNotCachedError",
    "StyleDownloadError",
    "ChecksumMismatchError",
    "UnsafeWeightsError",
    "InvalidStyleError",
]
