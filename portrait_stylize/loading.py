"""From a style name to a loaded network: resolve, then load, through one function per source kind.

``resolve_spec(name)`` turns what a user typed into a :class:`~portrait_stylize.registry.StyleSpec`:
a registry name, a local style folder (kind ``local``) or a Hub repo id ``org/name[@revision]``
(kind ``hub`` without a sha256). :func:`load_network` then loads it with the :class:`Source` of its
kind. Adding a source is one :class:`Source` in :data:`SOURCES` plus its keys in ``StyleSpec``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import StyleNotFoundError
from .hub import fetch_spec, is_cached
from .models import StyleNetwork, build_network
from .models.serialization import WEIGHTS_NAME, load_style_files, load_style_folder
from .registry import StyleSpec, load_registry, parse_hub_id

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """How styles of one kind are loaded, and whether that works offline right now."""

    load: Callable[[StyleSpec], StyleNetwork]
    available_offline: Callable[[StyleSpec], bool]


def _load_builtin(spec: StyleSpec) -> StyleNetwork:
    return build_network({"arch": "builtin", "builtin": spec.builtin, "params": spec.params, "name": spec.name,
                          "description": spec.description, "licence": spec.licence, "source": spec.source},
                         f"built-in style {spec.name!r}")


def _load_hub(spec: StyleSpec) -> StyleNetwork:
    return load_style_files(*fetch_spec(spec))


def _load_local(spec: StyleSpec) -> StyleNetwork:
    if not Path(spec.path).is_dir():
        raise StyleNotFoundError(f"style {spec.name!r}: the style folder {spec.path} does not exist")
    return load_style_folder(spec.path)


#: kind -> its :class:`Source`; the keys are :data:`portrait_stylize.registry.KINDS`.
SOURCES: dict[str, Source] = {
    "builtin": Source(_load_builtin, lambda spec: True),
    "hub": Source(_load_hub, is_cached),
    "local": Source(_load_local, lambda spec: Path(spec.path).is_dir()),
}


def resolve_spec(name: str | os.PathLike | None = None) -> StyleSpec:
    """What ``name`` refers to: a registry entry (wins over a folder of the same name), a local
    style folder, or a Hub repo id; ``None`` is the registry's default style.

    Raises:
        StyleNotFoundError: none of these (the message lists the registered names).
    """
    registry = load_registry()
    name = registry.default if name is None else str(name)
    spec = registry.get(name)
    if spec is not None:
        return spec
    if Path(name).is_dir():
        return StyleSpec(name="", kind="local", path=str(Path(name).resolve()))
    hub_id = parse_hub_id(name)
    if hub_id is not None and not name.startswith("hf-hub:") and Path(name).parent.is_dir():
        raise StyleNotFoundError(
            f"no style folder {name} (the folder {Path(name).parent} exists here). For the Hub repo of that "
            f"name, write hf-hub:{name}."
        )
    if hub_id is not None:
        return StyleSpec(name=name, kind="hub", repo_id=hub_id[0], revision=hub_id[1],
                         filename=WEIGHTS_NAME)
    raise StyleNotFoundError(
        f"unknown style {name!r}. Known styles: {', '.join(registry.names())}. "
        "You can also pass a local style folder or a Hub repo id 'org/name'."
    )


def load_network(spec: StyleSpec) -> tuple[StyleNetwork, StyleSpec]:
    """Load ``spec`` with its kind's source. Returns the network (in eval mode, on the CPU) and the
    spec completed from the network's own provenance (name, description, licence, source) where
    the spec leaves them empty, as for an unregistered folder (named after its ``config.json``,
    else the folder) or Hub id."""
    network = SOURCES[spec.kind].load(spec).eval()
    meta = {**network.meta, "name": network.meta["name"] or (Path(spec.path).name if spec.path else "")}
    filled = {key: meta[key] for key in ("name", "description", "licence", "source") if not getattr(spec, key)}
    spec = dataclasses.replace(spec, available_offline=True, **filled)
    logger.info("loaded style %r (%s, arch %s)", spec.name, spec.kind, network.arch)
    return network, spec


def is_available_offline(spec: StyleSpec) -> bool:
    """Whether ``spec`` can be loaded with no network access (never touches the network)."""
    return SOURCES[spec.kind].available_offline(spec)
