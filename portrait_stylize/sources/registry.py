"""The style registry: ``checkpoints.json`` -> :class:`StyleSpec`.

Like timm's pretrained configs, one record per style says what it is (``kind``), where its weights
live (Hub repo, revision, file, sha256) and where it came from (licence, source). The registry that
ships with the package can be extended (or overridden name by name) with a JSON file of the same
format named by the environment variable ``PORTRAIT_STYLIZE_CHECKPOINTS``.

Format::

    {
      "format_version": 1,
      "default": "toon",
      "styles": {
        "toon":  {"kind": "builtin", "builtin": "toon", "description": "...", "licence": "apache-2.0"},
        "anime": {"kind": "hub", "repo_id": "org/repo", "revision": "<40-hex commit>",
                  "filename": "model.safetensors", "sha256": "<64 hex>",
                  "description": "...", "licence": "apache-2.0", "source": "https://..."},
        "mine":  {"kind": "local", "path": "styles/mine", "description": "..."},
        "dct-anime": {"kind": "modelscope", "model_id": "iic/<model>", "revision": "<tag>",
                      "files": {"head": ["cartoon_h.pb"], "bg": ["cartoon_bg.pb"]},
                      "conversion": {"channel_order": "bgr"}, "licence": "apache-2.0"},
        "whitebox": {"kind": "url", "url": "https://.../model.tflite", "sha256": "<64 hex>",
                     "conversion": {"channel_order": "bgr"}, "licence": "cc-by-nc-sa-4.0"},
        "anime-portrait": {"kind": "github", "repo_id": "owner/repo", "revision": "<40-hex commit>",
                           "filename": "weights/model.pt", "git_blob_sha1": "<40 hex>",
                           "arch": "animegan2", "licence": "mit"}
      }
    }

The six kinds (:data:`KINDS`): ``builtin`` (weight-free, in the package), ``hub`` (a safetensors
style on the Hugging Face Hub), ``local`` (a style folder on disk), and three converted on first
use and cached: ``modelscope`` (a ModelScope release), ``url`` (one released file at a fixed URL)
and ``github`` (a PyTorch checkpoint in a public GitHub repository, pinned by commit and by the
git blob SHA-1 that the commit's tree records for it).

Which keys each kind takes, and which it must have, is written once: in the field metadata of
:class:`StyleSpec`. A ``local`` entry's relative ``path`` is relative to the registry file.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RegistryError, UnsafeWeightsError

logger = logging.getLogger(__name__)

ENV_EXTRA_REGISTRY = "PORTRAIT_STYLIZE_CHECKPOINTS"
#: The source kinds, each loaded by one function in :mod:`portrait_stylize.loading`.
KINDS = ("builtin", "hub", "local", "modelscope", "url", "github")
#: The :func:`portrait_stylize.convert.ttn_releases.convert` options a ``conversion`` entry may set.
CONVERSION_OPTIONS = ("channel_order", "gf_eps", "gf_radius", "upsample", "padding", "negative_slope",
                      "image_pad_multiple", "image_pad_value")
#: Roles of the files of a ``modelscope`` entry: the networks and DCT-Net's paste mask.
FILE_ROLES = ("head", "bg", "alpha")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
#: A GitHub ``owner/name``: letters, digits, '-', and for the name also '_' and '.'.
_GITHUB_REPO = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9_.-]{1,100}$")
#: The architectures a ``github`` entry's checkpoint can be (see :mod:`portrait_stylize.convert.checkpoints`).
CHECKPOINT_ARCHS = ("animegan2",)
#: The style options a ``github`` entry's ``conversion`` may set (those of
#: :class:`~portrait_stylize.models.animegan.AnimeGANStyle`).
CHECKPOINT_OPTIONS = ("face_size", "whole_pixels")
_REPO_ID = r"[A-Za-z0-9][\w.-]*/[\w.-]+"
_HUB_ID = re.compile(rf"^(?:hf-hub:)?(?P<repo>{_REPO_ID})(?:@(?P<rev>[\w./-]+))?$")
#: One part of a repository id the Hub accepts (huggingface_hub's ``validate_repo_id``).
_HUB_REPO_PART = re.compile(r"[A-Za-z0-9_](?:[\w.-]{0,94}[A-Za-z0-9_])?", re.ASCII)
HUB_ID_RULES = ("a Hub id is 'org/name', each part 1 to 96 letters, digits, '-', '_' or '.' that starts and ends "
                "with a letter, digit or '_', without '--' or '..', the name not ending in '.git'")


def _key(typ: type, kinds: tuple[str, ...], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Field metadata: the registry key's JSON type, the kinds that may use it, those that must."""
    return {"type": typ, "kinds": kinds, "required": required}


