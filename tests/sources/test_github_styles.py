"""Styles from PyTorch checkpoints in public GitHub repositories (registry kind ``github``), end to
end against :class:`fake_github.FakeGitHub`: pinned by commit, verified by the git blob SHA-1
before the file is unpickled, converted once, cached, then offline.

The served checkpoint is a random AnimeGANv2 generator in the published key layout
(``tests/models/test_animegan.py``); the registry entries are the real ones of checkpoints.json
with the host pointed at the stand-in (``PORTRAIT_STYLIZE_GITHUB_RAW``)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

import portrait_stylize as ps
from portrait_stylize.common import downloads
from portrait_stylize.errors import ChecksumMismatchError, RegistryError, StyleDownloadError, StyleNotCachedError
from portrait_stylize.sources import github
from portrait_stylize.sources.registry import builtin_registry_path, parse_registry

from animegan_reference import published_state_dict, reference
from fake_github import FakeGitHub
from fake_hub import git_blob_sha1
from helpers import write_registry

REPO = "bryandlee/animegan2-pytorch"
COMMIT = "25d7b017267208dfaf34026aa3425e518372aa2f"
PATH = "weights/face_paint_512_v2.pt"
STYLE = "test-animegan"


def checkpoint_bytes(seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    torch.save(published_state_dict(seed), buffer)
    return buffer.getvalue()


def entry(blob: str, **extra) -> dict:
    return {"kind": "github", "repo_id": REPO, "revision": COMMIT, "filename": PATH, "git_blob_sha1": blob,
            "arch": "animegan2", "licence": "mit", "description": "test", **extra}


@pytest.fixture(scope="module")
def served_bytes():
    return checkpoint_bytes()


@pytest.fixture
def gh(online, served_bytes):
    """``online`` plus a GitHub stand-in serving the checkpoint, named by the extra registry."""
    with FakeGitHub() as fake:
        online["monkeypatch"].setenv(github.ENV_RAW, fake.url)
        fake.add_file(REPO, COMMIT, PATH, served_bytes)
        write_registry(online, {STYLE: entry(git_blob_sha1(served_bytes))})
        yield fake


def cached_styles(env) -> list:
    root = env["tmp"] / "hf_home"
    return sorted(p.parent for p in root.rglob("config.json")) if root.exists() else []


def test_downloads_verifies_converts_and_then_works_offline(gh, online, served_bytes):
    assert {s.name: s.available_offline for s in ps.list_styles(STYLE)} == {STYLE: False}
    st = ps.load_style(STYLE, backend="torch")
    assert gh.requests == [f"{REPO}/{COMMIT}/{PATH}"]
    x = torch.rand(1, 3, 64, 80, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = ((reference(x * 2 - 1, published_state_dict()) + 1) / 2).clamp(0, 1)
        assert (st.model(x) - expected).abs().max() < 1e-4
    (folder,) = cached_styles(online)
    provenance = json.loads((folder / "provenance.json").read_text())
    assert provenance["revision"] == COMMIT and provenance["kind"] == "github"
    assert provenance["files"] == {PATH: __import__("hashlib").sha256(served_bytes).hexdigest(),
                                   f"{PATH} (git blob)": git_blob_sha1(served_bytes)}
    assert st.model.meta["source"] == f"https://github.com/{REPO}/blob/{COMMIT}/{PATH}"
    assert not list(folder.glob("*.pt"))  # only safetensors are kept

    online["monkeypatch"].setenv("HF_HUB_OFFLINE", "1")
    assert {s.name: s.available_offline for s in ps.list_styles(STYLE)} == {STYLE: True}
    ps.load_style(STYLE, backend="torch")
    assert len(gh.requests) == 1


def test_a_changed_byte_is_refused_before_it_is_unpickled(gh, online, served_bytes, monkeypatch):
    changed = bytearray(served_bytes)
    changed[len(changed) // 2] ^= 1
    gh.add_file(REPO, COMMIT, PATH, bytes(changed))
    loads = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a))
    with pytest.raises(ChecksumMismatchError) as info:
        ps.load_style(STYLE)
    message = str(info.value)
    assert f"records {git_blob_sha1(served_bytes)} for {PATH}" in message and "Nothing was kept" in message
    assert loads == [] and cached_styles(online) == []
    assert not [p for p in (online["tmp"] / "hf_home").rglob("*") if p.is_file() and not p.name.endswith(".lock")]


def test_offline_and_not_cached(gh, online):
    online["monkeypatch"].setenv("PORTRAIT_STYLIZE_OFFLINE", "1")
    with pytest.raises(StyleNotCachedError, match="downloaded and converted on first use.*offline mode is on"):
        ps.load_style(STYLE)
    assert gh.requests == []


def test_a_missing_file_names_the_address(gh, online):
    gh.status[f"{REPO}/{COMMIT}/{PATH}"] = 404
    with pytest.raises(StyleDownloadError, match=f"{gh.url}/{REPO}/{COMMIT}/{PATH} answered HTTP 404"):
        ps.load_style(STYLE)
    assert cached_styles(online) == []


def test_a_file_larger_than_the_bound_is_refused_while_it_streams(gh, online, monkeypatch):
    monkeypatch.setattr(github, "MAX_FILE_BYTES", 1000)
    with pytest.raises(StyleDownloadError, match="larger than the 1,000 bytes expected at most"):
        ps.load_style(STYLE)
    assert cached_styles(online) == []
    assert not [p for p in (online["tmp"] / "hf_home").rglob("*") if p.is_file() and not p.name.endswith(".lock")]


def test_unreachable_host(gh, online):
    online["monkeypatch"].setenv(github.ENV_RAW, "http://127.0.0.1:9")
    with pytest.raises(StyleNotCachedError, match="cannot reach http://127.0.0.1:9/"):
        ps.load_style(STYLE)


def test_the_raw_address_form():
    assert github.raw_url(REPO, COMMIT, "weights/a b.pt") == \
        f"https://raw.githubusercontent.com/{REPO}/{COMMIT}/weights/a%20b.pt"
    assert downloads.STALL_S > 0  # the same stall limit as every download


@pytest.mark.parametrize("key, value, message", [
    ("revision", "main", "'revision' must be a commit id: 40 lowercase hex digits"),
    ("git_blob_sha1", "D75102F8F201DDAF8DBE6B913B1A97585B55F838", "'git_blob_sha1' must be the file's git blob SHA-1"),
    ("repo_id", "bryandlee", "'repo_id' must be a GitHub 'owner/name'"),
    ("repo_id", "../etc", "'repo_id' must be a GitHub 'owner/name'"),
    ("filename", "../weights/x.pt", "'filename' must be a relative path"),
    ("arch", "vgg", "'arch' must be one of animegan2"),
    ("conversion", {"channel_order": "bgr"}, "unknown option(s) channel_order; allowed: face_size, whole_pixels"),
])
def test_registry_entries_are_checked(key, value, message):
    good = entry("d75102f8f201ddaf8dbe6b913b1a97585b55f838")
    parse_registry({"styles": {"x": good}})
    with pytest.raises(RegistryError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_registry({"styles": {"x": {**good, key: value}}})


def test_the_registry_knows_exactly_the_convertible_architectures_and_their_options():
    from portrait_stylize.convert.checkpoints import READERS
    from portrait_stylize.models.animegan import AnimeGANStyle
    from portrait_stylize.sources.registry import CHECKPOINT_ARCHS, CHECKPOINT_OPTIONS

    assert tuple(READERS) == CHECKPOINT_ARCHS and set(CHECKPOINT_OPTIONS) == set(AnimeGANStyle().architecture_config())


def test_the_registered_animegan_styles_are_pinned():
    styles = json.loads(builtin_registry_path().read_text())["styles"]
    pinned = {name: s for name, s in styles.items() if s["kind"] == "github"}
    assert {s["filename"]: s["git_blob_sha1"] for s in pinned.values()} == {
        "weights/face_paint_512_v2.pt": "d75102f8f201ddaf8dbe6b913b1a97585b55f838",
        "weights/face_paint_512_v1.pt": "19c1a1da4d9580186109a2b055d91044e5127de6",
        "weights/celeba_distill.pt": "3b7ea61b02254980831cc3bc77af30666dbc999c"}
    assert all(s["repo_id"] == REPO and s["revision"] == COMMIT and s["licence"] == "mit" for s in pinned.values())


def test_the_registered_styles_download_from_the_stand_in(online):
    """Each real entry of checkpoints.json, served by the stand-in: fetched, verified, converted, run."""
    styles = {n: s for n, s in json.loads(builtin_registry_path().read_text())["styles"].items()
              if s["kind"] == "github"}
    with FakeGitHub() as fake:
        online["monkeypatch"].setenv(github.ENV_RAW, fake.url)
        for seed, (name, spec) in enumerate(styles.items()):
            data = checkpoint_bytes(seed)
            fake.add_file(REPO, COMMIT, spec["filename"], data)
            write_registry(online, {name: {**spec, "git_blob_sha1": git_blob_sha1(data)}})
            st = ps.load_style(name, backend="torch")
            assert np.asarray(st(np.full((40, 48, 3), 128, np.uint8))).shape == (40, 48, 3)
            assert st.model.face_size == (256 if spec["filename"].endswith("celeba_distill.pt") else 512)
        assert sorted(fake.requests) == sorted(f"{REPO}/{COMMIT}/{s['filename']}" for s in styles.values())
