"""Downloading one file over HTTP(S): streamed, resumable, bounded in time, verified by sha256.

Used by the sources that are not the Hugging Face Hub (ModelScope, fixed URLs, git repositories;
see :mod:`portrait_stylize.loading`), the metric weights and the facexlib face backend's weights.
A file is written to ``DEST.part`` and renamed to ``DEST`` only after its size and sha256 check
out, so a partial or wrong download is never taken for a good one; a ``.part`` left by an
interrupted run is resumed with an HTTP ``Range`` request.

:data:`STALL_S` is the stall limit of these downloads and of the Hub's
(:mod:`portrait_stylize.sources.hub`), with the errors for servers that cannot be reached or stay
silent.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
from tqdm.auto import tqdm

from ..errors import ChecksumMismatchError, StyleDownloadError, StyleNotCachedError
from ..version import __version__
from .files import sha256_file
from .offline import OFFLINE_VARIABLES, is_offline

#: Seconds a server may stay silent (to accept the connection, to answer, between two chunks of a
#: body) before a download gives up: the "30 s without data" of docs/reliability.md. Read at every
#: call, so that tests can lower it.
STALL_S = 30.0
USER_AGENT = f"portrait-stylize/{__version__}"
#: How often a body that broke off is resumed before giving up.
RETRIES = 2
_CHUNK = 1 << 20
#: The last advice of a failed style download's message.
STYLE_FALLBACK = "use a built-in style such as 'toon'"


class _Incomplete(Exception):
    """The body ended before its announced length."""


def client() -> httpx.Client:
    """An HTTP client that follows redirects, gives up after :data:`STALL_S` of silence and names this library."""
    return httpx.Client(follow_redirects=True, timeout=httpx.Timeout(STALL_S), headers={"User-Agent": USER_AGENT})


def unreachable(label: str, url: str, exc: Exception, fallback: str = STYLE_FALLBACK) -> StyleNotCachedError:
    """The error for a server that cannot be reached (no network, DNS, refused); ``fallback`` is
    the last advice."""
    return StyleNotCachedError(f"{label}: cannot reach {url} ({type(exc).__name__}: {exc}). Connect to the "
                               f"internet and try again, or {fallback}.")


def bad_address(label: str, url: str, exc: Exception) -> StyleDownloadError:
    """The error for an address that is no http(s) URL (a mistyped server variable, usually)."""
    return StyleDownloadError(f"{label}: {url!r} is not a usable http(s) address ({exc}); check the server "
                              "address you set (HF_ENDPOINT, MODELSCOPE_ENDPOINT or MODELSCOPE_DOMAIN, "
                              "PORTRAIT_STYLIZE_GITHUB_RAW)")


def stalled(label: str, url: str, fallback: str = STYLE_FALLBACK) -> StyleNotCachedError:
    """The error for a server that stayed silent for :data:`STALL_S` (a hung server, a proxy or
    firewall that swallows requests); ``fallback`` is the last advice."""
    return StyleNotCachedError(
        f"{label}: cannot reach {url}: the server did not answer within {STALL_S:g} s. Check the network "
        "connection (a proxy or firewall?) and the server address (HF_ENDPOINT for the Hub, MODELSCOPE_ENDPOINT "
        "or MODELSCOPE_DOMAIN for ModelScope, where set); or download it where the network works, copy the "
        f"cache ($HF_HOME) here and work offline (HF_HUB_OFFLINE=1); or {fallback}.")


def download(url: str, dest: str | os.PathLike, *, sha256: str | None = None, size: int | None = None,
             label: str = "download", progress: bool = True, http: httpx.Client | None = None,
             fallback: str = STYLE_FALLBACK, max_size: int | None = None) -> Path:
    """Fetch ``url`` into ``dest`` and return ``dest``.

    Args:
        sha256: expected hex digest; a mismatch raises :class:`ChecksumMismatchError` and leaves
            nothing behind.
        size: expected size in bytes (e.g. from a listing), checked as well.
        label: names what is downloaded in messages (e.g. ``"style 'anime'"``).
        progress: show a tqdm bar (the web app follows tqdm bars too).
        http: a client to reuse (default: a new :func:`client`).
        fallback: the last advice of an unreachable or silent server's message.
        max_size: the most bytes accepted where the size is not known in advance (a body that
            announces or sends more is refused at once, so a wrong file cannot fill the disk).

    Raises:
        StyleNotCachedError: offline, or the server cannot be reached or stays silent for :data:`STALL_S`.
        StyleDownloadError: an HTTP error, a body shorter than announced or longer than
            ``max_size``, or an HTML page where a file was expected.
        ChecksumMismatchError: the bytes differ from ``sha256``.
    """
    dest = Path(dest)
    if is_offline():
        raise StyleNotCachedError(f"{label}: {dest.name} is not cached and offline mode is on "
                                  f"({' or '.join(OFFLINE_VARIABLES)}); unset it once to download {url}")
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    own = http is None
    http = http or client()
    try:
        _stream_with_retries(http, url, part, label, progress, fallback, max_size)
    except BaseException:
        part.unlink(missing_ok=True)  # nothing half-downloaded is left behind
        raise
    finally:
        if own:
            http.close()
    actual_size = part.stat().st_size
    actual = sha256_file(part)
    if (size is not None and actual_size != size) or (sha256 is not None and actual != sha256):
        part.unlink(missing_ok=True)
        expected = f"sha256 {sha256}" if sha256 else f"{size} bytes"
        raise ChecksumMismatchError(f"{label}: {url} gave {actual_size} bytes with sha256 {actual}, but {expected} "
                                    "was expected. Nothing was kept; try again, and if it persists the source or "
                                    "the registry entry is wrong.")
    os.replace(part, dest)
    return dest


def _stream_with_retries(http: httpx.Client, url: str, part: Path, label: str, progress: bool, fallback: str,
                         max_size: int | None) -> None:
    """:func:`_stream`, resuming a body that broke off (HTTP ``Range``) up to :data:`RETRIES` times,
    with our errors for the network's."""
    for attempt in range(1 + RETRIES):
        try:
            return _stream(http, url, part, label, progress, max_size)
        except (httpx.RemoteProtocolError, httpx.ReadError, _Incomplete) as exc:
            if attempt == RETRIES:
                raise StyleDownloadError(f"{label}: the download of {url} broke off {RETRIES + 1} times "
                                         f"({exc}); try again later") from None
        except httpx.TimeoutException:  # silent to the connection, the request or within the body
            raise stalled(label, url, fallback) from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise bad_address(label, url, exc) from None
        except httpx.TransportError as exc:  # refused, DNS
            raise unreachable(label, url, exc, fallback) from None
        except (httpx.TooManyRedirects, httpx.DecodingError) as exc:
            raise StyleDownloadError(f"{label}: the download of {url} failed ({type(exc).__name__}: {exc}); "
                                     "try again later, and check the server address if it persists") from None


