"""PyTorch checkpoints of published architectures -> style folders.

A checkpoint here is a pickled ``state_dict`` (``.pt``/``.pth``). It is read exactly once, with
``torch.load(weights_only=True)`` (tensors and plain containers only, never code), and only after
the caller has checked the file against a pinned hash (:mod:`portrait_stylize.sources.github`);
its tensors are renamed to our modules' names, checked name by name and shape by shape, and saved
as safetensors. Nothing else ever reads the checkpoint again.

Architectures (:data:`READERS`):

* ``animegan2``: animegan2-pytorch's ``Generator`` (its ``block_a`` ... ``block_e`` and
  ``out_layer``) -> :class:`~portrait_stylize.models.animegan.AnimeGANStyle`.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..common.files import sha256_file
from ..errors import ConversionError
from ..models.animegan import AnimeGANStyle
from ..models.base import StyleNetwork
from ..models.serialization import save_style_replacing

#: animegan2-pytorch's block names -> ours.
_ANIMEGAN_BLOCKS = {"block_a": "stem", "block_b": "down", "block_c": "middle", "block_d": "up_half",
                    "block_e": "up_full"}
#: Inside a block: a conv-norm-act's ``1`` (conv) and ``2`` (norm); an inverted residual's layers.
_ANIMEGAN_PARTS = {"1": "conv", "2": "norm", "layers.0.1": "expand.conv", "layers.0.2": "expand.norm",
                   "layers.1.1": "depthwise.conv", "layers.1.2": "depthwise.norm", "layers.2": "project.conv",
                   "layers.3": "project.norm"}
_ANIMEGAN_KEY = re.compile(r"^(block_[a-e])\.(\d+)\.(.+)\.(weight|bias)$")


def animegan_key(key: str) -> str | None:
    """Our :class:`~portrait_stylize.models.animegan.AnimeGANGenerator` name for one of the
    published generator's state-dict keys, or ``None`` for a key it does not have."""
    if key == "out_layer.0.weight":
        return "to_rgb.weight"
    match = _ANIMEGAN_KEY.match(key)
    if not match or match[3] not in _ANIMEGAN_PARTS:
        return None
    return f"{_ANIMEGAN_BLOCKS[match[1]]}.{match[2]}.{_ANIMEGAN_PARTS[match[3]]}.{match[4]}"


def _animegan2(state: dict[str, torch.Tensor], where: str, settings: dict[str, Any]) -> StyleNetwork:
    model = AnimeGANStyle(**settings)
    ours = model.generator.state_dict()
    renamed, unknown = {}, []
    for key, tensor in state.items():
        name = animegan_key(key)
        if name is None or name not in ours:
            unknown.append(key)
        elif tuple(tensor.shape) != tuple(ours[name].shape):
            raise ConversionError(f"{where}: {key} has shape {tuple(tensor.shape)}, the AnimeGANv2 generator's "
                                  f"is {tuple(ours[name].shape)}; not an animegan2-pytorch generator checkpoint")
        else:
            renamed[name] = tensor.float()
    missing = sorted(set(ours) - set(renamed))
    if unknown or missing:
        raise ConversionError(f"{where}: not an animegan2-pytorch generator checkpoint "
                              f"(unexpected: {', '.join(unknown[:5]) or 'none'}; missing: "
                              f"{', '.join(missing[:5]) or 'none'})")
    model.generator.load_state_dict(renamed)
    return model.eval()


#: ``arch`` -> ``(state dict, file name for messages, the style's arguments) -> style``.
READERS: dict[str, Callable[[dict[str, torch.Tensor], str, dict[str, Any]], StyleNetwork]] = {
    "animegan2": _animegan2}


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a PyTorch checkpoint, read with ``torch.load(weights_only=True)``.

    Raises:
        ConversionError: not a checkpoint ``weights_only`` can read, or not a flat dict of tensors.
    """
    try:
        state: Any = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError, OSError) as exc:
        why = str(exc).partition("\n")[0][:200] or "no details"  # torch's messages run to many lines
        raise ConversionError(f"{path.name}: not a PyTorch checkpoint of plain tensors "
                              f"({type(exc).__name__}: {why})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise ConversionError(f"{path.name}: holds a {type(state).__name__}, not a state dict (names -> tensors)")
    return state


def convert_checkpoint(arch: str, path: str | Path, output: str | Path, *, name: str = "", description: str = "",
                       licence: str = "other", source: str = "", command: str | None = None,
                       **options: Any) -> StyleNetwork:
    """Convert the checkpoint ``path`` of architecture ``arch`` (a key of :data:`READERS`) into
    the style folder ``output`` (replaced in one step), with the style's ``options`` (e.g.
    ``face_size`` for ``animegan2``); returns the style.

    The caller verifies ``path`` (its pinned hash) before calling: this is where it is unpickled.

    Raises:
        ConversionError: an unknown ``arch``, or a file that is not such a checkpoint.
    """
    if arch not in READERS:
        raise ConversionError(f"no converter for architecture {arch!r}; known: {', '.join(READERS)}")
    path, output = Path(path), Path(output)
    settings = {"name": name, "description": description, "licence": licence, "source": source, **options}
    model = READERS[arch](read_state_dict(path), path.name, settings)
    card = "\n".join(["", "## Conversion", "",
                      f"Converted from a PyTorch checkpoint (read with `torch.load(weights_only=True)`), "
                      f"its tensors renamed and checked against the {arch} architecture.", "",
                      "```bash", command or f"# convert_checkpoint({arch!r}, {path.name!r})", "```", "",
                      "| input file | sha256 |", "|---|---|", f"| `{path.name}` | `{sha256_file(path)}` |"])
    save_style_replacing(model, output, card + "\n")
    return model
