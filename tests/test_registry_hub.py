"""Registry parsing, the Hub cache (offline) and downloads from a local fake Hub.

Nothing here touches the network or ``~/.cache``: every test gets a private ``HF_HUB_CACHE`` and a
registry file named by ``PORTRAIT_STYLIZE_CHECKPOINTS``. Downloads go to :class:`fake_hub.FakeHub`,
a local HTTP server speaking the Hub's ``/resolve`` protocol, through the real ``hf_hub_download``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import types
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub.utils import _http as hf_http

import portrait_stylize as ps
from portrait_stylize import hub
from portrait_stylize.errors import (
    ChecksumMismatchError,
    InvalidStyleError,
    RegistryError,
    StyleDownloadError,
    StyleNotCachedError,
    StyleNotFoundError,
    UnsafeWeightsError,
)
from portrait_stylize.models.style import StyleModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fake_hub  # noqa: E402
from fake_hub import FakeHub, git_blob_sha1, repo_cache_dir, seed_hub_cache, sha256_hex  # noqa: E402

REPO = "tiny-org/tiny-style"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
WRONG_SHA = hashlib.sha256(b"not the weights").hexdigest()
UNREACHABLE = "http://127.0.0.1:9"  # discard port: connection refused


# --- fixtures and helpers -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A real saved style: its two files' bytes and the saved model's ``head`` state dict."""
    folder = tmp_path_factory.mktemp("tiny_style")
    torch.manual_seed(1234)
    model = StyleModel(name="tiny", description="tiny test style")
    model.save_pretrained(folder)
    files = {name: (folder / name).read_bytes() for name in ("config.json", "model.safetensors")}
    head = {k: v.detach().clone() for k, v in model.head.state_dict().items()}
    return {"files": files, "head": head, "sha256": sha256_hex(files["model.safetensors"]), "folder": folder}


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Private cache, offline, cwd in tmp, and a :class:`FakeHub` as ``HF_ENDPOINT``.

    Offline tests add the repo they look for to ``env["hub"]``: if the package ignored
    ``HF_HUB_OFFLINE`` the download would succeed there, and the teardown check below fails any
    test that sent a request while ``HF_HUB_OFFLINE=1``. huggingface_hub's own import-time
    offline flag is forced off, so only the package's handling of ``HF_HUB_OFFLINE`` is tested.
    """
    cache = tmp_path / "hf_cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("PORTRAIT_STYLIZE_CHECKPOINTS", raising=False)  # set by write_registry
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.chdir(tmp_path)
    with FakeHub() as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.endpoint)
        yield {"cache": cache, "registry": tmp_path / "registry.json", "tmp": tmp_path,
               "monkeypatch": monkeypatch, "hub": fake}
        if os.environ.get("HF_HUB_OFFLINE") == "1":
            assert fake.requests == [], "HF_HUB_OFFLINE=1 but the Hub was contacted"


@pytest.fixture
def online(env, monkeypatch):
    """``env`` with offline mode off: downloads go to ``env["hub"]``."""
    monkeypatch.delenv("HF_HUB_OFFLINE")
    return env


def write_registry(env: dict, styles: dict | None = None, raw: str | None = None, **top) -> Path:
    """Write the extra registry (a styles dict, or ``raw`` text) and point $PORTRAIT_STYLIZE_CHECKPOINTS at it."""
    path = env["registry"]
    text = raw if raw is not None else json.dumps({"format_version": 1, "styles": styles, **top})
    path.write_text(text, encoding="utf-8")
    env["monkeypatch"].setenv("PORTRAIT_STYLIZE_CHECKPOINTS", str(path))
    return path


def hub_entry(sha256: str, revision: str | None = COMMIT, repo_id: str = REPO,
              filename: str = "model.safetensors", **extra) -> dict:
    entry = {"kind": "hub", "repo_id": repo_id, "filename": filename, "sha256": sha256,
             "licence": "apache-2.0", "description": "tiny", **extra}
    if revision is not None:
        entry["revision"] = revision
    return entry


def assert_head_equal(model, expected: dict) -> None:
    got = model.head.state_dict()
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert got[key].dtype == value.dtype, key
        assert torch.equal(got[key].detach().cpu(), value), key


def seed(env, tiny, files=None, commit=COMMIT, repo_id=REPO):
    return seed_hub_cache(env["cache"], repo_id, files or tiny["files"], commit)


class Payload:
    """Unpickling this calls ``open(marker, "w")``: proof of code execution if the marker appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def malicious_checkpoint(path: Path, marker: Path, zipfile: bool = True) -> Path:
    torch.save({"head.x0.weight": Payload(marker)}, path, _use_new_zipfile_serialization=zipfile)
    return path


