"""A style on disk: ``config.json`` + ``model.safetensors`` + ``README.md`` (model card).

The one place where styles are written and read. ``config.json`` is
:attr:`StyleNetwork.config <portrait_stylize.models.base.StyleNetwork.config>`, the weights are
the network's ``state_dict`` in safetensors (nothing else is ever loaded: pickle-based files can
run code), and the model card follows the Hugging Face Hub's format so a folder can be published
as it is. Files are written to a temporary name and renamed into place, so a crash never leaves
a half-written style.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from huggingface_hub import ModelCard, ModelCardData
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from ..common.files import write_atomically
from ..common.style_files import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME, check_safetensors
from ..errors import InvalidStyleError
from .base import StyleNetwork, build_network

REPO_URL = "https://github.com/portrait-stylize/portrait-stylize"
TAGS = ["portrait-stylize", "image-to-image", "style-transfer", "dct-net"]

MODEL_CARD = """---
{{ card_data }}
---

# {{ title }}

{{ description }}

A [portrait-stylize]({{ repo_url }}) style stored as `config.json` + `model.safetensors`.

```python
import portrait_stylize as ps
st = ps.load_style("{{ load_name }}")
st("photo.jpg").save("stylized.png")
```

| | |
|---|---|
{{ rows }}
{{ extra }}
"""


def model_card(network: StyleNetwork, load_name: str | None = None, extra: str = "") -> str:
    """The ``README.md`` of a style folder: Hub metadata, how to load it, architecture and provenance."""
    meta = network.meta
    rows = {"architecture": f"{network.arch} ({sum(p.numel() for p in network.parameters()):,} parameters)",
            **network.card_rows(), "channel order": network.channel_order,
            "input range": str(list(network.input_range)), "licence": meta["licence"],
            "source": meta["source"] or "not recorded"}
    data = ModelCardData(library_name="portrait-stylize", license=meta["licence"] or "other", tags=TAGS,
                         pipeline_tag="image-to-image")
    card = ModelCard.from_template(card_data=data, template_str=MODEL_CARD,
                                   title=meta["name"] or "portrait-stylize style", description=meta["description"],
                                   repo_url=REPO_URL, load_name=load_name or meta["name"] or "ORG/REPO",
                                   rows="\n".join(f"| {k} | {v} |" for k, v in rows.items()), extra=extra)
    return str(card)


def save_style(network: StyleNetwork, folder: str | os.PathLike, *, load_name: str | None = None,
               card_extra: str = "") -> Path:
    """Write ``network`` as a style folder (created if needed; other files in it are kept).

    Args:
        load_name: what the model card tells people to pass to ``load_style`` (default: the name).
        card_extra: Markdown appended to the model card (training or conversion details).

    Returns:
        The folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(network.config, indent=2) + "\n"
    write_atomically(folder / CONFIG_NAME, lambda p: Path(p).write_text(text, encoding="utf-8"))
    write_atomically(folder / WEIGHTS_NAME, lambda p: save_model(network, p))
    card = model_card(network, load_name, card_extra)
    write_atomically(folder / CARD_NAME, lambda p: Path(p).write_text(card, encoding="utf-8"))
    return folder


def save_style_replacing(network: StyleNetwork, output: Path, card_extra: str = "") -> None:
    """Write ``network`` as the style folder ``output`` in one step: saved into a temporary folder
    beside it, which then replaces ``output`` (a previous style there is never left half-replaced)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.tmp-"))
    try:
        save_style(network, tmp, card_extra=card_extra, load_name=str(output))
        if output.exists():
            old = output.with_name(f".{output.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            output.rename(old)
            tmp.rename(output)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_style_files(config_path: str | os.PathLike, weights_path: str | os.PathLike,
                     map_location: str = "cpu") -> StyleNetwork:
    """Build the network described by ``config_path`` and load ``weights_path`` into it (strict).

    Raises:
        InvalidStyleError: the config is unreadable or builds nothing, or the weights do not fit it.
        UnsafeWeightsError: the weights are not safetensors.
    """
    config_path, weights_path = Path(config_path), Path(weights_path)
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidStyleError(f"{config_path}: cannot read it as JSON ({exc})") from None
    network = build_network(config, str(config_path))
    check_safetensors(weights_path)
    try:
        load_model(network, str(weights_path), strict=True, device=map_location)
    except SafetensorError as exc:
        raise InvalidStyleError(f"{weights_path}: not a valid safetensors file ({exc}); download or convert it "
                                "again") from None
    except RuntimeError as exc:
        raise InvalidStyleError(f"{weights_path}: weights do not match {config_path.name} ({exc})") from None
    for name, tensor in network.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise InvalidStyleError(f"{weights_path}: tensor {name!r} holds NaN or infinite values; the weights "
                                    "are broken")
    return network.eval()


def load_style_folder(folder: str | os.PathLike, map_location: str = "cpu") -> StyleNetwork:
    """Load a local style folder (``config.json`` + ``model.safetensors``) with clear errors."""
    folder = Path(folder)
    config, weights = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not weights.is_file():
        others = sorted(p.name for p in folder.iterdir() if p.is_file())
        raise InvalidStyleError(
            f"{folder}: no {WEIGHTS_NAME} (found: {', '.join(others) or 'nothing'}). A style folder holds "
            f"{CONFIG_NAME} + {WEIGHTS_NAME}; pickle checkpoints (.bin/.pt/.ckpt) are never loaded."
        )
    if not config.is_file():
        raise InvalidStyleError(f"{folder}: no {CONFIG_NAME}; a style folder holds {CONFIG_NAME} + {WEIGHTS_NAME}")
    return load_style_files(config, weights, map_location)
