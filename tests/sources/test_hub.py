"""The Hub cache (offline), downloads from a local fake Hub, checksums and safetensors checks.

Covers :mod:`portrait_stylize.sources.hub` (``fetch_style_files``, ``is_cached``, ``cache_dir``,
``is_offline``, eviction of files that fail their sha256, the stall limit against a Hub that stays
silent or stops mid-body) and
:func:`portrait_stylize.models.serialization.check_safetensors` (pickle files are never loaded).

Nothing here touches the network or ``~/.cache``: every test gets a private ``HF_HUB_CACHE`` and a
registry file named by ``PORTRAIT_STYLIZE_CHECKPOINTS``. Downloads go to :class:`fake_hub.FakeHub`,
a local HTTP server speaking the Hub's ``/resolve`` protocol, through the real ``hf_hub_download``.
The fixtures (``tiny``, ``env``, ``online``) are in conftest.py, the helpers in helpers.py.
"""

from __future__ import annotations

import logging
import os
import types
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub import set_client_factory
from huggingface_hub.utils import _http as hf_http

import portrait_stylize as ps
from portrait_stylize.common import downloads
from portrait_stylize.errors import (
    ChecksumMismatchError,
    StyleDownloadError,
    StyleNotCachedError,
    UnsafeWeightsError,
)
from portrait_stylize.loading import load_network, resolve_spec
from portrait_stylize.sources import hub

import fake_hub
from fake_hub import SilentServer, git_blob_sha1, outcome_within, repo_cache_dir, seed_hub_cache, sha256_hex
from helpers import (
    COMMIT,
    HUB_REPO,
    UNREACHABLE,
    WRONG_SHA,
    assert_head_equal,
    hub_entry,
    malicious_checkpoint,
    seed,
    write_registry,
)

# --- seeded Hub cache, offline ----------------------------------------------------------------


def test_seeded_cache_is_found_by_huggingface_hub(env, tiny):
    """The seeding helper is faithful: huggingface_hub's own lookup finds the files at the blobs."""
    snapshot = seed(env, tiny)
    from huggingface_hub import try_to_load_from_cache

    for name, data in tiny["files"].items():
        found = try_to_load_from_cache(HUB_REPO, name, cache_dir=env["cache"])
        assert found == str(snapshot / name)
        assert os.readlink(found) == f"../../blobs/{fake_hub.blob_id(name, data)}"
        assert Path(found).read_bytes() == data
    assert (repo_cache_dir(env["cache"], HUB_REPO) / "refs" / "main").read_bytes() == COMMIT.encode()
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

    extras = ["tiny-style", "tiny-main", "other-commit", "not-cached"]
    assert list(styles)[:2] == ["toon", "sketch"] and list(styles)[-4:] == extras
    assert {n: s.available_offline for n, s in styles.items() if n in extras + ["toon", "sketch"]} == {
        "toon": True, "sketch": True, "tiny-style": True, "tiny-main": True,
        "other-commit": False, "not-cached": False,
    }
    assert styles["not-cached"].repo_id == "nobody/absent"
    assert [s.name for s in ps.list_styles("tiny-*")] == ["tiny-style", "tiny-main"]


# --- wrong checksum ---------------------------------------------------------------------------


@pytest.mark.parametrize("revision", [COMMIT, None], ids=["pinned_commit", "via_refs_main"])
def test_wrong_checksum_raises_and_evicts_only_the_bad_file(env, tiny, revision):
    env["hub"].add_repo(HUB_REPO, tiny["files"])
    snapshot = seed(env, tiny)
    repo = repo_cache_dir(env["cache"], HUB_REPO)
    blob = repo / "blobs" / tiny["sha256"]
    config_blob = repo / "blobs" / git_blob_sha1(tiny["files"]["config.json"])
    write_registry(env, {"tiny-style": hub_entry(WRONG_SHA, revision)})

    with pytest.raises(ChecksumMismatchError) as exc:
        ps.load_style("tiny-style")

    msg = str(exc.value)
    assert tiny["sha256"] in msg and WRONG_SHA in msg
    assert "'tiny-style'" in msg and HUB_REPO in msg
    assert not os.path.lexists(snapshot / "model.safetensors")
    assert not blob.exists()
    assert (snapshot / "config.json").read_bytes() == tiny["files"]["config.json"]
    assert config_blob.is_file()
    assert (repo / "refs" / "main").read_text() == COMMIT

    # the bad file is never picked up again, and list_styles agrees
    with pytest.raises(StyleNotCachedError, match="HF_HUB_OFFLINE"):
        ps.load_style("tiny-style")
    assert {s.name: s.available_offline for s in ps.list_styles("tiny-*")} == {"tiny-style": False}


