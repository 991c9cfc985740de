"""A local stand-in for GitHub's file hosts, with no network (``http.server`` in a thread on 127.0.0.1).

It answers the two ways public files are fetched from GitHub:

* raw files of a repository at a commit, as ``raw.githubusercontent.com`` does:
  ``GET {url}/{owner}/{repo}/{commit}/{path}`` -> ``200`` with the bytes
  (``application/octet-stream``), or ``404`` with the text ``404: Not Found``;
* release assets, as ``github.com`` does: ``GET {url}/{owner}/{repo}/releases/download/{tag}/{name}``
  -> ``302`` to ``{url}/assets/{sha256}`` (GitHub sends a signed storage URL), which answers the bytes.

:attr:`FakeGitHub.status` makes a path answer an HTTP error instead (e.g. ``{path: 503}``); every
request path is recorded in :attr:`FakeGitHub.requests`.
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeGitHub:
    """Use as a context manager; ``url`` is the base URL of both hosts."""

    def __init__(self) -> None:
        #: ``"{owner}/{repo}/{commit}/{path}"`` -> bytes.
        self.raw: dict[str, bytes] = {}
        #: ``"{owner}/{repo}/releases/download/{tag}/{name}"`` -> bytes.
        self.releases: dict[str, bytes] = {}
        #: request path (without the leading ``/``) -> HTTP status to answer instead.
        self.status: dict[str, int] = {}
        self.requests: list[str] = []
        self.url = ""
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def add_file(self, repo: str, commit: str, path: str, data: bytes) -> str:
        """Serve ``data`` as ``path`` of ``repo`` (``owner/name``) at ``commit``; returns its raw URL."""
        self.raw[f"{repo}/{commit}/{path}"] = data
        return f"{self.url}/{repo}/{commit}/{path}"

    def add_release_asset(self, repo: str, tag: str, name: str, data: bytes) -> str:
        """Serve ``data`` as the asset ``name`` of ``repo``'s release ``tag``; returns its URL."""
        self.releases[f"{repo}/releases/download/{tag}/{name}"] = data
        return f"{self.url}/{repo}/releases/download/{tag}/{name}"

    def __enter__(self) -> FakeGitHub:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _handler(github: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _send(self, status: int, data: bytes, content_type: str, location: str | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            if location:
                self.send_header("Location", location)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            path = self.path.lstrip("/").split("?", 1)[0]
            github.requests.append(path)
            assets = {hashlib.sha256(d).hexdigest(): d for d in github.releases.values()}
            if path in github.status:
                self._send(github.status[path], b"error", "text/plain; charset=utf-8")
            elif path in github.raw:
                self._send(200, github.raw[path], "application/octet-stream")
            elif path in github.releases:
                digest = hashlib.sha256(github.releases[path]).hexdigest()
                self._send(302, b"", "text/html; charset=utf-8", f"{github.url}/assets/{digest}")
            elif path.startswith("assets/") and path[len("assets/"):] in assets:
                self._send(200, assets[path[len("assets/"):]], "application/octet-stream")
            else:
                self._send(404, b"404: Not Found", "text/plain; charset=utf-8")

    return Handler