# --- 1. seeded Hub cache, offline ---------------------------------------------------------------


@pytest.mark.parametrize("revision", [COMMIT, None], ids=["pinned_commit", "via_refs_main"])
def test_load_from_seeded_cache_is_bit_exact(env, tiny, revision):
    seed(env, tiny)
    write_registry(env, {"tiny-style": hub_entry(tiny["sha256"], revision)})
    torch.manual_seed(0)  # a model that silently skipped loading would have different random weights

    st = ps.load_style("tiny-style", device="cpu")

    assert isinstance(st.model, StyleModel)
    assert_head_equal(st.model, tiny["head"])
    assert st.model.bg is None
    assert st.model.meta["name"] == "tiny"
    assert (st.spec.name, st.spec.kind, st.spec.repo_id, st.spec.revision) == ("tiny-style", "hub", REPO, revision)


def test_seeded_cache_is_found_by_huggingface_hub(env, tiny):
    """The seeding helper is faithful: huggingface_hub's own lookup finds the files at the blobs."""
    snapshot = seed(env, tiny)
    from huggingface_hub import try_to_load_from_cache

    for name, data in tiny["files"].items():
        found = try_to_load_from_cache(REPO, name, cache_dir=env["cache"])
        assert found == str(snapshot / name)
        assert os.readlink(found) == f"../../blobs/{fake_hub.blob_id(name, data)}"
        assert Path(found).read_bytes() == data
    assert (repo_cache_dir(env["cache"], REPO) / "refs" / "main").read_bytes() == COMMIT.encode()
    assert fake_hub.blob_id("config.json", tiny["files"]["config.json"]) == git_blob_sha1(tiny["files"]["config.json"])


def test_list_styles_reports_offline_availability(env, tiny):
    seed(env, tiny)
    write_registry(env, {
        "tiny-style": hub_entry(tiny["sha256"]),
        "tiny-main": hub_entry(tiny["sha256"], revision=None),
        "other-commit": hub_entry(tiny["sha256"], revision="f" * 40),
        "not-cached": hub_entry(tiny["sha256"], repo_id="nobody/absent"),
    })

    styles = {s.name: s for s in ps.list_styles()}

    assert list(styles) == ["toon", "sketch", "tiny-style", "tiny-main", "other-commit", "not-cached"]
    assert {n: s.available_offline for n, s in styles.items()} == {
        "toon": True, "sketch": True, "tiny-style": True, "tiny-main": True,
        "other-commit": False, "not-cached": False,
    }
    assert styles["not-cached"].repo_id == "nobody/absent"
    assert [s.name for s in ps.list_styles("tiny-*")] == ["tiny-style", "tiny-main"]


# --- 2. wrong checksum --------------------------------------------------------------------------