# --- offline and not cached -------------------------------------------------------------------


@pytest.mark.parametrize("revision", [COMMIT, None], ids=["pinned_commit", "main"])
def test_offline_not_cached_registry_style(env, tiny, revision):
    env["hub"].add_repo(HUB_REPO, tiny["files"])  # would be downloaded if HF_HUB_OFFLINE were ignored
    write_registry(env, {"tiny-style": hub_entry(tiny["sha256"], revision)})
    with pytest.raises(StyleNotCachedError) as exc:
        ps.load_style("tiny-style")
    msg = str(exc.value)
    assert "HF_HUB_OFFLINE" in msg
    assert f"{HUB_REPO}@{revision or 'main'}/model.safetensors" in msg
    assert str(env["cache"]) in msg
    assert not env["cache"].exists() or not any(env["cache"].rglob("model.safetensors"))
    assert env["hub"].requests == []


def test_offline_not_cached_hub_id(env, tiny):
    env["hub"].add_repo("someone/some-style", tiny["files"])
    with pytest.raises(StyleNotCachedError, match="HF_HUB_OFFLINE") as exc:
        ps.load_style("someone/some-style")
    assert "someone/some-style@main/model.safetensors" in str(exc.value)


def test_offline_weights_cached_but_config_missing(env, tiny):
    env["hub"].add_repo(HUB_REPO, tiny["files"])
    seed(env, tiny, files={"model.safetensors": tiny["files"]["model.safetensors"]})
    write_registry(env, {"tiny-style": hub_entry(tiny["sha256"])})
    with pytest.raises(StyleNotCachedError, match=r"HF_HUB_OFFLINE") as exc:
        ps.load_style("tiny-style")
    assert f"{HUB_REPO}@{COMMIT}/config.json" in str(exc.value)


def test_is_offline_reads_env_at_call_time(monkeypatch):
    for value, expected in [("1", True), ("true", True), ("ON", True), ("0", False), ("", False)]:
        monkeypatch.setenv("HF_HUB_OFFLINE", value)
        assert hub.is_offline() is expected, value
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert hub.is_offline() is False


# --- non-safetensors weights are never unpickled ----------------------------------------------


def test_fetch_refuses_pickle_filename_before_any_network(env):
    with pytest.raises(UnsafeWeightsError, match=r"'model\.bin' is not a \.safetensors file"):
        hub.fetch_style_files("org/name", "model.bin")


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


def test_cached_hub_style_with_pickle_payload_is_refused(env, tiny):
    marker = env["tmp"] / "pwned"
    bad = malicious_checkpoint(env["tmp"] / "bad.safetensors", marker).read_bytes()
    seed(env, tiny, files={"config.json": tiny["files"]["config.json"], "model.safetensors": bad})
    # the checksum matches the (malicious) file, so only the format check stands in the way
    write_registry(env, {"tiny-style": hub_entry(sha256_hex(bad))})
    with pytest.raises(UnsafeWeightsError, match="not a safetensors file"):
        ps.load_style("tiny-style")
    assert not marker.exists()


# --- downloads from a local fake Hub ----------------------------------------------------------


