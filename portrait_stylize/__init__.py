"""portrait-stylize: turn portrait photos into artworks, whole or region by region.

>>> import portrait_stylize as ps
>>> [s.name for s in ps.list_styles()]          # doctest: +SKIP
['toon', 'sketch']
>>> ps.load_style("toon")("photo.jpg").save("toon.png")   # doctest: +SKIP
"""

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    ChecksumMismatchError,
    ImageTooLargeError,
    InvalidImageError,
    InvalidStyleError,
    PortraitStylizeError,
    RegistryError,
    StyleDownloadError,
    StyleNotCachedError,
    StyleNotFoundError,
    UnsafeWeightsError,
)
from .io import load_image  # noqa: E402
from .pipeline import Stylizer, list_styles, load_style, stylize  # noqa: E402
from .registry import StyleSpec  # noqa: E402

__all__ = [
    "__version__",
    "list_styles",
    "load_style",
    "stylize",
    "Stylizer",
    "StyleSpec",
    "load_image",
    "PortraitStylizeError",
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