@pytest.mark.parametrize("revision", [COMMIT, None], ids=["pinned_commit", "via_refs_main"])
def test_wrong_checksum_raises_and_evicts_only_the_bad_file(env, tiny, revision):
    env["hub"].add_repo(REPO, tiny["files"])
    snapshot = seed(env, tiny)
    repo = repo_cache_dir(env["cache"], REPO)
    blob = repo / "blobs" / tiny["sha256"]
    config_blob = repo / "blobs" / git_blob_sha1(tiny["files"]["config.json"])
    write_registry(env, {"tiny-style": hub_entry(WRONG_SHA, revision)})

    with pytest.raises(ChecksumMismatchError) as exc:
        ps.load_style("tiny-style")

    msg = str(exc.value)
    assert tiny["sha256"] in msg and WRONG_SHA in msg
    assert "'tiny-style'" in msg and REPO in msg
    assert not os.path.lexists(snapshot / "model.safetensors")
    assert not blob.exists()
    assert (snapshot / "config.json").read_bytes() == tiny["files"]["config.json"]
    assert config_blob.is_file()
    assert (repo / "refs" / "main").read_text() == COMMIT

    # the bad file is never picked up again, and list_styles agrees
    with pytest.raises(StyleNotCachedError, match="HF_HUB_OFFLINE"):
        ps.load_style("tiny-style")
    assert {s.name: s.available_offline for s in ps.list_styles("tiny-*")} == {"tiny-style": False}


# --- 3. offline and not cached ------------------------------------------------------------------


@pytest.mark.parametrize("revision", [COMMIT, None], ids=["pinned_commit", "main"])
def test_offline_not_cached_registry_style(env, tiny, revision):
    env["hub"].add_repo(REPO, tiny["files"])  # would be downloaded if HF_HUB_OFFLINE were ignored
    write_registry(env, {"tiny-style": hub_entry(tiny["sha256"], revision)})
    with pytest.raises(StyleNotCachedError) as exc:
        ps.load_style("tiny-style")
    msg = str(exc.value)
    assert "HF_HUB_OFFLINE" in msg
    assert f"{REPO}@{revision or 'main'}/model.safetensors" in msg
    assert str(env["cache"]) in msg
    assert not env["cache"].exists() or not any(env["cache"].rglob("model.safetensors"))
    assert env["hub"].requests == []


def test_offline_not_cached_hub_id(env, tiny):
    env["hub"].add_repo("someone/some-style", tiny["files"])
    with pytest.raises(StyleNotCachedError, match="HF_HUB_OFFLINE") as exc:
        ps.load_style("someone/some-style")
    assert "someone/some-style@main/model.safetensors" in str(exc.value)


def test_offline_weights_cached_but_config_missing(env, tiny):
    env["hub"].add_repo(REPO, tiny["files"])
    seed(env, tiny, files={"model.safetensors": tiny["files"]["model.safetensors"]})
    write_registry(env, {"tiny-style": hub_entry(tiny["sha256"])})
    with pytest.raises(StyleNotCachedError, match=r"HF_HUB_OFFLINE") as exc:
        ps.load_style("tiny-style")
    assert f"{REPO}@{COMMIT}/config.json" in str(exc.value)


def test_is_offline_reads_env_at_call_time(monkeypatch):
    for value, expected in [("1", True), ("true", True), ("ON", True), ("0", False), ("", False)]:
        monkeypatch.setenv("HF_HUB_OFFLINE", value)
        assert hub.is_offline() is expected, value
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert hub.is_offline() is False


# --- 4. unknown name ----------------------------------------------------------------------------


def test_unknown_style_lists_known_names(env):
    write_registry(env, {"extra-one": {"kind": "builtin", "builtin": "toon", "licence": "mit"}})
    with pytest.raises(StyleNotFoundError) as exc:
        ps.load_style("no-such-style")
    msg = str(exc.value)
    assert msg.startswith("unknown style 'no-such-style'")
    assert "Known styles: toon, sketch, extra-one." in msg
    assert isinstance(exc.value, KeyError)


def test_unknown_style_without_extra_registry(env):
    with pytest.raises(StyleNotFoundError, match=r"Known styles: toon, sketch\."):
        ps.load_style("nonexistent")


# --- 5. malformed registry ----------------------------------------------------------------------

GOOD_SHA = "a" * 64