def test_download_registered_style_then_load(online, tiny):
    fake = online["hub"]
    commit = fake.add_repo(HUB_REPO, tiny["files"])
    write_registry(online, {"tiny-style": hub_entry(tiny["sha256"], commit)})
    assert {s.name: s.available_offline for s in ps.list_styles("tiny-*")} == {"tiny-style": False}
    assert fake.requests == []  # list_styles never goes online

    torch.manual_seed(0)
    st = ps.load_style("tiny-style", device="cpu", backend="torch")  # "auto" would time the backends first

    assert_head_equal(st.model, tiny["head"])
    # the real client talked to us: HEAD then GET from the "CDN" for the weights, HEAD + GET for config
    methods = [(r.server, r.method, r.path.split("?")[0]) for r in fake.requests]
    assert methods == [
        ("hub", "HEAD", f"/{HUB_REPO}/resolve/{commit}/model.safetensors"),
        ("cdn", "GET", f"/blobs/{tiny['sha256']}"),
        ("hub", "HEAD", f"/{HUB_REPO}/resolve/{commit}/config.json"),
        ("hub", "GET", f"/{HUB_REPO}/resolve/{commit}/config.json"),
    ]
    assert all("portrait-stylize/0.1.0" in r.headers.get("user-agent", "") for r in fake.requests)
    # the cache looks exactly like the one we seed by hand for the offline tests
    repo = repo_cache_dir(online["cache"], HUB_REPO)
    for name, data in tiny["files"].items():
        pointer = repo / "snapshots" / commit / name
        assert os.readlink(pointer) == f"../../blobs/{fake_hub.blob_id(name, data)}"
        assert pointer.read_bytes() == data

    # now cached: available offline, and loads with HF_HUB_OFFLINE=1 without any request
    n_requests = len(fake.requests)
    assert {s.name: s.available_offline for s in ps.list_styles("tiny-*")} == {"tiny-style": True}
    os.environ["HF_HUB_OFFLINE"] = "1"  # restored by monkeypatch (online fixture deleted it)
    try:
        st2 = ps.load_style("tiny-style", device="cpu", backend="torch")
    finally:
        del os.environ["HF_HUB_OFFLINE"]
    assert_head_equal(st2.model, tiny["head"])
    assert len(fake.requests) == n_requests


def test_pinned_cached_commit_loads_without_network_while_online(online, tiny):
    """Offline mode off: a style pinned to a commit that is already in the cache loads with no
    request at all (nothing at a commit can change), while a branch is asked about again."""
    fake = online["hub"]
    commit = fake.add_repo(HUB_REPO, tiny["files"])
    write_registry(online, {"pinned": hub_entry(tiny["sha256"], commit), "branch": hub_entry(tiny["sha256"], "main")})
    for name in ("pinned", "branch"):
        ps.load_style(name, device="cpu", backend="torch")
    assert fake.requests  # the first loads downloaded
    fake.requests.clear()
    assert_head_equal(ps.load_style("pinned", device="cpu", backend="torch").model, tiny["head"])
    assert fake.requests == []
    ps.load_style("branch", device="cpu", backend="torch")
    assert [r.method for r in fake.requests if r.server == "hub"][:1] == ["HEAD"]


def test_download_with_branch_revision_follows_hub_redirects(online, tiny):
    fake = online["hub"]
    commit = fake.add_repo(HUB_REPO, tiny["files"])
    write_registry(online, {"tiny-style": hub_entry(tiny["sha256"], revision=None)})
    st = ps.load_style("tiny-style", device="cpu", backend="torch")
    assert_head_equal(st.model, tiny["head"])
    assert f"/api/resolve-cache/models/{HUB_REPO}/{commit}/config.json" in fake.paths("hub")
    assert (repo_cache_dir(online["cache"], HUB_REPO) / "refs" / "main").read_text() == commit


def test_download_style_in_subfolder(online, tiny):
    fake = online["hub"]
    files = {f"styles/tiny/{k}": v for k, v in tiny["files"].items()}
    commit = fake.add_repo(HUB_REPO, {**files, "config.json": b'{"arch": "not-this-one"}'})
    write_registry(online, {"tiny-style": hub_entry(tiny["sha256"], commit, filename="styles/tiny/model.safetensors")})
    st = ps.load_style("tiny-style", device="cpu", backend="torch")
    assert_head_equal(st.model, tiny["head"])
    pointer = repo_cache_dir(online["cache"], HUB_REPO) / "snapshots" / commit / "styles" / "tiny" / "config.json"
    assert os.readlink(pointer) == f"../../../../blobs/{git_blob_sha1(tiny['files']['config.json'])}"


