"""``portrait-stylize pin`` and the downloader, against the local fake ModelScope server (and a
server that never answers, for the stall limit)."""

from __future__ import annotations

import json

import pytest

from portrait_stylize.cli import main
from portrait_stylize.common import downloads
from portrait_stylize.errors import ChecksumMismatchError, StyleDownloadError, StyleNotCachedError
from portrait_stylize.sources import modelscope

from fake_hub import SilentServer, outcome_within
from fake_modelscope import FakeModelScope, sha256_hex

FILES = {"cartoon_h.pb": b"head graph " * 100, "cartoon_bg.pb": b"bg graph " * 90, "alpha.jpg": b"mask" * 10}
ENTRY = {"kind": "modelscope", "model_id": "iic/cv_test", "files": {"head": ["cartoon_anime_h.pb", "cartoon_h.pb"],
         "bg": ["cartoon_bg.pb"], "alpha": ["alpha.jpg"]}, "licence": "apache-2.0", "description": "test"}


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("PORTRAIT_STYLIZE_OFFLINE", raising=False)
    with FakeModelScope() as server:
        monkeypatch.setenv("MODELSCOPE_DOMAIN", server.endpoint)
        yield server


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

        def break_first(http, url, part, label, progress):
            calls["n"] += 1
            if calls["n"] == 1:  # the first attempt stops after a few bytes, as a dropped connection does
                part.write_bytes(data[:1000])
                raise downloads._Incomplete("1000 bytes")
            return real(http, url, part, label, progress)

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
        "tags": lambda dest: modelscope.newest_tag("iic/cv_test", "style 'x'"),
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
