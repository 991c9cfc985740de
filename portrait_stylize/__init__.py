"""portrait-stylize: turn portrait photos into artworks, whole or region by region.

>>> ps.load_style("toon")("photo.jpg", regions=["hair", "lips"])   # doctest: +SKIP

>>> import portrait_stylize as ps
>>> [s.name for s in ps.list_styles()]          # doctest: +SKIP
['toon', 'sketch']
>>> ps.load_style("toon")("photo.jpg").save("toon.png")   # doctest: +SKIP
>>> ps.load_style("toon")("photo.jpg", regions=["hair", "lips"])   # doctest: +SKIP
"""

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
from .faces import REGIONS, Face, detect_faces, parse_faces
from .io import load_image
from .pipeline import Stylizer, StylizeDetails, list_styles, load_style, stylize
from .registry import StyleSpec
from .version import __version__

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
