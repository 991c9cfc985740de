"""The ModelScope model hub over plain HTTP, speaking the protocol of the ``modelscope`` package
(which is not needed, nor TensorFlow).

* endpoint, as the SDK chooses it: ``$MODELSCOPE_ENDPOINT``, else ``$MODELSCOPE_DOMAIN`` (a bare
  host name gets ``https://``), else ``https://modelscope.cn``, and the international site
  ``https://www.modelscope.ai`` from the moment modelscope.cn cannot be reached (no connection,
  not an HTTP answer) while neither variable is set;
* files of a model at a revision: ``GET /api/v1/models/{id}/repo/files?Revision=R&Recursive=True``
  -> ``{"Code": 200, "Success": true, "Data": {"Files": [{"Path", "Name", "Type", "Size", "Sha256", ...}]}}``;
* one file: ``GET /api/v1/models/{id}/repo?Revision=R&FilePath=P`` (redirects to storage);
* tags: ``GET /api/v1/models/{id}/revisions`` -> ``Data.RevisionMap.Tags[].Revision``, newest first.

An entry without a revision takes :func:`default_revision`: the newest tag, else ``master`` (a
moving branch), as the SDK's ``model_file_download`` does; ``portrait-stylize pin`` fixes it.
Busy answers (429, 500, 502, 503, 504, and a listing's 403) are retried :data:`ATTEMPTS` times with
exponential backoff (``Retry-After`` honoured), like the SDK. DAMO Academy's models moved from the
``damo/`` namespace to ``iic/``; an id in either answers.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from ..common.downloads import STYLE_FALLBACK, bad_address, client, stalled, unreachable
from ..errors import StyleDownloadError

DEFAULT_ENDPOINT = "https://modelscope.cn"  # the SDK's (modelscope-hub's) DEFAULT_ENDPOINT
INTL_ENDPOINT = "https://www.modelscope.ai"
ENV_ENDPOINTS = ("MODELSCOPE_ENDPOINT", "MODELSCOPE_DOMAIN")  # the SDK's order; the second is deprecated
RENAMED_NAMESPACES = {"damo": "iic", "iic": "damo"}
RETRY_STATUSES = (429, 500, 502, 503, 504)
ATTEMPTS = 4
#: Seconds before the second attempt, doubled before each later one (1, 2, 4); tests lower it.
BACKOFF_S = 1.0
#: The longest wait between two attempts, ``Retry-After`` included.
MAX_WAIT_S = 8.0
_ADVICE = f"point MODELSCOPE_ENDPOINT at a ModelScope site you can reach, or {STYLE_FALLBACK}"
_international = threading.Event()  # set once modelscope.cn could not be reached: for the whole process


@dataclass(frozen=True)
class RepoFile:
    """One file of a listing: its path in the repo, size in bytes and sha256 (hex, may be empty)."""

    path: str
    size: int
    sha256: str


def configured_endpoint() -> str | None:
    """``$MODELSCOPE_ENDPOINT``, else ``$MODELSCOPE_DOMAIN`` (read at every call), as a URL; None if neither is set."""
    for variable in ENV_ENDPOINTS:
        raw = os.environ.get(variable, "").strip().rstrip("/")
        if raw:
            return raw if "://" in raw else f"https://{raw}"
    return None


def endpoint() -> str:
    """The ModelScope server: the configured one, else modelscope.cn, or the international site
    once modelscope.cn could not be reached."""
    return configured_endpoint() or (INTL_ENDPOINT if _international.is_set() else DEFAULT_ENDPOINT)


def model_ids(model_id: str) -> list[str]:
    """``model_id`` and, for the renamed ``damo``/``iic`` namespaces, its other spelling."""
    owner, _, name = model_id.partition("/")
    other = RENAMED_NAMESPACES.get(owner)
    return [model_id] + ([f"{other}/{name}"] if other else [])


def file_url(model_id: str, revision: str, path: str) -> str:
    """Where one file of ``model_id`` at ``revision`` is downloaded from."""
    query = urlencode({"Revision": revision, "FilePath": path})
    return f"{endpoint()}/api/v1/models/{quote(model_id)}/repo?{query}"


def _sites() -> list[str]:
    """The servers to try in turn: :func:`endpoint`, then the international site after modelscope.cn by default."""
    first = endpoint()
    return [first, INTL_ENDPOINT] if first == DEFAULT_ENDPOINT and not configured_endpoint() else [first]


def _network_error(label: str, where: str, exc: httpx.TransportError) -> Exception:
    """Our error for a server that stayed silent or could not be reached."""
    if isinstance(exc, httpx.TimeoutException):
        return stalled(label, where, _ADVICE)
    return unreachable(label, where, exc, _ADVICE)


def _request(http: httpx.Client, url: str, label: str) -> httpx.Response:
    """``GET url`` with our errors, except a failed connection, which is raised as it is (the
    caller may try the next site)."""
    try:
        return http.get(url)
    except (httpx.ConnectError, httpx.ConnectTimeout):
        raise
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise bad_address(label, url, exc) from None
    except httpx.TransportError as exc:
        raise _network_error(label, url, exc) from None
    except (httpx.TooManyRedirects, httpx.DecodingError) as exc:
        raise StyleDownloadError(f"{label}: ModelScope's answer to {url} was unusable ({type(exc).__name__}: "
                                 f"{exc}); try again later") from None


def _get(http: httpx.Client, path: str, label: str) -> httpx.Response:
    """``GET`` ``path`` on :func:`endpoint`; when modelscope.cn (not configured) cannot be reached,
    on the international site, which is kept for later calls once it has answered."""
    sites = _sites()
    if len(sites) > 1:
        try:
            return _request(http, sites[0] + path, label)
        except (httpx.ConnectError, httpx.ConnectTimeout):  # no connection at all, not an HTTP answer
            pass
    try:
        response = _request(http, sites[-1] + path, label)
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise _network_error(label, " or ".join(site + path for site in sites), exc) from None
    if len(sites) > 1:
        _international.set()
    return response


def _wait_s(response: httpx.Response, attempt: int) -> float:
    """Seconds before the next attempt: ``Retry-After`` (seconds) or the backoff, at most :data:`MAX_WAIT_S`."""
    after = response.headers.get("Retry-After", "").strip()
    return min(float(after) if after.isascii() and after.isdigit() else BACKOFF_S * 2 ** (attempt - 1), MAX_WAIT_S)


def _get_json(http: httpx.Client, path: str, label: str, retry_403: bool = False) -> tuple[int, Any]:
    """``(status, JSON body or None)`` of ``GET path``, retrying busy answers; a 403 too when ``retry_403``."""
    for attempt in range(1, ATTEMPTS + 1):
        response = _get(http, path, label)
        status = response.status_code
        if status not in RETRY_STATUSES and not (retry_403 and status == 403):
            break
        if attempt == ATTEMPTS:
            hint = ", and if it persists the model may be private" if status == 403 else ""
            raise StyleDownloadError(f"{label}: ModelScope answered {response.url} with HTTP {status} after "
                                     f"{ATTEMPTS} attempts; the service is busy or down, try again later{hint}")
        time.sleep(_wait_s(response, attempt))
    try:
        body = response.json()
    except ValueError:
        body = None
    if status >= 500 or (status == 200 and not isinstance(body, dict)):
        raise StyleDownloadError(f"{label}: ModelScope answered {response.url} with HTTP {status} and no "
                                 "usable JSON; the service may be down, try again later")
    return status, body


def _answer(http: httpx.Client, model_id: str, suffix: str, label: str, retry_403: bool = False) -> tuple[str, dict]:
    """``(model id that answered, Data)`` for ``GET /api/v1/models/{id}{suffix}``, trying the
    renamed namespace when the first id is unknown."""
    messages = []
    for candidate in model_ids(model_id):
        status, body = _get_json(http, f"/api/v1/models/{quote(candidate)}{suffix}", label, retry_403)
        if status == 200 and body.get("Success", body.get("Code") == 200) and isinstance(body.get("Data"), dict):
            return candidate, body["Data"]
        messages.append(f"{candidate}: HTTP {status}, {(body or {}).get('Message', 'no message')}")
    raise StyleDownloadError(f"{label}: ModelScope has no such model or revision ({'; '.join(messages)})")


def _created_at(tag: dict) -> float | None:
    """A tag's ``CreatedAt`` in seconds (numbers or digit strings; milliseconds as the SDK reads them), or None."""
    value = tag.get("CreatedAt")
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    return value / 1000 if value > 9_999_999_999 else value


