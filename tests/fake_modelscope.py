"""Test helper that imitates the ModelScope model hub API without any network.

:class:`FakeModelScope` is a tiny HTTP server (``http.server`` in a thread on 127.0.0.1, a free
port) that answers the requests the ``modelscope`` Python package makes, the way
modelscope.cn does. Every JSON answer is ``{"Code": ..., "Success": ..., "Message": ..., "Data": ...}``.

* ``GET /api/v1/models/{owner}/{name}/repo/files?Revision={rev}&Recursive=True[&Root={dir}]``:
  the file listing, ``Data.Files`` = ``[{"Path", "Name", "Type": "blob"|"tree", "Size", "Sha256",
  "Revision": <40-hex commit of that revision>, "Mode": "33188"|"16384", "IsLFS"}]``, files sorted
  by path. ``Recursive`` missing/false lists only the top level (files and ``tree`` entries for the
  top-level folders); true lists every file and a ``tree`` entry for every sub-folder.
* ``GET /api/v1/models/{owner}/{name}/revisions[?EndTime={unix}]``: ``Data.RevisionMap`` =
  ``{"Branches": [{"Revision": "master", ...}], "Tags": [{"Revision": tag, "CreatedAt": unix, ...}]}``.
  Tags come newest first (the largest ``CreatedAt`` first), as modelscope.cn lists them; every
  added tag gets a strictly larger ``CreatedAt``. A model added with ``tags=()`` has none
  (``"Tags": []``) and only ``master``. ``EndTime`` drops tags created after it, as modelscope.cn
  does for the client's release-date cutoff.
* ``GET|HEAD /api/v1/models/{owner}/{name}/repo?Revision={rev}&FilePath={path}`` (``FilePath``
  URL-encoded, e.g. ``a%2Fb.pb``): by default a ``302`` whose ``Location`` is
  ``{endpoint}/blobs/{sha256}`` on the same server; with ``FakeModelScope(redirect=False)`` the
  bytes are served from this URL directly.
* ``GET|HEAD /blobs/{sha256}``: the bytes, with ``Content-Length``, ``Accept-Ranges: bytes`` and
  ``ETag``; ``Range: bytes=N-`` (or ``bytes=N-M``) answers ``206`` with ``Content-Range``, a range
  past the end ``416``.
* ``GET /api/v1/models/{owner}/{name}[?Revision=]``: a small model-info record (``Data.Path``,
  ``Data.Name``, ``Data.Revision``), which ``HubApi.get_model`` / ``repo_exists`` read.
* Missing revision => ``master``. Revisions are ``master``, the tags, or a commit id from a listing.
* Errors are ``404`` JSON with ``Success: false``: unknown model (``Code`` 10010205001, "model not
  found"), unknown revision (``Code`` 10010205002), unknown file (``Code`` 10010205003).
* The ``damo/`` namespace was renamed ``iic/``: a model added as ``iic/x`` also answers as ``damo/x``
  (same files, same commits) and vice versa.

Faults (:attr:`FakeModelScope.faults`, ``{key: kind}``; key is a file path such as ``"cartoon_h.pb"``
or ``"a/b.pb"``, or ``"listing"`` / ``"revisions"`` for those endpoints):

* ``"404"``: 404 JSON error; ``"500"``: 500 with a plain-text body; ``"html"``: 200 ``text/html``
  login page (``<html><body>Please log in</body></html>``). For a file these are answered at the
  ``/repo?FilePath=`` URL itself (no redirect).
* ``"stall"``: headers (full ``Content-Length``) and half the body, then hang without closing until
  the server stops (at most 30 s); ``"truncate"``: announce the full length, send half, close;
  ``"wrong-bytes"``: same length, every byte different (a sha256 check must fail). For a file these
  happen where the bytes are served: at ``/blobs/{sha256}`` after the redirect, or at the ``/repo``
  URL with ``redirect=False``. A ranged request gets the fault applied to its slice.

Passing trouble (:meth:`FakeModelScope.queue_statuses`): the next requests to an endpoint (same
keys; a file path at its ``/repo`` URL) answer the queued statuses in turn, e.g. 503 twice, with a
JSON error body (``Success: false``) and ``Retry-After`` if given; then the endpoint answers as usual.
A queued status comes before a fault.

Every request is recorded in :attr:`FakeModelScope.requests` (method, path without query, decoded
query, headers). ``stop()`` closes open connections, so a stalled response ends promptly.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, unquote, urlsplit

FAULT_KINDS = ("404", "500", "stall", "truncate", "html", "wrong-bytes")
BYTE_FAULTS = ("stall", "truncate", "wrong-bytes")  # for files: applied where the bytes are served
LFS_SUFFIXES = (".pb", ".pth", ".pt", ".bin", ".safetensors", ".onnx", ".ckpt", ".pkl")
HTML_PAGE = b"<html><body>Please log in</body></html>"
STALL_MAX_S = 30.0
FIRST_CREATED_AT = 1_700_000_000
CODE_MODEL_NOT_FOUND = 10010205001
CODE_REVISION_NOT_FOUND = 10010205002
CODE_FILE_NOT_FOUND = 10010205003
_ALIASES = {"damo": "iic", "iic": "damo"}


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fake_commit(*parts: object) -> str:
    """A deterministic 40-hex commit id."""
    return hashlib.sha1(repr(parts).encode()).hexdigest()


def wrong_bytes(data: bytes) -> bytes:
    """Same length, every byte different."""
    return bytes(b ^ 0x5A for b in data)


@dataclass
class Request:
    method: str
    path: str  # without the query string, as sent (not percent-decoded)
    query: dict[str, str]  # decoded; the last value wins for repeated keys
    headers: dict[str, str]
    target: str = ""  # the full request target, path and query


@dataclass
class FakeModel:
    revisions: dict[str, dict[str, bytes]] = field(default_factory=dict)  # "master" and tags -> files
    commits: dict[str, str] = field(default_factory=dict)  # revision name -> 40-hex commit
    tags: list[tuple[str, int]] = field(default_factory=list)  # (tag, CreatedAt), in order added
    master_created_at: int = FIRST_CREATED_AT

    def resolve(self, revision: str) -> str | None:
        """The revision name holding the files for ``revision`` (a branch, tag or commit id)."""
        if revision in self.revisions:
            return revision
        for name, commit in self.commits.items():
            if commit == revision:
                return name
        return None


class FakeModelScope:
    """A local stand-in for modelscope.cn. Use as a context manager; ``endpoint`` is the base URL."""

    def __init__(self, redirect: bool = True) -> None:
        self.redirect = redirect
        self.models: dict[str, FakeModel] = {}
        self.blobs: dict[str, bytes] = {}
        self.blob_paths: dict[str, set[str]] = {}  # sha256 -> file paths with those bytes (for faults)
        self.faults: dict[str, str] = {}
        self.queued: dict[str, list[tuple[int, str | None]]] = {}  # key -> (status, Retry-After) to answer next
        self.requests: list[Request] = []
        self.endpoint = ""
        self._clock = FIRST_CREATED_AT
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- content ---------------------------------------------------------------------------

    def add_model(self, model_id: str, files: dict[str, bytes], tags: Iterable[str] = ("v1.0.0",)) -> None:
        """Add (or replace) a model whose ``files`` are at ``master`` and at every tag.

        Tags get increasing ``CreatedAt`` in the order given, so the last one is the newest;
        ``tags=()`` makes a repository without tags.
        """
        _split(model_id)
        with self._lock:
            model = FakeModel(master_created_at=self._tick())
            self.models[model_id] = model
            self._set_revision(model_id, model, "master", files)
            for tag in tags:
                self._add_tag(model_id, model, tag, files)

    def add_tag(self, model_id: str, tag: str, files: dict[str, bytes] | None = None) -> None:
        """Add a tag newer than every existing one. With ``files`` the tag (and ``master``, which
        follows the latest release) get those files; without, the tag has ``master``'s files."""
        with self._lock:
            key = self._lookup(model_id)
            if key is None:
                raise KeyError(f"no model {model_id!r}; add_model() first")
            model = self.models[key]
            if files is not None:
                self._set_revision(key, model, "master", files)
            self._add_tag(key, model, tag, model.revisions["master"])

    def commit(self, model_id: str, revision: str = "master") -> str:
        """The 40-hex commit id the listing reports as ``Revision`` for ``revision``."""
        with self._lock:
            key = self._lookup(model_id)
            if key is None:
                raise KeyError(model_id)
            model = self.models[key]
            return model.commits[model.resolve(revision) or revision]

    def newest_tag(self, model_id: str) -> str:
        with self._lock:
            key = self._lookup(model_id)
            if key is None:
                raise KeyError(model_id)
            return max(self.models[key].tags, key=lambda t: t[1])[0]

    def queue_statuses(self, key: str, statuses: Iterable[int], retry_after: str | None = None) -> None:
        """Answer the next requests to ``key`` (``"listing"``, ``"revisions"`` or a file path) with
        ``statuses`` in turn (and ``Retry-After: retry_after`` if given), then as usual."""
        with self._lock:
            self.queued.setdefault(key, []).extend((int(status), retry_after) for status in statuses)

    def next_queued(self, key: str | None) -> tuple[int, str | None] | None:
        """Take the next queued ``(status, Retry-After)`` of ``key``, if any."""
        with self._lock:
            queue = self.queued.get(key or "")
            return queue.pop(0) if queue else None

    def _tick(self) -> int:
        self._clock += 86_400
        return self._clock

    def _add_tag(self, model_id: str, model: FakeModel, tag: str, files: dict[str, bytes]) -> None:
        if tag == "master" or any(t == tag for t, _ in model.tags):
            raise ValueError(f"{model_id} already has revision {tag!r}")
        model.tags.append((tag, self._tick()))
        self._set_revision(model_id, model, tag, files)

    def _set_revision(self, model_id: str, model: FakeModel, revision: str, files: dict[str, bytes]) -> None:
        for path in files:
            if path.startswith("/") or path.endswith("/") or "" in path.split("/"):
                raise ValueError(f"bad file path {path!r}")
        model.revisions[revision] = dict(files)
        model.commits[revision] = fake_commit(model_id, revision, len(model.tags),
                                              sorted((k, sha256_hex(v)) for k, v in files.items()))
        for path, data in files.items():
            sha = sha256_hex(data)
            self.blobs[sha] = data
            self.blob_paths.setdefault(sha, set()).add(path)

    def _lookup(self, model_id: str) -> str | None:
        """The key under which ``model_id`` (or its damo/iic alias) was added."""
        if model_id in self.models:
            return model_id
        owner, _, name = model_id.partition("/")
        alias = f"{_ALIASES.get(owner, owner)}/{name}"
        return alias if alias in self.models else None

    # --- server ----------------------------------------------------------------------------

    def __enter__(self) -> FakeModelScope:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self._server is not None:
            return
        self._stopping.clear()
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        self._server, self._thread = server, thread
        self.endpoint = f"http://127.0.0.1:{server.server_address[1]}"

    def stop(self) -> None:
        """Stop serving; wakes stalled responses and closes every open connection."""
        self._stopping.set()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def record(self, req: Request) -> None:
        with self._lock:
            self.requests.append(req)

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]


