"""Style networks: the interface every style offers the pipeline, one class per architecture,
and reading/writing style folders.

Importing this package registers the architectures that ship with portrait-stylize:
``ttn`` (:class:`TTNStyle`), ``animegan2`` (:class:`AnimeGANStyle`), ``u2lffm``
(:class:`ReferenceStyle`) and ``builtin`` (:class:`BuiltinStyle`).

It also holds :class:`~.tflite_graph.TFLiteGraph`, a TFLite graph run in PyTorch (how MediaPipe's
face models run here). Networks only: how they compute, not where they run or come from. May
import: ``errors``, ``options``, :mod:`portrait_stylize.common`, :mod:`portrait_stylize.imaging`.
"""

from .animegan import AnimeGANStyle
from .base import ARCHITECTURES, StyleNetwork, build_network, register_architecture
from .builtin import BuiltinStyle
from .reference_style import ReferenceStyle
from .ttn_style import TTNStyle

__all__ = ["ARCHITECTURES", "AnimeGANStyle", "BuiltinStyle", "ReferenceStyle", "StyleNetwork", "TTNStyle",
           "build_network", "register_architecture"]
