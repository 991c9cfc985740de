"""portrait-stylize: turn portrait photos into artworks, whole or region by region.

>>> ps.load_style("toon")("photo.jpg", regions=["hair", "lips"])   # doctest: +SKIP

>>> import portrait_stylize as ps
>>> [s.name for s in ps.list_styles()]          # doctest: +SKIP
['toon', 'sketch']
>>> ps.load_style("toon")("photo.jpg").save("toon.png")   # doctest: +SKIP
>>> ps.load_style("toon")("photo.jpg", regions=["hair", "lips"])   # doctest: +SKIP
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
from .faces import REGIONS, Face, detect_faces, parse_faces  # noqa: E402
from .io import load_image  # noqa: E402
from .pipeline import Stylizer, StylizeDetails, list_styles, load_style, stylize  # noqa: E402
from .registry import StyleSpec  # noqa: E402

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