def test_download_wrong_checksum_removes_file(online, tiny):
    fake = online["hub"]
    commit = fake.add_repo(HUB_REPO, tiny["files"])
    write_registry(online, {"tiny-style": hub_entry(WRONG_SHA, commit)})

    with pytest.raises(ChecksumMismatchError) as exc:
        ps.load_style("tiny-style")

    assert tiny["sha256"] in str(exc.value) and WRONG_SHA in str(exc.value)
    repo = repo_cache_dir(online["cache"], HUB_REPO)
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
    commit = fake.add_repo(HUB_REPO, {"config.json": tiny["files"]["config.json"]})
    write_registry(online, {"tiny-style": hub_entry(tiny["sha256"], commit)})
    with pytest.raises(StyleDownloadError) as exc:
        ps.load_style("tiny-style")
    msg = str(exc.value)
    assert "'model.safetensors'" in msg and HUB_REPO in msg and commit in msg


def test_download_missing_config(online, tiny):
    fake = online["hub"]
    commit = fake.add_repo(HUB_REPO, {"model.safetensors": tiny["files"]["model.safetensors"]})
    write_registry(online, {"tiny-style": hub_entry(tiny["sha256"], commit)})
    with pytest.raises(StyleDownloadError, match=r"file 'config\.json' does not exist"):
        ps.load_style("tiny-style")


def test_download_missing_revision(online, tiny):
    online["hub"].add_repo(HUB_REPO, tiny["files"])
    write_registry(online, {"tiny-style": hub_entry(tiny["sha256"], revision="v9.9")})
    with pytest.raises(StyleDownloadError, match=rf"revision 'v9\.9' does not exist in {HUB_REPO}"):
        ps.load_style("tiny-style")


def test_download_unregistered_hub_id(online, tiny, caplog):
    fake = online["hub"]
    commit = fake.add_repo("someone/anime-style", tiny["files"])
    torch.manual_seed(0)
    with caplog.at_level(logging.WARNING, logger="portrait_stylize.sources.hub"):
        st = ps.load_style("someone/anime-style", device="cpu", backend="torch")
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
    st = ps.load_style(f"hf-hub:someone/anime-style@{commit}", device="cpu", backend="torch")
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


# --- the stall limit: a Hub that accepts the connection and then says nothing -------------------

#: The stall limit in these tests (30 s in use), and what may come on top of it: one back-off
#: pause of huggingface_hub (1 s) and a busy test machine.
STALL_S = 1.5
SLACK_S = 1.0 + 2.5


@pytest.fixture
def stall_limit(online, monkeypatch):
    """``online`` with the stall limit at :data:`STALL_S`, and without the request huggingface_hub's
    telemetry sends once per process to huggingface.co itself (whose fate here would shift the timings)."""
    monkeypatch.setattr(downloads, "STALL_S", STALL_S)
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_TELEMETRY", True)
    return online


def cache_files(cache: Path) -> list[str]:
    """Every file and link in the Hub cache, relative to it (``.incomplete`` downloads included)."""
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file() or p.is_symlink())


def test_silent_hub_gives_up_within_the_stall_limit(stall_limit, monkeypatch):
    with SilentServer() as silent:
        monkeypatch.setenv("HF_ENDPOINT", silent.url)
        error, elapsed = outcome_within(60, lambda: ps.load_style("someone/some-style"))
    assert isinstance(error, StyleNotCachedError), repr(error)
    assert STALL_S <= elapsed < STALL_S + SLACK_S, elapsed  # huggingface_hub alone: about 400 s
    assert silent.accepted >= 1
    msg = str(error)
    assert msg.startswith(f"style 'someone/some-style': cannot reach the Hub at {silent.url} "
                          "(someone/some-style@main/model.safetensors): the server did not answer within 1.5 s.")
    assert "HF_ENDPOINT" in msg and "HF_HUB_OFFLINE=1" in msg and "copy the cache" in msg
    assert not stall_limit["cache"].exists() or cache_files(stall_limit["cache"]) == []


