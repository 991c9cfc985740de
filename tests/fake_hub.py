"""Test helpers that imitate the Hugging Face Hub without any network.

Two tools:

* :func:`seed_hub_cache` lays files out in a private ``HF_HUB_CACHE`` exactly like
  ``huggingface_hub`` does after a download (``blobs/``, ``snapshots/<commit>/`` relative symlinks,
  ``refs/<branch>``), so the library's offline code path finds them.
* :class:`FakeHub` is a tiny HTTP server (``http.server`` in a thread on 127.0.0.1) that answers
  the requests ``hf_hub_download`` makes, the way huggingface.co does:

  - ``HEAD/GET {endpoint}/{org}/{name}/resolve/{revision}/{path}``
      * LFS files (``*.safetensors``, ``*.bin``, ...): ``302`` to a signed URL on a separate "CDN"
        server (another port, hence another origin, so the client stops at the redirect and reads
        the metadata from it) with ``X-Repo-Commit``, ``X-Linked-Etag: "<sha256>"``,
        ``X-Linked-Size`` and ``Location``.
      * regular files (``config.json``): for a commit id, ``200`` with ``X-Repo-Commit``,
        ``ETag: "<git blob sha1>"`` and ``Content-Length``; for a branch, first a relative ``307``
        to ``/api/resolve-cache/models/{repo}/{commit}/{path}`` (as the Hub does), which answers
        the same way.
      * errors: ``404`` with ``X-Error-Code`` ``RepoNotFound`` / ``RevisionNotFound`` /
        ``EntryNotFound`` (the latter with ``X-Repo-Commit``).
  - ``HEAD/GET {cdn}/blobs/{sha256}?...``: the bytes; for a blob in :attr:`FakeHub.stalled_blobs`,
    ``200`` with the full ``Content-Length`` and half the bytes, then nothing until the server stops;
    the same headers and no bytes at all to every later request for it (a server stuck for good).

  No ``X-Xet-*`` header is ever sent, so the Xet download path is never taken. Every request is
  recorded in :attr:`FakeHub.requests` for assertions.

For the stall limit of every network path there are also :class:`SilentServer` (accepts
connections, never sends a byte) and :func:`outcome_within` (runs a call that must end in time).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".pkl", ".onnx")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
#: The longest a stalled response hangs when nothing stops the server.
STALL_MAX_S = 30.0


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a file, which the Hub uses as the ETag of non-LFS files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def is_lfs(filename: str) -> bool:
    return filename.endswith(LFS_SUFFIXES)


def blob_id(filename: str, data: bytes) -> str:
    """Name of the file's blob in the Hub cache: sha256 for LFS files, git sha1 otherwise."""
    return sha256_hex(data) if is_lfs(filename) else git_blob_sha1(data)


def fake_commit(*parts: object) -> str:
    """A deterministic 40-hex commit id."""
    return hashlib.sha1(repr(parts).encode()).hexdigest()


def repo_cache_dir(cache: str | os.PathLike, repo_id: str) -> Path:
    return Path(cache) / ("models--" + repo_id.replace("/", "--"))


def seed_hub_cache(cache: str | os.PathLike, repo_id: str, files: dict[str, bytes], commit: str,
                   branch: str | None = "main") -> Path:
    """Write ``files`` into the Hub cache layout for ``repo_id`` at ``commit``.

    Returns the snapshot folder. ``refs/<branch>`` holds the commit id (no newline, like the Hub).
    """
    assert _COMMIT.match(commit), commit
    repo = repo_cache_dir(cache, repo_id)
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for filename, data in files.items():
        bid = blob_id(filename, data)
        (repo / "blobs" / bid).write_bytes(data)
        pointer = snapshot / filename
        pointer.parent.mkdir(parents=True, exist_ok=True)
        depth = len(Path(filename).parts)  # nested files need one more ../ per folder
        pointer.symlink_to(Path(*([".."] * (depth + 1)), "blobs", bid))
    if branch is not None:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / branch).write_text(commit)
    return snapshot


@dataclass
class FakeRepo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        if revision in self.refs:
            return self.refs[revision]
        if revision in self.commits:
            return revision
        return None


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    server: str  # "hub" or "cdn"


class FakeHub:
    """A local stand-in for huggingface.co. Use as a context manager; ``endpoint`` is the base URL."""

    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.blobs: dict[str, bytes] = {}
        #: sha256 of the blobs whose download stalls halfway (see the module docstring).
        self.stalled_blobs: set[str] = set()
        self._half_sent: set[str] = set()
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._servers: list[ThreadingHTTPServer] = []
        self._threads: list[threading.Thread] = []
        self.endpoint = ""
        self.cdn = ""

    # --- content ---------------------------------------------------------------------------

    def add_repo(self, repo_id: str, files: dict[str, bytes], branch: str = "main") -> str:
        """Add (or add a commit to) a model repo; returns the new commit id, which ``branch`` now names."""
        repo = self.repos.setdefault(repo_id, FakeRepo())
        commit = fake_commit(repo_id, len(repo.commits), sorted((k, sha256_hex(v)) for k, v in files.items()))
        repo.commits[commit] = dict(files)
        repo.refs[branch] = commit
        for name, data in files.items():
            if is_lfs(name):
                self.blobs[sha256_hex(data)] = data
        return commit

    # --- server ----------------------------------------------------------------------------

    def __enter__(self) -> FakeHub:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._stopping.clear()
        hub_server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, "hub"))
        cdn_server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, "cdn"))
        for server in (hub_server, cdn_server):
            server.daemon_threads = True
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        self.endpoint = f"http://127.0.0.1:{hub_server.server_address[1]}"
        self.cdn = f"http://127.0.0.1:{cdn_server.server_address[1]}"

    def stop(self) -> None:
        self._stopping.set()  # stalled responses end
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()

    def record(self, req: Request) -> None:
        with self._lock:
            self.requests.append(req)

    def paths(self, server: str | None = None) -> list[str]:
        return [r.path for r in self.requests if server is None or r.server == server]