def _too_large(label: str, url: str, max_size: int) -> StyleDownloadError:
    return StyleDownloadError(f"{label}: {url} is larger than the {max_size:,} bytes expected at most for it; "
                              "nothing was kept (is the address or the registry entry wrong?)")


def _stream(http: httpx.Client, url: str, part: Path, label: str, progress: bool, max_size: int | None) -> None:
    """Append ``url``'s body to ``part`` (resuming from its size with ``Range``)."""
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with http.stream("GET", url, headers=headers) as response:
        if response.status_code == 416 and offset:  # the partial file is already complete (or wrong)
            part.unlink(missing_ok=True)
            return _stream(http, url, part, label, progress, max_size)
        if response.status_code >= 400:
            raise StyleDownloadError(f"{label}: {url} answered HTTP {response.status_code} "
                                     f"{response.reason_phrase}; the file or revision may not exist")
        if "text/html" in response.headers.get("content-type", ""):
            raise StyleDownloadError(f"{label}: {url} sent a web page instead of the file (a login or error "
                                     "page?); check the address, or download it in a browser to see why")
        resumed = response.status_code == 206
        total = int(response.headers.get("content-length", 0)) + (offset if resumed else 0) or None
        if max_size is not None and (total or 0) > max_size:
            raise _too_large(label, url, max_size)
        with open(part, "ab" if resumed else "wb") as fh, \
                tqdm(total=total, initial=offset if resumed else 0, unit="B", unit_scale=True,
                     desc=f"{label}: {url.rsplit('/', 1)[-1][:40]}", disable=not progress, leave=False) as bar:
            for chunk in response.iter_bytes(_CHUNK):
                fh.write(chunk)
                bar.update(len(chunk))
                if max_size is not None and fh.tell() > max_size:
                    raise _too_large(label, url, max_size)
        if total is not None and part.stat().st_size < total:
            raise _Incomplete(f"{part.stat().st_size} of {total} bytes")