@dataclass(frozen=True)
class StyleSpec:
    """One style: what it is, where its files come from, and its provenance.

    This dataclass is the registry entry's schema: every field but ``name`` and
    ``available_offline`` is a key of a ``checkpoints.json`` entry, valid for the kinds its
    metadata names.

    Attributes:
        name: registry name (``load_style(name)``).
        kind: where the style comes from, one of :data:`KINDS`: ``"builtin"`` (a weight-free
            filter, always available), ``"hub"`` (a style folder in a Hugging Face Hub repo) or
            ``"local"`` (a style folder on disk).
        description, licence, source: what it is and where it came from.
        builtin, params: ``builtin``: the filter's name and its keyword overrides.
        repo_id, revision, filename, sha256: ``hub``: where the weights are and their expected
            sha256 (checked before every use; required in registry files, ``None`` only for an
            ad-hoc ``org/name`` passed to ``load_style``, which logs a warning).
            ``revision=None`` means ``main``.
        model_id, revision, files, file_sha256: ``modelscope``: a ModelScope model, its tag
            (``None``: the newest tag, else ``master``, looked up on first use), the candidate file names per role
            (``{"head": [...], "bg": [...], "alpha": [...]}``, the first one present is used) and
            the expected sha256 per file name (absent: the listing's own, trusted on first use).
        url, sha256: ``url``: one released file at a fixed address and its sha256 (required).
        repo_id, revision, filename, git_blob_sha1, arch: ``github``: the repository
            (``owner/name``), the commit (40 hex digits), the file's path in it, the git blob
            SHA-1 its tree records for the file (checked before the file is read) and the
            architecture of the PyTorch state dict it holds (:data:`CHECKPOINT_ARCHS`).
        conversion: ``modelscope``/``url``: keyword arguments for
            :func:`portrait_stylize.convert.ttn_releases.convert` (``channel_order``, ``gf_eps``,
            ``image_pad_multiple`` ...); ``github``: the style's options (:data:`CHECKPOINT_OPTIONS`,
            e.g. ``face_size``); the style is converted on first use and cached.
        path: ``local``: the style folder.
        available_offline: filled in by :func:`portrait_stylize.list_styles`: ``True`` when the
            style can be used with no network (built-in, local, or weights already cached).
    """

    name: str
    kind: str = field(metadata=_key(str, KINDS, KINDS))
    description: str = field(default="", metadata=_key(str, KINDS))
    licence: str = field(default="", metadata=_key(str, KINDS, ("builtin", "hub")))
    source: str = field(default="", metadata=_key(str, KINDS))
    builtin: str | None = field(default=None, metadata=_key(str, ("builtin",), ("builtin",)))
    params: dict[str, Any] = field(default_factory=dict, metadata=_key(dict, ("builtin",)))
    repo_id: str | None = field(default=None, metadata=_key(str, ("hub", "github"), ("hub", "github")))
    model_id: str | None = field(default=None, metadata=_key(str, ("modelscope",), ("modelscope",)))
    revision: str | None = field(default=None, metadata=_key(str, ("hub", "modelscope", "github"), ("github",)))
    filename: str | None = field(default=None, metadata=_key(str, ("hub", "github"), ("hub", "github")))
    files: dict[str, list[str]] = field(default_factory=dict, metadata=_key(dict, ("modelscope",), ("modelscope",)))
    url: str | None = field(default=None, metadata=_key(str, ("url",), ("url",)))
    sha256: str | None = field(default=None, metadata=_key(str, ("hub", "url"), ("hub", "url")))
    file_sha256: dict[str, str] = field(default_factory=dict, metadata=_key(dict, ("modelscope",)))
    git_blob_sha1: str | None = field(default=None, metadata=_key(str, ("github",), ("github",)))
    arch: str | None = field(default=None, metadata=_key(str, ("github",), ("github",)))
    conversion: dict[str, Any] = field(default_factory=dict, metadata=_key(dict, ("modelscope", "url", "github")))
    path: str | None = field(default=None, metadata=_key(str, ("local",), ("local",)))
    available_offline: bool = False

    def with_availability(self, available: bool) -> StyleSpec:
        return dataclasses.replace(self, available_offline=available)

    def to_entry(self) -> dict[str, Any]:
        """The ``checkpoints.json`` entry for this style (keys of its kind that are set)."""
        return {f.name: getattr(self, f.name) for f in _SCHEMA
                if self.kind in f.metadata["kinds"] and getattr(self, f.name) not in (None, {})}


