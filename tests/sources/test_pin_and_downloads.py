"""``portrait-stylize pin``, the ModelScope client (default revision, endpoint choice, retries) and
the downloader, against the local fake ModelScope server (and a server that never answers, for the
stall limit)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from portrait_stylize.cli import main
from portrait_stylize.common import downloads
from portrait_stylize.errors import ChecksumMismatchError, StyleDownloadError, StyleNotCachedError
from portrait_stylize.sources import modelscope

from fake_hub import SilentServer, outcome_within
from fake_modelscope import FakeModelScope, sha256_hex

REFUSED = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused
FILES = {"cartoon_h.pb": b"head graph " * 100, "cartoon_bg.pb": b"bg graph " * 90, "alpha.jpg": b"mask" * 10}
ENTRY = {"kind": "modelscope", "model_id": "iic/cv_test", "files": {"head": ["cartoon_anime_h.pb", "cartoon_h.pb"],
         "bg": ["cartoon_bg.pb"], "alpha": ["alpha.jpg"]}, "licence": "apache-2.0", "description": "test"}


@pytest.fixture(autouse=True)
def fresh_client(monkeypatch):
    """No ModelScope variable of the user's, no site choice left by another test, fast backoff."""
    for variable in modelscope.ENV_ENDPOINTS:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(modelscope, "_international", threading.Event())
    monkeypatch.setattr(modelscope, "BACKOFF_S", 0.05)


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("PORTRAIT_STYLIZE_OFFLINE", raising=False)
    with FakeModelScope() as server:
        monkeypatch.setenv("MODELSCOPE_DOMAIN", server.endpoint)
        yield server


def paths(server: FakeModelScope, suffix: str) -> list[str]:
    return [r.path for r in server.requests if r.path.endswith(suffix)]


class TestPin:
    def test_fills_the_newest_tag_and_every_files_sha256(self, fake, tmp_path, capsys):
        fake.add_model("iic/cv_test", FILES, tags=["v1.0.0"])
        newer = {**FILES, "cartoon_h.pb": b"newer head " * 50}
        fake.add_tag("iic/cv_test", "v1.0.1", newer)
        registry = tmp_path / "registry.json"
        registry.write_text(json.dumps({"format_version": 1, "styles": {"anime": ENTRY, "other": {
            "kind": "builtin", "builtin": "toon", "licence": "mit"}}}))
        assert main(["pin", "anime", "--registry", str(registry)]) == 0
        entry = json.loads(registry.read_text())["styles"]["anime"]
        assert entry["revision"] == "v1.0.1"
        assert entry["file_sha256"] == {name: sha256_hex(data) for name, data in newer.items()}
        assert entry["files"] == ENTRY["files"] and "other" in json.loads(registry.read_text())["styles"]
        assert "anime: iic/cv_test at v1.0.1" in capsys.readouterr().out

    def test_a_repository_without_tags_is_pinned_to_master_with_its_hashes(self, fake, tmp_path, capsys):
        fake.add_model("iic/cv_test", FILES, tags=())
        registry = tmp_path / "registry.json"
        registry.write_text(json.dumps({"format_version": 1, "styles": {"anime": ENTRY}}))
        assert main(["pin", "anime", "--registry", str(registry)]) == 0
        entry = json.loads(registry.read_text())["styles"]["anime"]
        assert entry["revision"] == "master"
        assert entry["file_sha256"] == {name: sha256_hex(data) for name, data in FILES.items()}
        assert [r.query["Revision"] for r in fake.requests if r.path.endswith("/repo/files")] == ["master"]
        assert "anime: iic/cv_test at master" in capsys.readouterr().out

    def test_unknown_name_and_wrong_kind_are_one_line_errors(self, fake, tmp_path, capsys):
        registry = tmp_path / "registry.json"
        registry.write_text(json.dumps({"styles": {"toon2": {"kind": "builtin", "builtin": "toon", "licence": "mit"}}}))
        before = registry.read_bytes()
        assert main(["pin", "nope", "--registry", str(registry)]) == 2
        assert main(["pin", "toon2", "--registry", str(registry)]) == 2
        err = capsys.readouterr().err.splitlines()
        assert "no style named 'nope'" in err[0] and "only modelscope entries are pinned" in err[1]
        assert registry.read_bytes() == before


