"""From a style name to a loaded network: resolve, then load, through one function per source kind.

``resolve_spec(name)`` turns what a user typed into a :class:`~portrait_stylize.sources.registry.StyleSpec`:
a registry name, a local style folder (kind ``local``) or a Hub repo id ``org/name[@revision]``
(kind ``hub`` without a sha256). :func:`load_network` then loads it with the :class:`Source` of its
kind. Adding a source is one :class:`Source` in :data:`SOURCES` plus its keys in ``StyleSpec``.
``modelscope`` and ``url`` styles are released TensorFlow files, ``github`` styles PyTorch
checkpoints pinned by commit and git blob id; all three are downloaded, verified and converted on
first use, then cached (:mod:`portrait_stylize.sources.converted_cache`).

Listing styles and asking what is cached never imports torch: the network code is imported by
the loaders that need it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .common.downloads import download
from .common.files import sha256_file
from .common.offline import is_offline
from .common.style_files import CONFIG_NAME, WEIGHTS_NAME
from .errors import InvalidArgumentError, StyleDownloadError, StyleNotCachedError, StyleNotFoundError
from .sources import converted_cache as converted
from .sources import github, modelscope
from .sources.hub import fetch_spec, is_cached
from .sources.registry import HUB_ID_RULES, Registry, StyleSpec, is_valid_hub_repo_id, load_registry, parse_hub_id

if TYPE_CHECKING:
    from .models import StyleNetwork

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """How styles of one kind are loaded, and whether that works offline right now."""

    load: Callable[[StyleSpec], StyleNetwork]
    available_offline: Callable[[StyleSpec], bool]


def _load_builtin(spec: StyleSpec) -> StyleNetwork:
    from .models import build_network

    return build_network({"arch": "builtin", "builtin": spec.builtin, "params": spec.params, "name": spec.name,
                          "description": spec.description, "licence": spec.licence, "source": spec.source},
                         f"built-in style {spec.name!r}")


def _load_hub(spec: StyleSpec) -> StyleNetwork:
    from .models.serialization import load_style_files

    return load_style_files(*fetch_spec(spec))


#: Said of a folder that holds neither file of a style.
NOT_A_STYLE_FOLDER = (f"is a folder but not a style folder: a style folder holds {CONFIG_NAME} and {WEIGHTS_NAME} "
                      "(as `portrait-stylize convert` and `save_style` write them)")


def _is_style_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a style's files. One of the two is enough: loading then names the
    missing one, which a half-copied style deserves; a folder with neither is something else, and
    what it holds is none of our business."""
    return (folder / CONFIG_NAME).is_file() or (folder / WEIGHTS_NAME).is_file()


def _load_local(spec: StyleSpec) -> StyleNetwork:
    if not Path(spec.path).is_dir():
        raise StyleNotFoundError(f"style {spec.name!r}: the style folder {spec.path} does not exist")
    if not _is_style_folder(Path(spec.path)):
        raise StyleNotFoundError(f"style {spec.name!r}: {spec.path} {NOT_A_STYLE_FOLDER}")
    from .models.serialization import load_style_folder

    return load_style_folder(spec.path)


def _converted_key(spec: StyleSpec) -> tuple[str, str | None, dict[str, str]]:
    """``(source, revision, expected file hashes)`` of a converted-on-first-use style's cache entry."""
    if spec.kind == "url":
        return spec.url, spec.sha256[:16], {Path(spec.url.split("?")[0]).name: spec.sha256}
    if spec.kind == "github":
        return f"{spec.repo_id}/{spec.filename}", spec.revision, {_blob_key(spec.filename): spec.git_blob_sha1}
    return spec.model_id, spec.revision, dict(spec.file_sha256)


def _load_converted(spec: StyleSpec) -> StyleNetwork:
    """``modelscope``, ``url`` and ``github`` styles: the cached conversion, else download, verify, convert
    and cache it (see :mod:`portrait_stylize.sources.converted_cache`)."""
    label = f"style {spec.name!r}"
    source, revision, expected = _converted_key(spec)
    folder = converted.find_cached(spec.kind, source, revision, expected)
    if folder is None:
        if is_offline():
            raise StyleNotCachedError(
                f"{label} ({source}) is downloaded and converted on first use, which has not happened on this "
                "machine, and offline mode is on (HF_HUB_OFFLINE or PORTRAIT_STYLIZE_OFFLINE). Unset it once "
                "to download it, or use a built-in style such as 'toon'.")
        if revision is None:
            revision = modelscope.default_revision(source, label)
        make = _MAKERS[spec.kind]
        folder = converted.build(converted.style_folder(spec.kind, source, revision), expected,
                                 lambda work: make(spec, revision, work, label))
    from .models.serialization import load_style_folder

    return load_style_folder(folder)