_SCHEMA = [f for f in dataclasses.fields(StyleSpec) if f.metadata]


def parse_hub_id(text: str) -> tuple[str, str | None] | None:
    """``"org/name"``, ``"org/name@rev"`` or ``"hf-hub:org/name"`` -> ``(repo_id, revision)``; else
    ``None`` (also for names with ``..``, which no hub allows and which would walk out of caches)."""
    match = _HUB_ID.match(text)
    if not match or ".." in match["repo"] or any(part.strip(".") == "" for part in match["repo"].split("/")):
        return None
    return match["repo"], match["rev"]


def is_valid_hub_repo_id(repo_id: str) -> bool:
    """Whether the Hub accepts ``repo_id`` (an ``org/name`` from :func:`parse_hub_id`); see
    :data:`HUB_ID_RULES`. huggingface_hub would refuse any other with its own exception."""
    return (all(_HUB_REPO_PART.fullmatch(part) for part in repo_id.split("/"))
            and "--" not in repo_id and ".." not in repo_id and not repo_id.endswith(".git"))


@dataclass(frozen=True)
class Registry:
    """Parsed registry: the styles by name and the default style's name."""

    styles: dict[str, StyleSpec]
    default: str | None

    def get(self, name: str) -> StyleSpec | None:
        return self.styles.get(name)

    def names(self, pattern: str = "*") -> list[str]:
        return [n for n in self.styles if fnmatch.fnmatchcase(n, pattern)]


def _parse_entry(name: str, entry: Any, where: str) -> StyleSpec:
    ctx = f"{where}: style {name!r}"
    if not isinstance(entry, dict):
        raise RegistryError(f"{ctx} must be a JSON object, got {type(entry).__name__}")
    kind = entry.get("kind")
    if kind not in KINDS:
        raise RegistryError(f"{ctx}: key 'kind' must be one of {KINDS}, got {kind!r}")
    allowed = {f.name: f.metadata for f in _SCHEMA if kind in f.metadata["kinds"]}
    for key in entry:
        if key not in allowed:
            raise RegistryError(f"{ctx}: unknown key {key!r} for kind {kind!r}; allowed: {', '.join(allowed)}")
    for key, meta in allowed.items():
        if key not in entry:
            if kind in meta["required"]:
                raise RegistryError(f"{ctx}: missing required key {key!r}")
        elif not isinstance(entry[key], meta["type"]):
            raise RegistryError(f"{ctx}: key {key!r} must be a {meta['type'].__name__}, "
                                f"got {type(entry[key]).__name__}")
    if kind in ("hub", "github"):
        parts = entry["filename"].replace("\\", "/").split("/")
        if entry["filename"].startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise RegistryError(f"{ctx}: key 'filename' must be a relative path inside the repo without '.' or "
                                f"'..' parts, got {entry['filename']!r}")
    if kind == "github":
        _check_github(entry, ctx)
    if kind == "hub":
        if parse_hub_id(entry["repo_id"]) != (entry["repo_id"], None) or not is_valid_hub_repo_id(entry["repo_id"]):
            raise RegistryError(f"{ctx}: key 'repo_id' must be a Hub id ({HUB_ID_RULES}), got {entry['repo_id']!r}")
        if not entry["filename"].endswith(".safetensors"):
            raise UnsafeWeightsError(
                f"{ctx}: key 'filename' is {entry['filename']!r}; only .safetensors weights are ever "
                "loaded (pickle files can run code). Convert the checkpoint to safetensors."
            )
    if kind == "modelscope":
        _check_modelscope(entry, ctx)
    options = CHECKPOINT_OPTIONS if kind == "github" else CONVERSION_OPTIONS
    unknown = set(entry.get("conversion", {})) - set(options)
    if unknown:
        raise RegistryError(f"{ctx}: key 'conversion' has unknown option(s) {', '.join(sorted(unknown))}; "
                            f"allowed: {', '.join(options)}")
    if kind == "url" and not (entry["url"].startswith("https://") or entry["url"].startswith("http://")):
        raise RegistryError(f"{ctx}: key 'url' must be an http(s) address, got {entry['url']!r}")
    digests = {"'sha256'": entry.get("sha256"),
               **{f"'file_sha256' for {k!r}": v for k, v in entry.get("file_sha256", {}).items()}}
    for key, digest in digests.items():
        if digest is not None and not (isinstance(digest, str) and _HEX64.match(digest)):
            raise RegistryError(f"{ctx}: key {key} must be 64 lowercase hex digits, got {digest!r}")
    if kind == "local":
        # Relative folders are relative to the registry file, so a registry travels with its styles.
        entry = {**entry,
                 "path": str(Path(where).resolve().parent / os.path.expandvars(os.path.expanduser(entry["path"])))}
    return StyleSpec(name=name, **entry)