def default_revision(model_id: str, label: str) -> str:
    """The revision of an entry that names none: the newest tag (the largest ``CreatedAt``, else the
    first listed, as the service lists newest first), else ``master`` for a repository without tags."""
    with client() as http:
        _, data = _answer(http, model_id, "/revisions", label)
    tags = [t for t in (data.get("RevisionMap") or {}).get("Tags") or []
            if isinstance(t, dict) and isinstance(t.get("Revision"), str) and t["Revision"]]
    if not tags:
        return "master"
    if all(_created_at(t) is not None for t in tags):
        return max(tags, key=_created_at)["Revision"]  # a tie keeps the first listed
    return tags[0]["Revision"]


def list_files(model_id: str, revision: str, label: str) -> tuple[str, list[RepoFile]]:
    """``(model id that answered, files)`` of ``model_id`` at ``revision`` (sub-folders included)."""
    query = urlencode({"Revision": revision, "Recursive": "True"})
    with client() as http:
        answered, data = _answer(http, model_id, f"/repo/files?{query}", label, retry_403=True)
    files = []
    for item in data.get("Files") or []:
        if isinstance(item, dict) and item.get("Type", "blob") == "blob" and isinstance(item.get("Path"), str):
            files.append(RepoFile(item["Path"], int(item.get("Size") or 0), str(item.get("Sha256") or "").lower()))
    return answered, files