def _convert_files(spec: StyleSpec, networks: list[Path], mask: Path | None, work: Path, origin: str) -> None:
    """Convert downloaded release files into the style folder ``work / "style"``."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from .convert.ttn_releases import ConversionError, convert

    face_mask = None
    if mask is not None:
        try:
            with Image.open(mask) as image:
                face_mask = np.asarray(image.convert("L"), np.float32)
        except (OSError, UnidentifiedImageError) as exc:
            raise ConversionError(f"{mask.name} from {origin}: not a readable paste mask image ({exc})") from None
    convert(networks, work / "style", name=spec.name, description=spec.description, licence=spec.licence,
            source=origin, face_mask=face_mask, command=f"# converted on first use from {origin}",
            **spec.conversion)


def _modelscope_files(spec: StyleSpec, revision: str, label: str) -> tuple[str, dict[str, modelscope.RepoFile]]:
    """``(model id that answered, role -> file)``: the first listed candidate name of each role."""
    answered, listing = modelscope.list_files(spec.model_id, revision, label)
    by_path = {f.path: f for f in listing}
    chosen = {}
    for role, names in spec.files.items():
        chosen[role] = next((by_path[n] for n in names if n in by_path), None)
        if chosen[role] is None:
            raise StyleDownloadError(f"{label}: {answered} at {revision} has none of {', '.join(names)} ({role}); "
                                     f"it has {', '.join(sorted(by_path)) or 'no files'}")
    return answered, chosen


def _make_modelscope(spec: StyleSpec, revision: str, work: Path, label: str) -> converted.Provenance:
    answered, chosen = _modelscope_files(spec, revision, label)
    paths, hashes = {}, {}
    for role, found in chosen.items():
        # The registry's pinned hash first, else the listing's (trust on first use).
        sha256 = spec.file_sha256.get(found.path) or found.sha256
        if not sha256:
            raise StyleDownloadError(f"{label}: no sha256 is known for {found.path} (neither the registry nor the "
                                     "listing gives one); pin it with `portrait-stylize pin`")
        paths[role] = download(modelscope.file_url(answered, revision, found.path),
                               work / "files" / Path(found.path).name, sha256=sha256, size=found.size or None,
                               label=label)
        hashes[found.path] = sha256
    networks = [paths["head"]] + ([paths["bg"]] if "bg" in paths else [])
    _convert_files(spec, networks, paths.get("alpha"), work, f"modelscope:{answered}@{revision}")
    return converted.Provenance("modelscope", spec.model_id, revision, hashes)


def _make_url(spec: StyleSpec, revision: str, work: Path, label: str) -> converted.Provenance:
    name = Path(spec.url.split("?")[0]).name
    path = download(spec.url, work / "files" / name, sha256=spec.sha256, label=label)
    _convert_files(spec, [path], None, work, spec.url)
    return converted.Provenance("url", spec.url, revision, {name: spec.sha256})


def _blob_key(filename: str) -> str:
    """The provenance entry holding a ``github`` file's git blob id (its sha256 is under its name)."""
    return f"{filename} (git blob)"


def _make_github(spec: StyleSpec, revision: str, work: Path, label: str) -> converted.Provenance:
    from .convert.checkpoints import convert_checkpoint

    path = github.fetch_verified(spec.repo_id, revision, spec.filename, spec.git_blob_sha1,
                                 work / "files" / Path(spec.filename).name, label)
    origin = f"https://github.com/{spec.repo_id}/blob/{revision}/{spec.filename}"
    convert_checkpoint(spec.arch, path, work / "style", name=spec.name, description=spec.description,
                       licence=spec.licence, source=origin, command=f"# converted on first use from {origin}",
                       **spec.conversion)
    return converted.Provenance("github", f"{spec.repo_id}/{spec.filename}", revision,
                                {spec.filename: sha256_file(path), _blob_key(spec.filename): spec.git_blob_sha1})


_MAKERS = {"modelscope": _make_modelscope, "url": _make_url, "github": _make_github}


def _is_converted(spec: StyleSpec) -> bool:
    return converted.find_cached(spec.kind, *_converted_key(spec)) is not None


#: kind -> its :class:`Source`; the keys are :data:`portrait_stylize.sources.registry.KINDS`.
SOURCES: dict[str, Source] = {
    "builtin": Source(_load_builtin, lambda spec: True),
    "hub": Source(_load_hub, is_cached),
    "local": Source(_load_local, lambda spec: _is_style_folder(Path(spec.path))),
    "modelscope": Source(_load_converted, _is_converted),
    "url": Source(_load_converted, _is_converted),
    "github": Source(_load_converted, _is_converted),
}


#: How many characters of a style name messages repeat (a name can be any length, and the
#: command line prints messages whole).
SHOWN_NAME_CHARS = 80


def _shown(name: str) -> str:
    """``name`` quoted for a message, cut to :data:`SHOWN_NAME_CHARS` characters with an ellipsis."""
    return repr(name if len(name) <= SHOWN_NAME_CHARS else name[:SHOWN_NAME_CHARS - 1] + "…")