def _split(model_id: str) -> tuple[str, str]:
    owner, sep, name = model_id.partition("/")
    if not sep or not owner or not name or "/" in name:
        raise ValueError(f"model id must be 'owner/name', got {model_id!r}")
    return owner, name


def _is_true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1", "yes")


def _handler(fake: FakeModelScope) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection: nothing lingers after stop()

        def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
            pass

        def setup(self) -> None:
            super().setup()
            with fake._lock:
                fake._connections.add(self.connection)

        def finish(self) -> None:
            with fake._lock:
                fake._connections.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def do_HEAD(self) -> None:
            self._dispatch(send_body=False)

        def do_GET(self) -> None:
            self._dispatch(send_body=True)

        # --- low-level senders ------------------------------------------------------------

        def _headers(self, status: int, headers: dict[str, str], length: int) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(length))
            self.end_headers()

        def _send(self, status: int, headers: dict[str, str], body: bytes, send_body: bool,
                  fault: str | None = None) -> None:
            """Send ``body``, applying a byte-level fault (stall / truncate / wrong-bytes) if given."""
            if fault == "wrong-bytes":
                body = wrong_bytes(body)
            self._headers(status, headers, len(body))
            if not send_body:
                return
            if fault in ("stall", "truncate"):
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                if fault == "stall":
                    fake._stopping.wait(STALL_MAX_S)
                self.close_connection = True
                return
            self.wfile.write(body)

        def _json(self, status: int, obj: dict, send_body: bool, fault: str | None = None) -> None:
            if fault in ("404", "500", "html"):
                return self._fault_answer(fault, send_body)
            body = json.dumps(obj).encode()
            self._send(status, {"Content-Type": "application/json"}, body, send_body, fault)

        def _error(self, status: int, code: int, message: str, send_body: bool) -> None:
            obj = {"Code": code, "Success": False, "Message": message, "Data": None,
                   "RequestId": fake_commit(self.path)[:32]}
            self._json(status, obj, send_body)

        def _ok(self, data: dict, send_body: bool, fault: str | None = None) -> None:
            obj = {"Code": 200, "Success": True, "Message": "success", "Data": data,
                   "RequestId": fake_commit(self.path)[:32]}
            self._json(200, obj, send_body, fault)

        def _fault_answer(self, fault: str, send_body: bool) -> None:
            """The answers of the 404 / 500 / html faults, whatever the endpoint."""
            if fault == "404":
                obj = {"Code": CODE_FILE_NOT_FOUND, "Success": False, "Message": "not found (injected fault)"}
                self._send(404, {"Content-Type": "application/json"}, json.dumps(obj).encode(), send_body)
            elif fault == "500":
                self._send(500, {"Content-Type": "text/plain; charset=utf-8"}, b"Internal Server Error", send_body)
            else:
                self._send(200, {"Content-Type": "text/html; charset=utf-8"}, HTML_PAGE, send_body)

        # --- routing -----------------------------------------------------------------------

        def _dispatch(self, send_body: bool) -> None:
            parts = urlsplit(self.path)
            query = dict(parse_qsl(parts.query, keep_blank_values=True))
            fake.record(Request(self.command, parts.path, query, dict(self.headers.items()), self.path))
            path = parts.path
            try:
                m = re.match(r"^/blobs/([0-9a-f]{64})$", path)
                if m:
                    return self._serve_blob(m[1], send_body)
                m = re.match(r"^/api/v1/models/([^/]+)/([^/]+)(/repo/files|/revisions|/repo)?/?$", path)
                if not m:
                    return self._error(404, 404, f"no route for {path}", send_body)
                model_id = f"{unquote(m[1])}/{unquote(m[2])}"
                with fake._lock:
                    key = fake._lookup(model_id)
                    model = fake.models.get(key) if key else None
                route = m[3]
                fault_key = {"/repo/files": "listing", "/revisions": "revisions"}.get(route or "")
                fault = fake.faults.get(fault_key) if fault_key else None
                queued = fake.next_queued(query.get("FilePath", "").lstrip("/") if route == "/repo" else fault_key)
                if queued:
                    return self._queued_answer(*queued, send_body)
                if fault in ("404", "500", "html"):  # injected before any lookup
                    return self._fault_answer(fault, send_body)
                if model is None:
                    return self._error(404, CODE_MODEL_NOT_FOUND, "model not found", send_body)
                if route == "/revisions":
                    return self._revisions(model, query, send_body, fault)
                revision = query.get("Revision") or "master"
                with fake._lock:
                    name = model.resolve(revision)
                if name is None:
                    return self._error(404, CODE_REVISION_NOT_FOUND,
                                       f"revision {revision} not found in model {model_id}", send_body)
                if route == "/repo/files":
                    return self._listing(model, name, query, send_body, fault)
                if route == "/repo":
                    return self._file(model, name, query, send_body)
                return self._model_info(model_id, model, name, send_body)
            except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                pass  # the client gave up, or stop() closed the socket

        def _queued_answer(self, status: int, retry_after: str | None, send_body: bool) -> None:
            obj = {"Code": status, "Success": False, "Message": f"HTTP {status} (queued)", "Data": None}
            headers = {"Content-Type": "application/json", **({"Retry-After": retry_after} if retry_after else {})}
            self._send(status, headers, json.dumps(obj).encode(), send_body)

        # --- endpoints ---------------------------------------------------------------------

        def _revisions(self, model: FakeModel, query: dict[str, str], send_body: bool,
                       fault: str | None) -> None:
            with fake._lock:
                tags = list(model.tags)
                commits = dict(model.commits)
            end = query.get("EndTime")
            if end and end.lstrip("-").isdigit():
                tags = [(t, c) for t, c in tags if c <= int(end)]
            data = {"RevisionMap": {
                "Branches": [{"Revision": "master", "CommitId": commits["master"],
                              "CreatedAt": model.master_created_at}],
                "Tags": [{"Revision": t, "CreatedAt": c, "CommitId": commits[t]}
                         for t, c in sorted(tags, key=lambda tag: -tag[1])],  # newest first
            }}
            self._ok(data, send_body, fault)

        def _listing(self, model: FakeModel, revision: str, query: dict[str, str], send_body: bool,
                     fault: str | None) -> None:
            with fake._lock:
                files = dict(model.revisions[revision])
                commit = model.commits[revision]
            root = (query.get("Root") or "").strip("/")
            recursive = _is_true(query.get("Recursive"))
            prefix = f"{root}/" if root else ""
            folders: set[str] = set()
            entries = []
            for path in sorted(files):
                if not path.startswith(prefix):
                    continue
                rel_parts = path[len(prefix):].split("/")
                for i in range(1, len(rel_parts)):  # every folder above the file, under root
                    folders.add(prefix + "/".join(rel_parts[:i]))
                if not recursive and len(rel_parts) > 1:
                    continue
                data = files[path]
                entries.append({"Path": path, "Name": path.rsplit("/", 1)[-1], "Type": "blob",
                                "Size": len(data), "Sha256": sha256_hex(data), "Revision": commit,
                                "Mode": "33188", "IsLFS": path.endswith(LFS_SUFFIXES)})
            if not recursive:
                folders = {f for f in folders if "/" not in f[len(prefix):]}
            trees = [{"Path": f, "Name": f.rsplit("/", 1)[-1], "Type": "tree", "Size": 0, "Sha256": "",
                      "Revision": commit, "Mode": "16384", "IsLFS": False} for f in sorted(folders)]
            self._ok({"Files": trees + entries}, send_body, fault)

        def _file(self, model: FakeModel, revision: str, query: dict[str, str], send_body: bool) -> None:
            file_path = query.get("FilePath", "").lstrip("/")
            with fake._lock:
                data = model.revisions[revision].get(file_path)
            fault = fake.faults.get(file_path)
            if fault in ("404", "500", "html"):
                return self._fault_answer(fault, send_body)
            if data is None:
                return self._error(404, CODE_FILE_NOT_FOUND,
                                   f"file {file_path} not found at revision {revision}", send_body)
            if fake.redirect:
                location = f"{fake.endpoint}/blobs/{sha256_hex(data)}"
                return self._send(302, {"Location": location, "Content-Type": "text/plain; charset=utf-8"},
                                  b"Found. Redirecting", send_body)
            self._bytes(data, send_body, fault)

        def _serve_blob(self, sha: str, send_body: bool) -> None:
            with fake._lock:
                data = fake.blobs.get(sha)
                paths = sorted(fake.blob_paths.get(sha, ()))
            if data is None:
                return self._send(404, {"Content-Type": "text/plain; charset=utf-8"}, b"NoSuchKey", send_body)
            faults = [fake.faults[p] for p in paths if fake.faults.get(p) in BYTE_FAULTS]
            self._bytes(data, send_body, faults[0] if faults else None)

        def _model_info(self, model_id: str, model: FakeModel, revision: str, send_body: bool) -> None:
            owner, name = _split(model_id)
            with fake._lock:
                commit = model.commits[revision]
            self._ok({"Path": owner, "Name": name, "Revision": revision, "CommitId": commit,
                      "Id": int(commit[:8], 16)}, send_body)

        def _bytes(self, data: bytes, send_body: bool, fault: str | None) -> None:
            """Serve file bytes, honouring ``Range: bytes=N-`` / ``bytes=N-M``."""
            total = len(data)
            headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes",
                       "ETag": f'"{sha256_hex(data)}"'}
            rng = self.headers.get("Range")
            m = re.fullmatch(r"\s*bytes=(\d+)-(\d*)\s*", rng or "")
            if rng and m:
                start = int(m[1])
                end = min(int(m[2]), total - 1) if m[2] else total - 1
                if start >= total or end < start:
                    return self._send(416, {"Content-Range": f"bytes */{total}"}, b"", send_body)
                headers["Content-Range"] = f"bytes {start}-{end}/{total}"
                body = (wrong_bytes(data) if fault == "wrong-bytes" else data)[start:end + 1]
                return self._send(206, headers, body, send_body, None if fault == "wrong-bytes" else fault)
            self._send(200, headers, data, send_body, fault)

    return Handler