@pytest.mark.parametrize(
    ("styles_or_doc", "fragments"),
    [
        pytest.param({"s": {k: v for k, v in hub_entry(GOOD_SHA).items() if k != "sha256"}},
                     ["style 's'", "missing required key 'sha256'"], id="missing_sha256"),
        pytest.param({"s": hub_entry("A" * 64)}, ["key 'sha256'", "64 lowercase hex", "'AAAA"], id="sha256_uppercase"),
        pytest.param({"s": hub_entry("abc123")}, ["key 'sha256'", "'abc123'"], id="sha256_short"),
        pytest.param({"s": {**hub_entry(GOOD_SHA), "repo": "org/x"}}, ["unknown key 'repo'", "kind 'hub'", "repo_id"],
                     id="unknown_key_typo"),
        pytest.param({"s": {**hub_entry(GOOD_SHA), "revision": 5}}, ["key 'revision' must be a str, got int"],
                     id="wrong_type_revision"),
        pytest.param({"s": {"kind": "builtin", "builtin": "toon", "licence": "mit", "params": [1]}},
                     ["key 'params' must be a dict, got list"], id="wrong_type_params"),
        pytest.param({"s": {**hub_entry(GOOD_SHA), "kind": "zip"}}, ["key 'kind' must be one of", "'zip'"],
                     id="bad_kind"),
        pytest.param({"s": {k: v for k, v in hub_entry(GOOD_SHA).items() if k != "kind"}},
                     ["key 'kind' must be one of", "None"], id="missing_kind"),
        pytest.param({"s": hub_entry(GOOD_SHA, repo_id="no-slash")}, ["key 'repo_id'", "'no-slash'"], id="bad_repo_id"),
        pytest.param({"s": "hub"}, ["style 's' must be a JSON object, got str"], id="entry_not_object"),
        pytest.param({"format_version": 1, "default": "nope", "styles": {"s": hub_entry(GOOD_SHA)}},
                     ["key 'default' names 'nope'"], id="default_not_a_style"),
        pytest.param({"format_version": 2, "styles": {}}, ["key 'format_version' is 2"], id="format_version"),
        pytest.param({"styles": []}, ["'styles' object"], id="styles_not_object"),
    ],
)
def test_malformed_registry_raises_registry_error(env, styles_or_doc, fragments):
    if "styles" in styles_or_doc:
        write_registry(env, raw=json.dumps(styles_or_doc))
    else:
        write_registry(env, styles_or_doc)
    for call in (lambda: ps.load_style("toon"), ps.list_styles):
        with pytest.raises(RegistryError) as exc:
            call()
        msg = str(exc.value)
        assert msg.startswith(str(env["registry"])), msg
        for fragment in fragments:
            assert fragment in msg, (fragment, msg)


def test_registry_invalid_json(env):
    write_registry(env, raw='{"styles": {"s": {"kind": "builtin",}}}')
    with pytest.raises(RegistryError) as exc:
        ps.load_style("toon")
    assert str(exc.value).startswith(f"{env['registry']}: not valid UTF-8 JSON (")
    assert "line 1" in str(exc.value)


def test_registry_file_missing(env, monkeypatch):
    monkeypatch.setenv("PORTRAIT_STYLIZE_CHECKPOINTS", str(env["registry"]))
    with pytest.raises(RegistryError, match="registry file not found") as exc:
        ps.list_styles()
    assert str(env["registry"]) in str(exc.value)


@pytest.mark.parametrize("filename", ["pytorch_model.bin", "weights/model.pt"])
def test_registry_pickle_filename_is_unsafe(env, filename):
    write_registry(env, {"s": hub_entry(GOOD_SHA, filename=filename)})
    with pytest.raises(UnsafeWeightsError) as exc:
        ps.load_style("toon")
    msg = str(exc.value)
    assert "key 'filename'" in msg and repr(filename) in msg and "safetensors" in msg


def test_extra_registry_overrides_builtin_by_name(env, tiny):
    seed(env, tiny)
    write_registry(env, {"toon": hub_entry(tiny["sha256"])}, default="toon")
    st = ps.load_style("toon", device="cpu")
    assert st.spec.kind == "hub"
    assert_head_equal(st.model, tiny["head"])


def test_fetch_refuses_pickle_filename_before_any_network(env):
    with pytest.raises(UnsafeWeightsError, match=r"'model\.bin' is not a \.safetensors file"):
        hub.fetch_style_files("org/name", "model.bin")


