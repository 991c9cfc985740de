"""The ModelScope model hub over plain HTTP, speaking the protocol of the ``modelscope`` package
(which is not needed, nor TensorFlow).

* endpoint: ``https://www.modelscope.cn``, or ``$MODELSCOPE_DOMAIN`` (the package's own variable;
  a bare host name gets ``https://``);
* files of a model at a revision: ``GET /api/v1/models/{id}/repo/files?Revision=R&Recursive=True``
  -> ``{"Code": 200, "Success": true, "Data": {"Files": [{"Path", "Name", "Type", "Size", "Sha256", ...}]}}``;
* one file: ``GET /api/v1/models/{id}/repo?Revision=R&FilePath=P`` (redirects to storage);
* tags: ``GET /api/v1/models/{id}/revisions`` -> ``Data.RevisionMap.Tags[].Revision``.

DAMO Academy's models moved from the ``damo/`` namespace to ``iic/``; an id in either answers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from ..common.downloads import client, stalled, unreachable
from ..errors import StyleDownloadError

DEFAULT_ENDPOINT = "https://www.modelscope.cn"
ENV_ENDPOINT = "MODELSCOPE_DOMAIN"
RENAMED_NAMESPACES = {"damo": "iic", "iic": "damo"}


@dataclass(frozen=True)
class RepoFile:
    """One file of a listing: its path in the repo, size in bytes and sha256 (hex, may be empty)."""

    path: str
    size: int
    sha256: str


def endpoint() -> str:
    """The ModelScope server (``$MODELSCOPE_DOMAIN`` read at every call)."""
    raw = os.environ.get(ENV_ENDPOINT, "").strip().rstrip("/") or DEFAULT_ENDPOINT
    return raw if "://" in raw else f"https://{raw}"


def model_ids(model_id: str) -> list[str]:
    """``model_id`` and, for the renamed ``damo``/``iic`` namespaces, its other spelling."""
    owner, _, name = model_id.partition("/")
    other = RENAMED_NAMESPACES.get(owner)
    return [model_id] + ([f"{other}/{name}"] if other else [])


def file_url(model_id: str, revision: str, path: str) -> str:
    """Where one file of ``model_id`` at ``revision`` is downloaded from."""
    query = urlencode({"Revision": revision, "FilePath": path})
    return f"{endpoint()}/api/v1/models/{quote(model_id)}/repo?{query}"


def _get_json(http: httpx.Client, url: str, label: str) -> tuple[int, Any]:
    try:
        response = http.get(url)
    except httpx.TimeoutException:
        raise stalled(label, url) from None
    except httpx.TransportError as exc:
        raise unreachable(label, url, exc) from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 500 or (response.status_code == 200 and not isinstance(body, dict)):
        raise StyleDownloadError(f"{label}: ModelScope answered {url} with HTTP {response.status_code} and no "
                                 "usable JSON; the service may be down, try again later")
    return response.status_code, body


def _answer(http: httpx.Client, model_id: str, suffix: str, label: str) -> tuple[str, dict]:
    """``(model id that answered, Data)`` for ``GET /api/v1/models/{id}{suffix}``, trying the
    renamed namespace when the first id is unknown."""
    messages = []
    for candidate in model_ids(model_id):
        url = f"{endpoint()}/api/v1/models/{quote(candidate)}{suffix}"
        status, body = _get_json(http, url, label)
        if status == 200 and body.get("Success", body.get("Code") == 200) and isinstance(body.get("Data"), dict):
            return candidate, body["Data"]
        messages.append(f"{candidate}: HTTP {status}, {(body or {}).get('Message', 'no message')}")
    raise StyleDownloadError(f"{label}: ModelScope has no such model or revision ({'; '.join(messages)})")


def newest_tag(model_id: str, label: str) -> str:
    """The newest tag of ``model_id``: the largest ``CreatedAt``, else the first listed."""
    with client() as http:
        _, data = _answer(http, model_id, "/revisions", label)
    tags = [t for t in (data.get("RevisionMap") or {}).get("Tags") or []
            if isinstance(t, dict) and isinstance(t.get("Revision"), str) and t["Revision"]]
    if not tags:
        raise StyleDownloadError(f"{label}: {model_id} has no tagged revision on ModelScope; pin one with 'revision'")
    if all(isinstance(t.get("CreatedAt"), (int, float)) for t in tags):
        tags = sorted(tags, key=lambda t: -t["CreatedAt"])
    return tags[0]["Revision"]


def list_files(model_id: str, revision: str, label: str) -> tuple[str, list[RepoFile]]:
    """``(model id that answered, files)`` of ``model_id`` at ``revision`` (sub-folders included)."""
    query = urlencode({"Revision": revision, "Recursive": "True"})
    with client() as http:
        answered, data = _answer(http, model_id, f"/repo/files?{query}", label)
    files = []
    for item in data.get("Files") or []:
        if isinstance(item, dict) and item.get("Type", "blob") == "blob" and isinstance(item.get("Path"), str):
            files.append(RepoFile(item["Path"], int(item.get("Size") or 0), str(item.get("Sha256") or "").lower()))
    return answered, files