def _handler(hub: FakeHub, role: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection: nothing lingers after stop()

        def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
            pass

        def do_HEAD(self) -> None:
            self._dispatch(send_body=False)

        def do_GET(self) -> None:
            self._dispatch(send_body=True)

        # --- helpers -------------------------------------------------------------------

        def _send(self, status: int, headers: dict[str, str], body: bytes, send_body: bool) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if send_body:
                self.wfile.write(body)

        def _stall(self, sha256: str, data: bytes) -> None:
            """Announce all of ``data``, send half of it the first time, then hang."""
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            with hub._lock:
                first = sha256 not in hub._half_sent
                hub._half_sent.add(sha256)
            if first:
                self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            hub._stopping.wait(STALL_MAX_S)
            self.close_connection = True

        def _error(self, status: int, code: str, message: str, send_body: bool,
                   extra: dict[str, str] | None = None) -> None:
            body = json.dumps({"error": message}).encode()
            headers = {"Content-Type": "application/json", "X-Error-Code": code, "X-Error-Message": message}
            self._send(status, {**headers, **(extra or {})}, body, send_body)

        def _dispatch(self, send_body: bool) -> None:
            hub.record(Request(self.command, self.path, dict(self.headers.items()), role))
            path = urlsplit(self.path).path
            if role == "cdn":
                return self._serve_cdn(path, send_body)
            m = re.match(r"^/api/resolve-cache/models/([^/]+/[^/]+)/([0-9a-f]{40})/(.+)$", path)
            if m:
                return self._serve_file(unquote(m[1]), m[2], unquote(m[3]), send_body, cached_route=True)
            m = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
            if m:
                return self._serve_file(unquote(m[1]), unquote(m[2]), unquote(m[3]), send_body, cached_route=False)
            self._error(404, "NotFound", f"no route for {path}", send_body)

        def _serve_cdn(self, path: str, send_body: bool) -> None:
            m = re.match(r"^/blobs/([0-9a-f]{64})$", path)
            data = hub.blobs.get(m[1]) if m else None
            if data is None:
                return self._send(403, {"Content-Type": "text/plain"}, b"AccessDenied", send_body)
            if send_body and m[1] in hub.stalled_blobs:
                return self._stall(m[1], data)
            self._send(200, {"Content-Type": "application/octet-stream", "ETag": f'"{m[1]}"'}, data, send_body)

        def _serve_file(self, repo_id: str, revision: str, filename: str, send_body: bool,
                        cached_route: bool) -> None:
            repo = hub.repos.get(repo_id)
            if repo is None:
                return self._error(404, "RepoNotFound", "Repository not found", send_body)
            commit = repo.resolve(revision)
            if commit is None:
                return self._error(404, "RevisionNotFound", "Invalid rev id: " + revision, send_body)
            files = repo.commits[commit]
            commit_header = {"X-Repo-Commit": commit}
            if filename not in files:
                return self._error(404, "EntryNotFound", f"{filename} does not exist on \"{revision}\"",
                                   send_body, commit_header)
            data = files[filename]
            if is_lfs(filename):
                sha = sha256_hex(data)
                headers = {
                    **commit_header,
                    "X-Linked-Etag": f'"{sha}"',
                    "X-Linked-Size": str(len(data)),
                    "ETag": f'"{git_blob_sha1(b"version https://git-lfs.github.com/spec/v1")}"',
                    "Location": f"{hub.cdn}/blobs/{sha}?X-Amz-Signature=fake&filename={quote(filename)}",
                    "Content-Type": "text/plain; charset=utf-8",
                }
                return self._send(302, headers, b"Found. Redirecting", send_body)
            if not cached_route and not _COMMIT.match(revision):
                location = f"/api/resolve-cache/models/{repo_id}/{commit}/{quote(filename)}"
                return self._send(307, {**commit_header, "Location": location}, b"", send_body)
            headers = {**commit_header, "ETag": f'"{git_blob_sha1(data)}"', "Content-Type": "text/plain; charset=utf-8"}
            self._send(200, headers, data, send_body)

    return Handler


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts every connection and never sends a byte, as a hung
    server or a proxy that swallows requests does. Use as a context manager: ``url`` is its
    address, :attr:`accepted` counts the connections, leaving closes them all."""

    def __init__(self) -> None:
        self.url = ""
        self.accepted = 0
        self._listener: socket.socket | None = None
        self._connections: list[socket.socket] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> SilentServer:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)  # accept() wakes up to see the server stop
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()
        return self

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            self._connections.append(connection)
            self.accepted += 1

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        for connection in [*self._connections, self._listener]:
            connection.close()


def outcome_within(limit_s: float, call: Callable[[], object]) -> tuple[BaseException | None, float]:
    """``(the exception call() raised, or None; the seconds it took)``. The call runs in a daemon
    thread, and the test fails once ``limit_s`` has passed without an end: a client that ignores
    its stall limit would hold the test run for minutes."""
    result: dict[str, object] = {}

    def run() -> None:
        start = time.monotonic()
        try:
            call()
        except BaseException as exc:  # handed to the test
            result["error"] = exc
        result["elapsed"] = time.monotonic() - start

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit_s)
    assert not thread.is_alive(), f"still waiting after {limit_s} s"
    return result.get("error"), result["elapsed"]
