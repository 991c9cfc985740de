"""Downloading and verifying style weights from the Hugging Face Hub.

Files are fetched with :func:`huggingface_hub.hf_hub_download` into the standard Hub cache
(``$HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``), so they are shared with other
libraries and reused offline. ``HF_HUB_OFFLINE=1`` (read at call time) never touches the
network. Every weights file must be safetensors, and registry styles are checked against their
recorded sha256 before use; a file that fails the check is removed from the cache so that it is
never picked up again.

A download gives up once the Hub has sent nothing for :data:`~.downloads.STALL_S` (30 s), however
huggingface_hub would retry: see :func:`_download`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import httpx
from huggingface_hub import constants, hf_hub_download, set_client_factory, try_to_load_from_cache
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import _http as hf_http

from ..common import downloads
from ..common.downloads import stalled, unreachable
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
from .registry import StyleSpec

try:  # huggingface_hub 2 talks through httpx2, 1.x through httpx: the same errors, as distinct classes
    import httpx2

    _HTTP_LIBS = (httpx, httpx2)
except ImportError:
    _HTTP_LIBS = (httpx,)
_BROKE_OFF = tuple(error for lib in _HTTP_LIBS for error in (lib.RemoteProtocolError, lib.ReadError))
_TIMEOUTS = tuple(lib.TimeoutException for lib in _HTTP_LIBS)
_TRANSPORT_ERRORS = tuple(lib.TransportError for lib in _HTTP_LIBS)

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


# --- the stall limit -------------------------------------------------------------------------------
# huggingface_hub keeps asking a silent Hub for minutes (a 10 s metadata request, then six more of
# 60 s between back-off pauses; a stalled body is resumed five times, 10 s each), and no argument
# bounds that. So the requests it sends for _download pass two event hooks of its HTTP client
# (httpx's or httpx2's objects, whichever it uses): they cut every wait to what is left of STALL_S
# since the Hub last sent something, and once nothing is left they refuse the next request with
# _Stalled, which none of its retries catch. What remains over STALL_S is at most one of its
# back-off pauses (1 s after a timeout, up to 8 s after several refused connections).


@dataclass
class _Watch:
    #: time.monotonic() when the Hub last sent something; the first request starts the clock.
    last_data: float | None = None


_watch: ContextVar[_Watch | None] = ContextVar("portrait_stylize_hub_watch", default=None)


class _Stalled(Exception):
    """The Hub sent nothing for STALL_S (no httpx error, so that huggingface_hub does not retry it)."""


def _before_request(request) -> None:
    watch = _watch.get()
    if watch is None:  # a request of another huggingface_hub user in this process
        return
    if watch.last_data is None:
        watch.last_data = time.monotonic()
    left = watch.last_data + downloads.STALL_S - time.monotonic()
    if left <= 0:
        raise _Stalled
    timeouts = request.extensions.get("timeout") or {}
    request.extensions["timeout"] = {key: left if timeouts.get(key) is None else min(timeouts[key], left)
                                     for key in ("connect", "read", "write", "pool")}


def _after_response(response) -> None:
    watch = _watch.get()
    if watch is None:
        return
    if response.request.method == "HEAD":  # the whole answer has come
        watch.last_data = time.monotonic()
        return
    # A body counts as it arrives, read by read (huggingface_hub only sees 10 MB chunks); its
    # headers alone do not, or a server that answers every resumed request and then stalls would
    # keep huggingface_hub retrying. The response reads its body through iter_raw, so the
    # instance's own iter_raw sees every read.
    iter_raw = response.iter_raw

    def watched_iter_raw(*args, **kwargs):
        for chunk in iter_raw(*args, **kwargs):
            watch.last_data = time.monotonic()
            yield chunk

    response.iter_raw = watched_iter_raw


def _with_watch(client):
    """``client``, one of huggingface_hub's HTTP clients, plus the watch's hooks (idle outside :func:`_download`)."""
    client.event_hooks["request"].append(_before_request)
    client.event_hooks["response"].append(_after_response)
    return client


_factory_lock = threading.Lock()
_factory_set = False


def _use_watched_clients() -> None:
    """Make huggingface_hub's client factory add the watch's hooks to what the factory in place
    makes (its default, or one the program set), once: a factory rather than hooks on the current
    client, which huggingface_hub replaces after every connection error."""
    global _factory_set
    with _factory_lock:
        if not _factory_set:
            make = hf_http._GLOBAL_CLIENT_FACTORY  # the factory in place; huggingface_hub has no getter for it
            set_client_factory(lambda: _with_watch(make()))
            _factory_set = True


def _download(repo_id: str, filename: str, revision: str | None, label: str) -> Path:
    """``hf_hub_download`` with our error messages, given up after :data:`~.downloads.STALL_S`
    without a byte from the Hub. ``label`` names the style for messages."""
    where = f"{repo_id}@{revision or 'main'}/{filename}"
    endpoint = os.environ.get("HF_ENDPOINT") or None
    _use_watched_clients()
    watching = _watch.set(_Watch())
    try:
        return Path(
            hf_hub_download(
                repo_id,
                filename,
                revision=revision,
                cache_dir=cache_dir(),
                local_files_only=is_offline(),
                endpoint=endpoint,
                library_name="portrait-stylize",
                library_version=__version__,
            )
        )
    except (_Stalled, *_TIMEOUTS):
        raise stalled(label, f"the Hub at {endpoint or constants.ENDPOINT} ({where})") from None
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
    except _BROKE_OFF as exc:
        raise StyleDownloadError(f"{label}: the download of {where} broke off ({exc}); try again, or work offline "
                                 "(HF_HUB_OFFLINE=1) with the styles already cached") from None
    except _TRANSPORT_ERRORS as exc:  # refused, DNS
        raise unreachable(label, where, exc) from None
    finally:
        _watch.reset(watching)


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
