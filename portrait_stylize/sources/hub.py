"""Downloading and verifying style weights from the Hugging Face Hub.

Files are fetched with :func:`huggingface_hub.hf_hub_download` into the standard Hub cache
(``$HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``), so they are shared with other
libraries and reused offline. ``HF_HUB_OFFLINE=1`` (read at call time) never touches the
network. Every weights file must be safetensors, and registry styles are checked against their
recorded sha256 before use; a file that fails the check is removed from the cache so that it is
never picked up again.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import httpx
from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from ..common.files import sha256_file
from ..common.offline import is_offline
from ..common.style_files import CONFIG_NAME, WEIGHTS_NAME, check_safetensors
from ..errors import (
    ChecksumMismatchError,
    HubUploadError,
    InvalidStyleError,
    StyleDownloadError,
    StyleNotCachedError,
    UnsafeWeightsError,
)
from ..version import __version__
from .downloads import unreachable
from .registry import StyleSpec

logger = logging.getLogger(__name__)

def cache_dir() -> Path:
    """The Hub cache folder in use (``$HF_HUB_CACHE`` read at call time)."""
    raw = os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE
    return Path(os.path.expandvars(os.path.expanduser(raw)))


def _discard(path: Path) -> None:
    """Remove a cached file: its snapshot entry and, for the Hub's symlink layout, its blob."""
    blob = Path(os.path.realpath(path))
    path.unlink(missing_ok=True)
    if blob != path and cache_dir().resolve() in blob.parents:
        blob.unlink(missing_ok=True)


def _download(repo_id: str, filename: str, revision: str | None, label: str) -> Path:
    """``hf_hub_download`` with our error messages. ``label`` names the style for messages."""
    where = f"{repo_id}@{revision or 'main'}/{filename}"
    try:
        return Path(
            hf_hub_download(
                repo_id,
                filename,
                revision=revision,
                cache_dir=cache_dir(),
                local_files_only=is_offline(),
                endpoint=os.environ.get("HF_ENDPOINT") or None,
                library_name="portrait-stylize",
                library_version=__version__,
            )
        )
    except LocalEntryNotFoundError:
        reason = "HF_HUB_OFFLINE is set" if is_offline() else "the Hub cannot be reached"
        raise StyleNotCachedError(
            f"{label}: {where} is not in the cache ({cache_dir()}) and {reason}. Connect to the "
            "internet once (unset HF_HUB_OFFLINE) to download it, or use a built-in style such as 'toon'."
        ) from None
    except GatedRepoError:
        raise StyleDownloadError(
            f"{label}: {repo_id} is gated; accept its terms on huggingface.co and log in with `hf auth login`"
        ) from None
    except RepositoryNotFoundError:
        raise StyleDownloadError(
            f"{label}: repository {repo_id} does not exist on the Hub (or is private: log in with `hf auth login`)"
        ) from None
    except RevisionNotFoundError:
        raise StyleDownloadError(f"{label}: revision {revision!r} does not exist in {repo_id}") from None
    except EntryNotFoundError:
        raise StyleDownloadError(f"{label}: file {filename!r} does not exist in {repo_id} "
                                 f"at revision {revision or 'main'}") from None
    except HfHubHTTPError as exc:
        raise StyleDownloadError(f"{label}: downloading {where} failed: {exc}") from None
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        raise StyleDownloadError(f"{label}: the download of {where} broke off ({exc}); try again, or work offline "
                                 "(HF_HUB_OFFLINE=1) with the styles already cached") from None
    except httpx.TransportError as exc:  # refused, DNS, timeouts
        raise unreachable(label, where, exc) from None


def _config_name(weights_filename: str) -> str:
    """``config.json`` in the same repo folder as the weights."""
    return str(Path(weights_filename).parent / CONFIG_NAME) if "/" in weights_filename else CONFIG_NAME