class TestDownload:
    def test_resumes_a_broken_body_with_range(self, fake, tmp_path, monkeypatch):
        data = bytes(range(256)) * 400
        fake.add_model("iic/cv_test", {"cartoon_h.pb": data})
        calls = {"n": 0}
        real = downloads._stream

        def break_first(http, url, part, *rest):
            calls["n"] += 1
            if calls["n"] == 1:  # the first attempt stops after a few bytes, as a dropped connection does
                part.write_bytes(data[:1000])
                raise downloads._Incomplete("1000 bytes")
            return real(http, url, part, *rest)

        monkeypatch.setattr(downloads, "_stream", break_first)
        from portrait_stylize.sources import modelscope

        url = modelscope.file_url("iic/cv_test", "v1.0.0", "cartoon_h.pb")
        out = downloads.download(url, tmp_path / "x.pb", sha256=sha256_hex(data), progress=False)
        assert out.read_bytes() == data and calls["n"] == 2
        assert any(r.headers.get("Range") == "bytes=1000-" for r in fake.requests)
        assert not (tmp_path / "x.pb.part").exists()

    @pytest.mark.parametrize("fault,error", [("404", StyleDownloadError), ("html", StyleDownloadError),
                                             ("wrong-bytes", ChecksumMismatchError), ("truncate", StyleDownloadError)])
    def test_faults_leave_nothing(self, fake, tmp_path, fault, error):
        fake.add_model("iic/cv_test", FILES)
        fake.faults["cartoon_h.pb"] = fault
        from portrait_stylize.sources import modelscope

        url = modelscope.file_url("iic/cv_test", "v1.0.0", "cartoon_h.pb")
        with pytest.raises(error, match="style 'x'"):
            downloads.download(url, tmp_path / "x.pb", sha256=sha256_hex(FILES["cartoon_h.pb"]), label="style 'x'",
                               progress=False)
        assert list(tmp_path.iterdir()) == []

    @pytest.mark.parametrize("url", ["http://[::1/x", "ftp://example.org/x", "example.org/x"])
    def test_a_malformed_address_is_a_clear_error(self, tmp_path, monkeypatch, url):
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        with pytest.raises(StyleDownloadError, match="is not a usable http\\(s\\) address"):
            downloads.download(url, tmp_path / "x", label="style 'x'", progress=False)
        assert list(tmp_path.iterdir()) == []

    def test_a_body_longer_than_max_size_is_cut_off_while_it_streams(self, tmp_path, monkeypatch):
        """No Content-Length (a body that ends when the connection closes): counted as it comes."""
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Endless(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                try:
                    for _ in range(64):
                        self.wfile.write(b"x" * 65536)
                except OSError:  # the client hung up, as it should
                    pass

        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        server = ThreadingHTTPServer(("127.0.0.1", 0), Endless)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            with pytest.raises(StyleDownloadError, match="larger than the 100,000 bytes expected at most"):
                downloads.download(f"http://127.0.0.1:{server.server_address[1]}/x", tmp_path / "x",
                                   label="style 'x'", progress=False, max_size=100_000)
        finally:
            server.shutdown()
            server.server_close()
        assert list(tmp_path.iterdir()) == []

    def test_offline_and_unreachable(self, tmp_path, monkeypatch):
        monkeypatch.setenv("PORTRAIT_STYLIZE_OFFLINE", "1")
        with pytest.raises(StyleNotCachedError, match="offline mode is on"):
            downloads.download("http://127.0.0.1:9/x", tmp_path / "x", label="style 'x'")
        monkeypatch.delenv("PORTRAIT_STYLIZE_OFFLINE")
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        with pytest.raises(StyleNotCachedError, match="cannot reach http://127.0.0.1:9/x"):
            downloads.download("http://127.0.0.1:9/x", tmp_path / "x", label="style 'x'", progress=False)
        assert list(tmp_path.iterdir()) == []


class TestStallLimit:
    """Servers that accept the connection and then send nothing, before or within a body: each
    request ends after the stall limit (lowered here from 30 s), says so and leaves no file."""

    STALL_S = 1.5
    SLACK_S = 2.5  # a busy test machine
    CALLS = {
        "file": lambda dest: downloads.download(modelscope.file_url("iic/cv_test", "v1.0.0", "cartoon_h.pb"), dest,
                                                sha256=sha256_hex(FILES["cartoon_h.pb"]), label="style 'x'",
                                                progress=False),
        "listing": lambda dest: modelscope.list_files("iic/cv_test", "v1.0.0", "style 'x'"),
        "tags": lambda dest: modelscope.default_revision("iic/cv_test", "style 'x'"),
    }

    @pytest.fixture(autouse=True)
    def stall_limit(self, monkeypatch):
        monkeypatch.setattr(downloads, "STALL_S", self.STALL_S)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def check(self, error, elapsed, folder):
        assert isinstance(error, StyleNotCachedError), repr(error)
        assert "style 'x': cannot reach " in str(error) and "the server did not answer within 1.5 s" in str(error)
        assert "HF_HUB_OFFLINE=1" in str(error) and "MODELSCOPE_DOMAIN" in str(error)
        assert self.STALL_S <= elapsed < self.STALL_S + self.SLACK_S, elapsed
        assert list(folder.iterdir()) == []  # no DEST.part, no DEST

    @pytest.mark.parametrize("call", CALLS)
    def test_silent_server(self, tmp_path, monkeypatch, call):
        with SilentServer() as silent:
            monkeypatch.setenv("MODELSCOPE_DOMAIN", silent.url)
            error, elapsed = outcome_within(60, lambda: self.CALLS[call](tmp_path / "x.pb"))
        self.check(error, elapsed, tmp_path)
        assert f"cannot reach {silent.url}/api/v1/models/iic/cv_test" in str(error)
        assert silent.accepted == 1  # given up, not retried

    @pytest.mark.parametrize("call,fault_key", [("file", "cartoon_h.pb"), ("listing", "listing"),
                                                ("tags", "revisions")])
    def test_server_stalling_mid_body(self, fake, tmp_path, call, fault_key):
        fake.add_model("iic/cv_test", FILES)
        fake.faults[fault_key] = "stall"  # headers with the full length, half the body, then nothing
        error, elapsed = outcome_within(60, lambda: self.CALLS[call](tmp_path / "x.pb"))
        self.check(error, elapsed, tmp_path)


class TestDefaultRevision:
    def test_newest_tag_by_created_at(self, fake):
        fake.add_model("iic/cv_test", FILES, tags=["v1.0.0", "v1.1.0"])
        fake.add_tag("iic/cv_test", "v2.0.0")
        assert modelscope.default_revision("iic/cv_test", "style 'x'") == "v2.0.0"
        assert paths(fake, "/revisions") == ["/api/v1/models/iic/cv_test/revisions"]

    def test_a_repository_without_tags_takes_master(self, fake):
        fake.add_model("iic/cv_test", FILES, tags=())
        assert modelscope.default_revision("iic/cv_test", "style 'x'") == "master"
        _, files = modelscope.list_files("iic/cv_test", "master", "style 'x'")
        assert sorted(f.path for f in files) == sorted(FILES)

    @pytest.mark.parametrize("tags,expected", [
        ([{"Revision": "old", "CreatedAt": 1_600_000_000}, {"Revision": "new", "CreatedAt": 1_700_000_000}], "new"),
        ([{"Revision": "new", "CreatedAt": "1700000000"}, {"Revision": "old", "CreatedAt": 1_600_000_000}], "new"),
        ([{"Revision": "ms", "CreatedAt": 1_700_000_000_000}, {"Revision": "s", "CreatedAt": 1_650_000_000}], "ms"),
        ([{"Revision": "first"}, {"Revision": "second", "CreatedAt": 1_700_000_000}], "first"),
        ([{"Revision": "a", "CreatedAt": 5}, {"Revision": "b", "CreatedAt": 5}], "a"),
        ([{"Revision": ""}, {"Tag": "x"}], "master"),
        (None, "master"),
    ])
    def test_choice(self, monkeypatch, tags, expected):
        """The largest ``CreatedAt`` (seconds or milliseconds), else the first listed, else master."""
        answer = ("iic/m", {"RevisionMap": {"Branches": [{"Revision": "master"}], "Tags": tags}})
        monkeypatch.setattr(modelscope, "_answer", lambda *args, **kwargs: answer)
        assert modelscope.default_revision("iic/m", "style 'x'") == expected


class TestEndpoint:
    def test_precedence(self, monkeypatch):
        assert modelscope.endpoint() == modelscope.DEFAULT_ENDPOINT == "https://modelscope.cn"
        monkeypatch.setenv("MODELSCOPE_DOMAIN", "ms.example.org/")
        assert modelscope.endpoint() == "https://ms.example.org"
        monkeypatch.setenv("MODELSCOPE_ENDPOINT", "http://127.0.0.1:8000/")
        assert modelscope.endpoint() == "http://127.0.0.1:8000"
        assert modelscope.file_url("iic/m", "v1", "a/b.pb") == (
            "http://127.0.0.1:8000/api/v1/models/iic/m/repo?Revision=v1&FilePath=a%2Fb.pb")

    def test_endpoint_wins_over_domain(self, fake, monkeypatch):
        fake.add_model("iic/cv_test", FILES)
        monkeypatch.setenv("MODELSCOPE_DOMAIN", REFUSED)
        monkeypatch.setenv("MODELSCOPE_ENDPOINT", fake.endpoint)
        assert modelscope.default_revision("iic/cv_test", "style 'x'") == "v1.0.0"

    def test_unreachable_default_site_falls_back_to_the_international_one_for_good(self, monkeypatch):
        with FakeModelScope() as intl:
            intl.add_model("iic/cv_test", FILES)
            monkeypatch.setattr(modelscope, "DEFAULT_ENDPOINT", REFUSED)
            monkeypatch.setattr(modelscope, "INTL_ENDPOINT", intl.endpoint)
            assert modelscope.endpoint() == REFUSED
            answered, files = modelscope.list_files("iic/cv_test", "v1.0.0", "style 'x'")
            assert answered == "iic/cv_test" and sorted(f.path for f in files) == sorted(FILES)
            assert modelscope.endpoint() == intl.endpoint
            assert modelscope.file_url("iic/cv_test", "v1.0.0", "a.pb").startswith(intl.endpoint + "/api/v1/")
            assert modelscope.default_revision("iic/cv_test", "style 'x'") == "v1.0.0"
            assert [r.path.rsplit("/", 1)[-1] for r in intl.requests] == ["files", "revisions"]

    def test_the_fallback_is_chosen_once_across_threads(self, monkeypatch):
        with FakeModelScope() as intl:
            intl.add_model("iic/cv_test", FILES)
            monkeypatch.setattr(modelscope, "DEFAULT_ENDPOINT", REFUSED)
            monkeypatch.setattr(modelscope, "INTL_ENDPOINT", intl.endpoint)
            results = []
            threads = [threading.Thread(target=lambda: results.append(
                modelscope.default_revision("iic/cv_test", "style 'x'"))) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
            assert results == ["v1.0.0"] * 8 and modelscope.endpoint() == intl.endpoint

    def test_a_reachable_default_site_is_kept_even_when_it_answers_404(self, fake, monkeypatch):
        monkeypatch.delenv("MODELSCOPE_DOMAIN")
        with FakeModelScope() as intl:
            intl.add_model("iic/cv_missing", FILES)
            monkeypatch.setattr(modelscope, "DEFAULT_ENDPOINT", fake.endpoint)
            monkeypatch.setattr(modelscope, "INTL_ENDPOINT", intl.endpoint)
            with pytest.raises(StyleDownloadError, match="no such model or revision"):
                modelscope.list_files("iic/cv_missing", "v1.0.0", "style 'x'")
            assert intl.requests == [] and modelscope.endpoint() == fake.endpoint
            assert len(paths(fake, "/repo/files")) == 2  # iic/, then damo/

    @pytest.mark.parametrize("variable", ["MODELSCOPE_ENDPOINT", "MODELSCOPE_DOMAIN"])
    def test_a_configured_site_is_never_swapped(self, monkeypatch, variable):
        with FakeModelScope() as intl:
            intl.add_model("iic/cv_test", FILES)
            monkeypatch.setattr(modelscope, "INTL_ENDPOINT", intl.endpoint)
            monkeypatch.setenv(variable, REFUSED)
            with pytest.raises(StyleNotCachedError) as exc:
                modelscope.default_revision("iic/cv_test", "style 'x'")
            assert intl.requests == [] and modelscope.endpoint() == REFUSED
        message = str(exc.value)
        assert f"style 'x': cannot reach {REFUSED}/api/v1/models/iic/cv_test/revisions (ConnectError" in message
        assert " or " not in message.split("(")[0] and "MODELSCOPE_ENDPOINT" in message

    def test_both_sites_unreachable_names_both(self, monkeypatch, tmp_path):
        monkeypatch.setattr(modelscope, "DEFAULT_ENDPOINT", REFUSED)
        monkeypatch.setattr(modelscope, "INTL_ENDPOINT", "http://127.0.0.1:7")
        with pytest.raises(StyleNotCachedError) as exc:
            modelscope.list_files("iic/cv_test", "v1.0.0", "style 'x'")
        message = str(exc.value)
        assert f"cannot reach {REFUSED}/api/v1/models/iic/cv_test/repo/files?" in message
        assert " or http://127.0.0.1:7/api/v1/models/iic/cv_test/repo/files?" in message
        assert "MODELSCOPE_ENDPOINT" in message and "use a built-in style" in message
        assert not modelscope._international.is_set()  # neither answered: modelscope.cn is tried again next time

    @pytest.mark.parametrize("variable, value", [("MODELSCOPE_ENDPOINT", "http://[::1"),
                                                 ("MODELSCOPE_ENDPOINT", "ftp://ms.example.org")])
    def test_a_malformed_address_is_named(self, monkeypatch, variable, value):
        monkeypatch.setenv(variable, value)
        with pytest.raises(StyleDownloadError, match="is not a usable http\\(s\\) address.*MODELSCOPE_ENDPOINT"):
            modelscope.list_files("iic/cv_test", "v1.0.0", "style 'x'")


class TestRetries:
    def test_busy_answers_are_retried_with_backoff(self, fake):
        fake.add_model("iic/cv_test", FILES)
        fake.queue_statuses("listing", [503, 502])
        start = time.monotonic()
        answered, files = modelscope.list_files("iic/cv_test", "v1.0.0", "style 'x'")
        assert time.monotonic() - start >= 0.05 + 0.1  # BACKOFF_S, then twice that
        assert answered == "iic/cv_test" and sorted(f.path for f in files) == sorted(FILES)
        assert paths(fake, "/repo/files") == ["/api/v1/models/iic/cv_test/repo/files"] * 3

    @pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
    def test_revisions_are_retried_too(self, fake, status):
        fake.add_model("iic/cv_test", FILES, tags=())
        fake.queue_statuses("revisions", [status])
        assert modelscope.default_revision("iic/cv_test", "style 'x'") == "master"
        assert len(paths(fake, "/revisions")) == 2

    @pytest.mark.parametrize("key,call", [
        ("listing", lambda: modelscope.list_files("iic/cv_test", "v1.0.0", "style 'x'")),
        ("revisions", lambda: modelscope.default_revision("iic/cv_test", "style 'x'")),
    ])
    def test_a_service_that_stays_busy_is_reported_as_busy(self, fake, key, call):
        fake.add_model("iic/cv_test", FILES)
        fake.queue_statuses(key, [503] * 10)
        start = time.monotonic()
        with pytest.raises(StyleDownloadError) as exc:
            call()
        elapsed = time.monotonic() - start
        assert 0.05 * (1 + 2 + 4) <= elapsed < 5
        message = str(exc.value)
        assert message.startswith("style 'x': ModelScope answered ") and "/api/v1/models/iic/cv_test/" in message
        assert "HTTP 503 after 4 attempts" in message and "try again later" in message
        assert "no such model" not in message
        assert len(fake.requests) == modelscope.ATTEMPTS  # not asked under the damo/ spelling either

    def test_a_listing_403_is_retried_a_revisions_403_is_not(self, fake):
        fake.add_model("iic/cv_test", FILES)
        fake.queue_statuses("listing", [403])
        modelscope.list_files("iic/cv_test", "v1.0.0", "style 'x'")
        assert len(paths(fake, "/repo/files")) == 2
        fake.queue_statuses("listing", [403] * 4)
        with pytest.raises(StyleDownloadError, match="HTTP 403 after 4 attempts.*may be private"):
            modelscope.list_files("iic/cv_test", "v1.0.0", "style 'x'")
        fake.queue_statuses("revisions", [403, 403])  # the iic/ and the damo/ spelling, once each
        with pytest.raises(StyleDownloadError, match="no such model or revision.*HTTP 403"):
            modelscope.default_revision("iic/cv_test", "style 'x'")
        assert len(paths(fake, "/revisions")) == 2

    def test_404_is_not_retried(self, fake):
        with pytest.raises(StyleDownloadError, match="no such model or revision"):
            modelscope.list_files("iic/cv_missing", "v1.0.0", "style 'x'")
        assert len(fake.requests) == 2  # iic/, then damo/

    def test_retry_after_is_honoured_and_capped(self, fake, monkeypatch):
        fake.add_model("iic/cv_test", FILES)
        fake.queue_statuses("listing", [429], retry_after="1")
        start = time.monotonic()
        modelscope.list_files("iic/cv_test", "v1.0.0", "style 'x'")
        assert 1.0 <= time.monotonic() - start < 3
        monkeypatch.setattr(modelscope, "MAX_WAIT_S", 0.2)
        fake.queue_statuses("listing", [503, 503], retry_after="3600")
        start = time.monotonic()
        modelscope.list_files("iic/cv_test", "v1.0.0", "style 'x'")
        assert 0.4 <= time.monotonic() - start < 2
        assert len(paths(fake, "/repo/files")) == 5
        fake.queue_statuses("listing", [503], retry_after="²")  # not a number of seconds: the backoff instead
        modelscope.list_files("iic/cv_test", "v1.0.0", "style 'x'")

    def test_a_dropped_connection_is_not_mistaken_for_an_unreachable_site(self, fake, monkeypatch):
        """Only a connection that cannot be made moves to the international site."""
        fake.add_model("iic/cv_test", FILES)
        fake.faults["listing"] = "truncate"
        monkeypatch.delenv("MODELSCOPE_DOMAIN")
        monkeypatch.setattr(modelscope, "DEFAULT_ENDPOINT", fake.endpoint)
        monkeypatch.setattr(modelscope, "INTL_ENDPOINT", REFUSED)
        with pytest.raises(StyleNotCachedError, match=f"cannot reach {fake.endpoint}/api"):
            modelscope.list_files("iic/cv_test", "v1.0.0", "style 'x'")
        assert modelscope.endpoint() == fake.endpoint and len(paths(fake, "/repo/files")) == 1