def test_a_client_factory_the_program_set_is_kept(stall_limit, monkeypatch):
    """The stall watch wraps a huggingface_hub client factory set before (for a proxy, say)
    instead of replacing it."""
    made = []

    def own_factory():
        made.append(hf_http.default_client_factory())
        return made[-1]

    monkeypatch.setattr(hub, "_factory_set", False)  # as in a fresh process
    before = hf_http._GLOBAL_CLIENT_FACTORY
    set_client_factory(own_factory)
    try:
        with SilentServer() as silent:
            monkeypatch.setenv("HF_ENDPOINT", silent.url)
            error, elapsed = outcome_within(60, lambda: ps.load_style("someone/some-style"))
    finally:
        set_client_factory(before)
    assert isinstance(error, StyleNotCachedError) and elapsed < STALL_S + SLACK_S, (error, elapsed)
    assert made and all(hub._before_request in client.event_hooks["request"] for client in made)


def test_silent_hub_still_falls_back_to_the_cached_branch(stall_limit, tiny, monkeypatch):
    """huggingface_hub's own fallback when its first question times out (now after the stall
    limit at most): a branch already in the cache loads."""
    seed(stall_limit, tiny)
    write_registry(stall_limit, {"tiny-style": hub_entry(tiny["sha256"], revision=None)})
    loaded = {}
    with SilentServer() as silent:
        monkeypatch.setenv("HF_ENDPOINT", silent.url)
        error, elapsed = outcome_within(60, lambda: loaded.update(net=load_network(resolve_spec("tiny-style"))[0]))
    assert error is None and elapsed < 2 * STALL_S + SLACK_S, (error, elapsed)  # weights, then config.json
    assert silent.accepted == 2  # each was asked about first
    assert_head_equal(loaded["net"], tiny["head"])


def test_hub_stalling_mid_body_gives_up_and_leaves_no_file(stall_limit, tiny, monkeypatch):
    """Headers and half the weights, then nothing, and only headers to the retry: the clock runs
    from the last byte of body, not from each answer's headers, and nothing is cached under the
    file's name; the next download, once the Hub works, loads the right weights."""
    fake = stall_limit["hub"]
    commit = fake.add_repo(HUB_REPO, tiny["files"])
    fake.stalled_blobs.add(tiny["sha256"])
    write_registry(stall_limit, {"tiny-style": hub_entry(tiny["sha256"], commit)})
    # huggingface_hub's own wait between two chunks, below the stall limit, so that it resumes the body
    monkeypatch.setattr(hf_constants, "HF_HUB_DOWNLOAD_TIMEOUT", 0.4)

    error, elapsed = outcome_within(60, lambda: ps.load_style("tiny-style"))

    assert isinstance(error, StyleNotCachedError), repr(error)
    assert "the server did not answer within 1.5 s" in str(error)
    assert STALL_S <= elapsed < STALL_S + SLACK_S, elapsed
    assert len([r for r in fake.requests if r.server == "cdn"]) >= 2  # huggingface_hub did retry
    repo = repo_cache_dir(stall_limit["cache"], HUB_REPO)
    assert not os.path.lexists(repo / "snapshots" / commit / "model.safetensors")
    assert all(name.endswith(".incomplete") for name in cache_files(repo / "blobs"))
    assert {s.name: s.available_offline for s in ps.list_styles("tiny-*")} == {"tiny-style": False}

    fake.stalled_blobs.clear()
    assert_head_equal(load_network(resolve_spec("tiny-style"))[0], tiny["head"])


# --- cache folder -----------------------------------------------------------------------------


def test_cache_dir_expands_user_and_vars(env, tiny, monkeypatch):
    home = env["tmp"] / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", "~/hfcache")
    seed_hub_cache(home / "hfcache", HUB_REPO, tiny["files"], COMMIT)
    write_registry(env, {"tiny-style": hub_entry(WRONG_SHA)})
    assert hub.cache_dir() == home / "hfcache"
    assert {s.name: s.available_offline for s in ps.list_styles()}["tiny-style"] is True
    with pytest.raises(ChecksumMismatchError):
        ps.load_style("tiny-style")
    assert not list((repo_cache_dir(home / "hfcache", HUB_REPO) / "blobs").glob(tiny["sha256"]))


def test_style_without_cached_config_is_not_available_offline(env, tiny):
    seed(env, tiny, files={"model.safetensors": tiny["files"]["model.safetensors"]})
    write_registry(env, {"tiny-style": hub_entry(tiny["sha256"])})
    assert {s.name: s.available_offline for s in ps.list_styles()}["tiny-style"] is False