# --- 6. non-safetensors weights are never unpickled ---------------------------------------------


@pytest.mark.parametrize("zipfile", [True, False], ids=["torch_zip", "legacy_pickle"])
def test_payload_is_live_control(tmp_path, zipfile):
    """Control: the payload really runs code when unpickled, so the 'no marker' checks mean something."""
    marker = tmp_path / "pwned"
    path = malicious_checkpoint(tmp_path / "model.safetensors", marker, zipfile)
    with open(path, "rb") as fh:  # a file object: torch.load(path) would pick a loader by the suffix
        torch.load(fh, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("zipfile", [True, False], ids=["torch_zip", "legacy_pickle"])
def test_check_safetensors_refuses_torch_save_output(tmp_path, zipfile):
    marker = tmp_path / "pwned"
    path = malicious_checkpoint(tmp_path / "model.safetensors", marker, zipfile)
    with pytest.raises(UnsafeWeightsError, match="not a safetensors file") as exc:
        hub.check_safetensors(path)
    assert str(path) in str(exc.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    "data",
    [b"", b"\x05\x00\x00\x00\x00\x00\x00", b"\x02\x00\x00\x00\x00\x00\x00\x00[]", b"\xff" * 8 + b"{}",
     b"\x10\x00\x00\x00\x00\x00\x00\x00{}"],
    ids=["empty", "short", "not_json_object", "huge_header", "header_past_end"],
)
def test_check_safetensors_refuses_bad_headers(tmp_path, data):
    path = tmp_path / "model.safetensors"
    path.write_bytes(data)
    with pytest.raises(UnsafeWeightsError, match="bad header"):
        hub.check_safetensors(path)


def test_check_safetensors_refuses_pickle_suffix_and_accepts_real_file(tmp_path, tiny):
    path = tmp_path / "weights.pt"
    path.write_bytes(tiny["files"]["model.safetensors"])  # even valid content: suffix decides
    with pytest.raises(UnsafeWeightsError, match="pickle-based checkpoints are never loaded"):
        hub.check_safetensors(path)
    hub.check_safetensors(tiny["folder"] / "model.safetensors")  # no exception


def _pickled_style_folder(env, tiny, weights_name: str) -> tuple[Path, Path]:
    """A style folder whose weights file is a malicious pickle; returns (folder, marker)."""
    folder = env["tmp"] / f"pickled_{weights_name}"
    folder.mkdir()
    (folder / "config.json").write_bytes(tiny["files"]["config.json"])
    marker = env["tmp"] / "pwned"
    malicious_checkpoint(folder / weights_name, marker)
    return folder, marker


def test_local_folder_with_only_pytorch_model_bin(env, tiny):
    folder, marker = _pickled_style_folder(env, tiny, "pytorch_model.bin")
    with pytest.raises((InvalidStyleError, UnsafeWeightsError)) as exc:
        ps.load_style(str(folder))
    msg = str(exc.value)
    assert "no model.safetensors" in msg
    assert "found: config.json, pytorch_model.bin" in msg
    assert "never loaded" in msg
    assert not marker.exists()


def test_local_folder_with_pickle_named_safetensors(env, tiny):
    folder, marker = _pickled_style_folder(env, tiny, "model.safetensors")
    with pytest.raises(UnsafeWeightsError, match="not a safetensors file"):
        ps.load_style(str(folder))
    assert not marker.exists()


def test_local_folder_loads_real_style(env, tiny):
    st = ps.load_style(str(tiny["folder"]), device="cpu")
    assert st.spec.kind == "local" and st.spec.name == "tiny" and st.spec.available_offline
    assert_head_equal(st.model, tiny["head"])


def test_cached_hub_style_with_pickle_payload_is_refused(env, tiny):
    marker = env["tmp"] / "pwned"
    bad = malicious_checkpoint(env["tmp"] / "bad.safetensors", marker).read_bytes()
    seed(env, tiny, files={"config.json": tiny["files"]["config.json"], "model.safetensors": bad})
    # the checksum matches the (malicious) file, so only the format check stands in the way
    write_registry(env, {"tiny-style": hub_entry(sha256_hex(bad))})
    with pytest.raises(UnsafeWeightsError, match="not a safetensors file"):
        ps.load_style("tiny-style")
    assert not marker.exists()


# --- 7. downloads from a local fake Hub ---------------------------------------------------------


def test_download_registered_style_then_load(online, tiny):
    fake = online["hub"]
    commit = fake.add_repo(REPO, tiny["files"])
    write_registry(online, {"tiny-style": hub_entry(tiny["sha256"], commit)})
    assert {s.name: s.available_offline for s in ps.list_styles("tiny-*")} == {"tiny-style": False}
    assert fake.requests == []  # list_styles never goes online

    torch.manual_seed(0)
    st = ps.load_style("tiny-style", device="cpu")

    assert_head_equal(st.model, tiny["head"])
    # the real client talked to us: HEAD then GET from the "CDN" for the weights, HEAD + GET for config
    methods = [(r.server, r.method, r.path.split("?")[0]) for r in fake.requests]
    assert methods == [
        ("hub", "HEAD", f"/{REPO}/resolve/{commit}/model.safetensors"),
        ("cdn", "GET", f"/blobs/{tiny['sha256']}"),
        ("hub", "HEAD", f"/{REPO}/resolve/{commit}/config.json"),
        ("hub", "GET", f"/{REPO}/resolve/{commit}/config.json"),
    ]
    assert all("portrait-stylize/0.1.0" in r.headers.get("user-agent", "") for r in fake.requests)
    # the cache looks exactly like the one we seed by hand for the offline tests
    repo = repo_cache_dir(online["cache"], REPO)
    for name, data in tiny["files"].items():
        pointer = repo / "snapshots" / commit / name
        assert os.readlink(pointer) == f"../../blobs/{fake_hub.blob_id(name, data)}"
        assert pointer.read_bytes() == data

    # now cached: available offline, and loads with HF_HUB_OFFLINE=1 without any request
    n_requests = len(fake.requests)
    assert {s.name: s.available_offline for s in ps.list_styles("tiny-*")} == {"tiny-style": True}
    os.environ["HF_HUB_OFFLINE"] = "1"  # restored by monkeypatch (online fixture deleted it)
    try:
        st2 = ps.load_style("tiny-style", device="cpu")
    finally:
        del os.environ["HF_HUB_OFFLINE"]
    assert_head_equal(st2.model, tiny["head"])
    assert len(fake.requests) == n_requests


def test_download_with_branch_revision_follows_hub_redirects(online, tiny):
    fake = online["hub"]
    commit = fake.add_repo(REPO, tiny["files"])
    write_registry(online, {"tiny-style": hub_entry(tiny["sha256"], revision=None)})
    st = ps.load_style("tiny-style", device="cpu")
    assert_head_equal(st.model, tiny["head"])
    assert f"/api/resolve-cache/models/{REPO}/{commit}/config.json" in fake.paths("hub")
    assert (repo_cache_dir(online["cache"], REPO) / "refs" / "main").read_text() == commit


def test_download_style_in_subfolder(online, tiny):
    fake = online["hub"]
    files = {f"styles/tiny/{k}": v for k, v in tiny["files"].items()}
    commit = fake.add_repo(REPO, {**files, "config.json": b'{"arch": "not-this-one"}'})
    write_registry(online, {"tiny-style": hub_entry(tiny["sha256"], commit, filename="styles/tiny/model.safetensors")})
    st = ps.load_style("tiny-style", device="cpu")
    assert_head_equal(st.model, tiny["head"])
    pointer = repo_cache_dir(online["cache"], REPO) / "snapshots" / commit / "styles" / "tiny" / "config.json"
    assert os.readlink(pointer) == f"../../../../blobs/{git_blob_sha1(tiny['files']['config.json'])}"


def test_download_wrong_checksum_removes_file(online, tiny):
    fake = online["hub"]
    commit = fake.add_repo(REPO, tiny["files"])
    write_registry(online, {"tiny-style": hub_entry(WRONG_SHA, commit)})

    with pytest.raises(ChecksumMismatchError) as exc:
        ps.load_style("tiny-style")

    assert tiny["sha256"] in str(exc.value) and WRONG_SHA in str(exc.value)
    repo = repo_cache_dir(online["cache"], REPO)
    assert not os.path.lexists(repo / "snapshots" / commit / "model.safetensors")
    assert not (repo / "blobs" / tiny["sha256"]).exists()
    assert [r.method for r in fake.requests] == ["HEAD", "GET"]  # config.json never fetched
    # a new attempt downloads again (and fails again), rather than trusting a leftover file
    with pytest.raises(ChecksumMismatchError):
        ps.load_style("tiny-style")
    assert [r.server for r in fake.requests].count("cdn") == 2


def test_download_missing_repo(online, tiny):
    write_registry(online, {"tiny-style": hub_entry(tiny["sha256"], repo_id="ghost-org/ghost")})
    with pytest.raises(StyleDownloadError) as exc:
        ps.load_style("tiny-style")
    msg = str(exc.value)
    assert "ghost-org/ghost" in msg and "does not exist" in msg and "'tiny-style'" in msg
    assert online["hub"].paths() == [f"/ghost-org/ghost/resolve/{COMMIT}/model.safetensors"]


def test_download_missing_file(online, tiny):
    fake = online["hub"]
    commit = fake.add_repo(REPO, {"config.json": tiny["files"]["config.json"]})
    write_registry(online, {"tiny-style": hub_entry(tiny["sha256"], commit)})
    with pytest.raises(StyleDownloadError) as exc:
        ps.load_style("tiny-style")
    msg = str(exc.value)
    assert "'model.safetensors'" in msg and REPO in msg and commit in msg


def test_download_missing_config(online, tiny):
    fake = online["hub"]
    commit = fake.add_repo(REPO, {"model.safetensors": tiny["files"]["model.safetensors"]})
    write_registry(online, {"tiny-style": hub_entry(tiny["sha256"], commit)})
    with pytest.raises(StyleDownloadError, match=r"file 'config\.json' does not exist"):
        ps.load_style("tiny-style")


def test_download_missing_revision(online, tiny):
    online["hub"].add_repo(REPO, tiny["files"])
    write_registry(online, {"tiny-style": hub_entry(tiny["sha256"], revision="v9.9")})
    with pytest.raises(StyleDownloadError, match=rf"revision 'v9\.9' does not exist in {REPO}"):
        ps.load_style("tiny-style")


def test_download_unregistered_hub_id(online, tiny, caplog):
    fake = online["hub"]
    commit = fake.add_repo("someone/anime-style", tiny["files"])
    torch.manual_seed(0)
    with caplog.at_level(logging.WARNING, logger="portrait_stylize.hub"):
        st = ps.load_style("someone/anime-style", device="cpu")
    assert_head_equal(st.model, tiny["head"])
    assert (st.spec.name, st.spec.kind, st.spec.repo_id, st.spec.revision, st.spec.filename) == (
        "someone/anime-style", "hub", "someone/anime-style", None, "model.safetensors")
    assert st.spec.description == "tiny test style"
    assert "no sha256 recorded" in caplog.text
    assert (repo_cache_dir(online["cache"], "someone/anime-style") / "refs" / "main").read_text() == commit


def test_download_unregistered_hub_id_at_revision(online, tiny):
    fake = online["hub"]
    commit = fake.add_repo("someone/anime-style", tiny["files"])
    fake.add_repo("someone/anime-style", {"config.json": b"{}"})  # main moves on; old commit still loads
    st = ps.load_style(f"hf-hub:someone/anime-style@{commit}", device="cpu")
    assert_head_equal(st.model, tiny["head"])
    assert st.spec.revision == commit


def test_unregistered_hub_id_missing_repo(online):
    with pytest.raises(StyleDownloadError, match="repository nobody/nothing does not exist"):
        ps.load_style("nobody/nothing")


def test_hub_unreachable_and_not_cached(env, monkeypatch, tiny):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", UNREACHABLE)
    # huggingface_hub retries connection errors with 1-8 s back-off sleeps; skip the waiting
    sleeps = []
    monkeypatch.setattr(hf_http, "time", types.SimpleNamespace(sleep=sleeps.append))
    write_registry(env, {"tiny-style": hub_entry(tiny["sha256"])})
    with pytest.raises(StyleNotCachedError, match="the Hub cannot be reached") as exc:
        ps.load_style("tiny-style")
    assert "HF_HUB_OFFLINE is set" not in str(exc.value)
    assert sleeps  # it really tried (and retried) the network, which refused


# --- regressions found in review ------------------------------------------------------------------


def test_cache_dir_expands_user_and_vars(env, tiny, monkeypatch):
    home = env["tmp"] / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", "~/hfcache")
    seed_hub_cache(home / "hfcache", REPO, tiny["files"], COMMIT)
    write_registry(env, {"tiny-style": hub_entry(WRONG_SHA)})
    assert hub.cache_dir() == home / "hfcache"
    assert {s.name: s.available_offline for s in ps.list_styles()}["tiny-style"] is True
    with pytest.raises(ChecksumMismatchError):
        ps.load_style("tiny-style")
    assert not list((repo_cache_dir(home / "hfcache", REPO) / "blobs").glob(tiny["sha256"]))


def test_style_without_cached_config_is_not_available_offline(env, tiny):
    seed(env, tiny, files={"model.safetensors": tiny["files"]["model.safetensors"]})
    write_registry(env, {"tiny-style": hub_entry(tiny["sha256"])})
    assert {s.name: s.available_offline for s in ps.list_styles()}["tiny-style"] is False


@pytest.mark.parametrize("doc,fragment", [
    ({"default": ["x"], "styles": {}}, "key 'default' must be a style name"),
    ({"default": "nope", "styles": {}}, "key 'default' names 'nope'"),
])
def test_registry_default_errors(env, doc, fragment):
    write_registry(env, raw=json.dumps(doc))
    with pytest.raises(RegistryError, match=fragment):
        ps.load_style()


def test_extra_registry_default_wins(env):
    write_registry(env, {}, default="sketch")
    assert ps.load_style().name == "sketch"


def test_registry_path_that_is_a_folder_or_not_utf8(env, monkeypatch):
    monkeypatch.setenv("PORTRAIT_STYLIZE_CHECKPOINTS", str(env["tmp"]))
    with pytest.raises(RegistryError, match="cannot read the registry file"):
        ps.list_styles()
    env["registry"].write_bytes(b"\xff\xfe{}")
    monkeypatch.setenv("PORTRAIT_STYLIZE_CHECKPOINTS", str(env["registry"]))
    with pytest.raises(RegistryError, match="not valid UTF-8 JSON"):
        ps.list_styles()


def test_from_pretrained_hub_id_uses_safetensors_download(online, tiny):
    commit = online["hub"].add_repo(REPO, tiny["files"])
    # The mixin fetches config.json itself from the import-time endpoint, so that one comes from
    # the cache; the weights go through our override, which only ever asks for safetensors.
    seed(online, tiny, files={"config.json": tiny["files"]["config.json"]}, commit=commit)
    model = StyleModel.from_pretrained(REPO, revision=commit, cache_dir=online["cache"])
    paths = [r.path for r in online["hub"].requests]
    assert any(p.endswith("/model.safetensors") for p in paths) and not any("pytorch_model" in p for p in paths)
    assert_head_equal(model, tiny["head"])


def test_list_styles_glob_and_stylize_shortcut():
    assert [s.name for s in ps.list_styles("sk*")] == ["sketch"]
    arr = (torch.rand(40, 56, 3) * 255).to(torch.uint8).numpy()
    assert ps.stylize(arr, style="sketch").tobytes() == ps.load_style("sketch")(arr).tobytes()