def fetch_style_files(repo_id: str, filename: str = WEIGHTS_NAME, revision: str | None = None,
                      sha256: str | None = None, label: str | None = None) -> tuple[Path, Path]:
    """Download (or find in the cache) a style's ``config.json`` and weights, and verify them.

    Args:
        repo_id: ``org/name`` on the Hub.
        filename: weights file in the repo (must end in ``.safetensors``); ``config.json`` is
            taken from the same folder.
        revision: branch, tag or (best) commit id; ``None`` means ``main``.
        sha256: expected hex digest of the weights. When given, a mismatching file is deleted
            from the cache and :class:`ChecksumMismatchError` raised.
        label: how to name the style in messages (defaults to ``repo_id``).

    Returns:
        ``(config_path, weights_path)`` inside the Hub cache.
    """
    label = label or repo_id
    if not filename.endswith(".safetensors"):
        raise UnsafeWeightsError(f"{label}: {filename!r} is not a .safetensors file; "
                                 "only safetensors weights are loaded")
    weights = _download(repo_id, filename, revision, label)
    if sha256 is not None:
        actual = sha256_file(weights)
        if actual != sha256:
            _discard(weights)
            raise ChecksumMismatchError(
                f"{label}: {repo_id}@{revision or 'main'}/{filename} has sha256 {actual}, but the registry "
                f"expects {sha256}. The file was removed from the cache; try again, and if it persists the "
                "registry entry or the repository is wrong."
            )
    else:
        logger.warning("%s: no sha256 recorded for %s/%s; loading it unverified", label, repo_id, filename)
    check_safetensors(weights)
    config = _download(repo_id, _config_name(filename), revision, label)
    return config, weights


def fetch_spec(spec: StyleSpec) -> tuple[Path, Path]:
    """:func:`fetch_style_files` for a registry entry of kind ``hub``."""
    return fetch_style_files(spec.repo_id, spec.filename, spec.revision, spec.sha256, label=f"style {spec.name!r}")


def is_cached(spec: StyleSpec) -> bool:
    """Whether a Hub style's weights and config are already in the cache (no network access)."""
    return all(
        isinstance(try_to_load_from_cache(spec.repo_id, name, cache_dir=cache_dir(), revision=spec.revision), str)
        for name in (spec.filename, _config_name(spec.filename))
    )


def publish_style_folder(folder: str | os.PathLike, repo_id: str, *, name: str | None = None, private: bool = False,
                         token: str | None = None, commit_message: str = "Upload portrait-stylize style",
                         files: tuple[str, ...] | None = None) -> StyleSpec:
    """Create (or reuse) the Hub model repo ``repo_id``, upload a style folder, and describe it.

    Args:
        name: the registry name for the returned entry (default: the folder's name).
        files: upload only these file names from the folder (default: everything in it).

    Returns:
        The style as a ``hub`` registry entry pinned to the new commit (``revision``), with the
        weights' ``sha256`` and the provenance from the folder's ``config.json``; print it with
        :func:`publication_report`.
    """
    from huggingface_hub import HfApi

    folder = Path(folder)
    weights, config_path = folder / WEIGHTS_NAME, folder / CONFIG_NAME
    if not weights.is_file() or not config_path.is_file():
        raise InvalidStyleError(f"{folder}: a style folder needs {CONFIG_NAME} and {WEIGHTS_NAME} to be published")
    check_safetensors(weights)
    config = json.loads(config_path.read_text(encoding="utf-8"))
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=str(folder),
                                   commit_message=commit_message, allow_patterns=list(files) if files else None)
    except Exception as exc:  # network, auth, offline mode: all end the same way for the user
        raise HubUploadError(f"could not publish {folder} to {repo_id}: {exc}. Log in with `hf auth login` "
                             "(or set HF_TOKEN) and make sure HF_HUB_OFFLINE is not set.") from None
    return StyleSpec(name=name or folder.name, kind="hub", repo_id=repo_id, revision=commit.oid, filename=WEIGHTS_NAME,
                     sha256=sha256_file(weights), licence=config.get("licence", ""),
                     source=config.get("source", ""), description=config.get("description", ""))


def publication_report(spec: StyleSpec) -> str:
    """What to tell someone who just published ``spec``: where it went and its ``checkpoints.json`` entry."""
    entry = json.dumps({spec.name: spec.to_entry()}, indent=2)
    return f"published to https://huggingface.co/{spec.repo_id} at {spec.revision}\ncheckpoints.json entry:\n{entry}"