def _check_github(entry: dict[str, Any], ctx: str) -> None:
    if not _GITHUB_REPO.match(entry["repo_id"]) or ".." in entry["repo_id"]:
        raise RegistryError(f"{ctx}: key 'repo_id' must be a GitHub 'owner/name', got {entry['repo_id']!r}")
    for key, what in (("revision", "a commit id"), ("git_blob_sha1", "the file's git blob SHA-1")):
        if not _HEX40.match(entry[key]):
            raise RegistryError(f"{ctx}: key {key!r} must be {what}: 40 lowercase hex digits, got {entry[key]!r}")
    if entry["arch"] not in CHECKPOINT_ARCHS:
        raise RegistryError(f"{ctx}: key 'arch' must be one of {', '.join(CHECKPOINT_ARCHS)}, got {entry['arch']!r}")


def _check_modelscope(entry: dict[str, Any], ctx: str) -> None:
    if parse_hub_id(entry["model_id"]) != (entry["model_id"], None):
        raise RegistryError(f"{ctx}: key 'model_id' must look like 'owner/name', got {entry['model_id']!r}")
    files = entry["files"]
    if "head" not in files:
        raise RegistryError(f"{ctx}: key 'files' must name the 'head' network's file(s), got {files!r}")
    for role, names in files.items():
        if role not in FILE_ROLES:
            raise RegistryError(f"{ctx}: key 'files' has unknown role {role!r}; roles: {', '.join(FILE_ROLES)}")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            raise RegistryError(f"{ctx}: files[{role!r}] must be a non-empty list of file names, got {names!r}")


def parse_registry(data: Any, where: str = "registry", skip_bad_entries: bool = False) -> Registry:
    """Validate a registry document (already JSON-decoded) and return it parsed.

    Args:
        skip_bad_entries: leave out entries that fail validation, with a warning naming each,
            instead of raising (a user's extra registry must not take down the other styles).

    Raises:
        RegistryError: naming the file, the style and the key that is wrong.
    """
    if not isinstance(data, dict) or not isinstance(data.get("styles"), dict):
        raise RegistryError(f"{where}: must be a JSON object with a 'styles' object")
    if data.get("format_version", 1) != 1:
        raise RegistryError(f"{where}: key 'format_version' is {data['format_version']!r}; this version reads 1")
    styles = {}
    for name, entry in data["styles"].items():
        try:
            styles[name] = _parse_entry(name, entry, where)
        except (RegistryError, UnsafeWeightsError) as exc:
            if not skip_bad_entries:
                raise
            logger.warning("%s; this style is skipped", exc)
    default = data.get("default")
    if default is not None and not isinstance(default, str):
        raise RegistryError(f"{where}: key 'default' must be a style name (string), got {type(default).__name__}")
    return Registry(styles=styles, default=default)


def read_registry(path: str | os.PathLike, skip_bad_entries: bool = False) -> Registry:
    """Read and validate one registry JSON file (see :func:`parse_registry`)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegistryError(f"{path}: registry file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{path}: not valid UTF-8 JSON ({exc})") from None
    except OSError as exc:
        raise RegistryError(f"{path}: cannot read the registry file ({exc})") from None
    return parse_registry(data, str(path), skip_bad_entries)


def builtin_registry_path() -> Path:
    """The package's ``checkpoints.json`` (inside the wheel, or the repository root when editable)."""
    here = Path(__file__).resolve().parents[1]  # the package folder
    for candidate in (here / "checkpoints.json", here.parent / "checkpoints.json"):
        if candidate.is_file():
            return candidate
    raise RegistryError(f"checkpoints.json not found next to {here}; the installation is incomplete")


def load_registry() -> Registry:
    """The package registry merged with ``$PORTRAIT_STYLIZE_CHECKPOINTS``.

    The extra file's styles override same-named ones, and its ``default``, when given, wins. Its
    invalid entries are skipped with a warning; the package's own file must be valid.
    """
    base_path = builtin_registry_path()
    registry, where = read_registry(base_path), str(base_path)
    extra_path = os.environ.get(ENV_EXTRA_REGISTRY)
    if extra_path:
        extra = read_registry(extra_path, skip_bad_entries=True)
        registry = Registry(styles={**registry.styles, **extra.styles}, default=extra.default or registry.default)
        where = extra_path if extra.default else where
    if registry.default not in registry.styles:
        raise RegistryError(f"{where}: key 'default' names {registry.default!r}, which is not a registered style")
    return registry