def _kinds_of_names(registry: Registry) -> str:
    return (f"A style is a registered name ({', '.join(registry.names())}), a style folder, or a Hub repo id "
            "'org/name'.")


def _stat(path: Path) -> os.stat_result | None:
    """``path``'s status, ``None`` where nothing is there.

    Raises:
        OSError, ValueError: a name no file can have (too long, a NUL byte, a loop of links) or a
            folder that may not be read. (``Path.exists`` and ``is_dir`` say ``False`` to these
            from Python 3.14 on, and would let such a name pass for a Hub id.)
    """
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None


def resolve_spec(name: str | os.PathLike | None = None) -> StyleSpec:
    """What ``name`` refers to: a registry entry (wins over a folder of the same name), a local
    style folder, or a Hub repo id; ``None`` is the registry's default style.

    Raises:
        StyleNotFoundError: none of these: an empty name, a name no file name can be, an invalid
            Hub id, a file or a folder that holds no style, or an unknown name (the message lists
            the registered names). Messages repeat at most :data:`SHOWN_NAME_CHARS` of the name.
    """
    registry = load_registry()
    name = registry.default if name is None else str(name)
    spec = registry.get(name)
    if spec is not None:
        return spec
    if not name.strip():  # Path("") would be the current folder
        blank = " (only white space)" if name else ""
        raise StyleNotFoundError(f"the style name is empty{blank}. {_kinds_of_names(registry)}")
    path = Path(name)
    try:
        found, parent = _stat(path), _stat(path.parent)
    except (OSError, ValueError) as exc:  # longer than a file name can be, a NUL byte ...
        reason = getattr(exc, "strerror", None) or exc
        raise StyleNotFoundError(f"{_shown(name)} is not a valid style name ({reason}). "
                                 f"{_kinds_of_names(registry)}") from None
    is_dir, exists = found is not None and stat.S_ISDIR(found.st_mode), found is not None
    parent_is_dir = parent is not None and stat.S_ISDIR(parent.st_mode)
    if is_dir:
        if not _is_style_folder(path):
            raise StyleNotFoundError(f"{_shown(name)} {NOT_A_STYLE_FOLDER}.")
        return StyleSpec(name="", kind="local", path=str(path.resolve()))
    if exists:
        raise StyleNotFoundError(f"{_shown(name)} is a file, not a style: give the style folder that holds "
                                 f"{CONFIG_NAME} and {WEIGHTS_NAME}.")
    hub_id = parse_hub_id(name)
    if hub_id is not None and not is_valid_hub_repo_id(hub_id[0]):
        raise StyleNotFoundError(f"{_shown(name)} is not a valid style name: {HUB_ID_RULES}.")
    if hub_id is not None and not name.startswith("hf-hub:") and parent_is_dir:
        raise StyleNotFoundError(
            f"no style folder {_shown(name)} (the folder {_shown(str(path.parent))} exists here). For the Hub repo "
            "of that name, write 'hf-hub:' before it."
        )
    if hub_id is not None:
        return StyleSpec(name=name, kind="hub", repo_id=hub_id[0], revision=hub_id[1],
                         filename=WEIGHTS_NAME)
    raise StyleNotFoundError(
        f"unknown style {_shown(name)}. Known styles: {', '.join(registry.names())}. "
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


def list_styles(pattern: str = "*") -> list[StyleSpec]:
    """Registered styles whose name matches the glob ``pattern``, with ``available_offline`` filled in.

    Never touches the network: availability means built-in, or weights already on disk.
    """
    registry = load_registry()
    return [registry.styles[n].with_availability(is_available_offline(registry.styles[n]))
            for n in registry.names(pattern)]


def pin(spec: StyleSpec) -> StyleSpec:
    """``spec`` (kind ``modelscope``) with its revision and the sha256 of each file it uses filled
    in from ModelScope (online): the newest tag, else ``master``, when it has none; hashes from the listing, or
    from the downloaded bytes where the listing gives none.

    Raises:
        InvalidArgumentError: ``spec`` is of another kind (``hub`` and ``url`` entries carry their sha256).
    """
    if spec.kind != "modelscope":
        raise InvalidArgumentError(f"style {spec.name!r} is of kind {spec.kind!r}; only modelscope entries are "
                                   "pinned (hub and url entries already name their sha256, github entries their "
                                   "commit and git blob id)")
    label = f"style {spec.name!r}"
    revision = spec.revision or modelscope.default_revision(spec.model_id, label)
    answered, chosen = _modelscope_files(spec, revision, label)
    hashes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for found in chosen.values():
            hashes[found.path] = found.sha256 or sha256_file(download(
                modelscope.file_url(answered, revision, found.path), Path(tmp) / Path(found.path).name, label=label))
    return dataclasses.replace(spec, revision=revision, file_sha256=hashes)
