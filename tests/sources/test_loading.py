"""From a style name to a loaded network: ``resolve_spec``, ``load_network``, ``SOURCES``,
``is_available_offline`` (:mod:`portrait_stylize.loading`) and ``ps.load_style`` end to end, by
registry name, local style folder and Hub repo id, and the errors for names that are none of these.

Nothing here touches the network or ``~/.cache``: the ``env`` fixture (conftest.py) gives every
test a private ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE=1`` and a fake Hub that fails the test if contacted.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import portrait_stylize as ps
from portrait_stylize.errors import InvalidStyleError, StyleNotFoundError, UnsafeWeightsError
from portrait_stylize.loading import SOURCES, is_available_offline, load_network, resolve_spec
from portrait_stylize.models import TTNStyle
from portrait_stylize.sources.registry import KINDS, builtin_registry_path, read_registry

from helpers import (
    COMMIT,
    HUB_REPO,
    assert_head_equal,
    hub_entry,
    malicious_checkpoint,
    seed,
    write_registry,
)

#: The styles of the package's own checkpoints.json, in order.
PACKAGE_STYLES = list(read_registry(builtin_registry_path()).styles)


# --- a registered Hub style from the seeded cache ---------------------------------------------


@pytest.mark.parametrize("revision", [COMMIT, None], ids=["pinned_commit", "via_refs_main"])
def test_load_from_seeded_cache_is_bit_exact(env, tiny, revision):
    seed(env, tiny)
    write_registry(env, {"tiny-style": hub_entry(tiny["sha256"], revision)})
    torch.manual_seed(0)  # a model that silently skipped loading would have different random weights

    st = ps.load_style("tiny-style", device="cpu", backend="torch")

    assert isinstance(st.model, TTNStyle)
    assert_head_equal(st.model, tiny["head"])
    assert st.model.bg is None
    assert st.model.meta["name"] == "tiny"
    assert (st.spec.name, st.spec.kind, st.spec.repo_id, st.spec.revision) == ("tiny-style", "hub", HUB_REPO, revision)


# --- unknown name -----------------------------------------------------------------------------


def test_unknown_style_lists_known_names(env):
    write_registry(env, {"extra-one": {"kind": "builtin", "builtin": "toon", "licence": "mit"}})
    with pytest.raises(StyleNotFoundError) as exc:
        ps.load_style("no-such-style")
    msg = str(exc.value)
    assert msg.startswith("unknown style 'no-such-style'")
    assert f"Known styles: {', '.join(PACKAGE_STYLES + ['extra-one'])}." in msg
    assert isinstance(exc.value, KeyError)


def test_unknown_style_without_extra_registry(env):
    with pytest.raises(StyleNotFoundError) as exc:
        ps.load_style("nonexistent")
    assert f"Known styles: {', '.join(PACKAGE_STYLES)}." in str(exc.value)


# --- local style folders ----------------------------------------------------------------------


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
    st = ps.load_style(str(tiny["folder"]), device="cpu", backend="torch")
    assert st.spec.kind == "local" and st.spec.name == "tiny" and st.spec.available_offline
    assert_head_equal(st.model, tiny["head"])


# --- resolve_spec, SOURCES and is_available_offline ---------------------------------------------


def test_sources_cover_every_kind():
    assert tuple(SOURCES) == KINDS


def test_resolve_spec_registry_name_wins_over_a_folder(env, tiny, monkeypatch):
    monkeypatch.chdir(env["tmp"])
    shutil.copytree(tiny["folder"], env["tmp"] / "toon")  # a real style folder named like a registered style
    assert Path("toon").is_dir()
    spec = resolve_spec("toon")
    assert (spec.name, spec.kind, spec.builtin, spec.path) == ("toon", "builtin", "toon", None)
    st = ps.load_style("toon")
    assert st.spec.kind == "builtin" and not isinstance(st.model, TTNStyle)


def test_resolve_spec_folder_is_local_with_absolute_path(env, tiny, monkeypatch):
    monkeypatch.chdir(env["tmp"])
    shutil.copytree(tiny["folder"], env["tmp"] / "my-style")
    for name in ("my-style", Path("my-style"), "./my-style", str(env["tmp"] / "my-style")):
        spec = resolve_spec(name)
        assert spec.kind == "local", name
        assert spec.path == str(env["tmp"] / "my-style"), name
        assert Path(spec.path).is_absolute(), name
        assert spec.name == "" and spec.repo_id is None and spec.sha256 is None, name  # named when loaded


@pytest.mark.parametrize("text,repo_id,revision", [
    pytest.param("org/name@rev", "org/name", "rev", id="at_rev"),
    pytest.param("org/name", "org/name", None, id="main"),
    pytest.param(f"hf-hub:{HUB_REPO}@{COMMIT}", HUB_REPO, COMMIT, id="hf_hub_prefix_at_commit"),
])
def test_resolve_spec_hub_id(env, text, repo_id, revision):
    spec = resolve_spec(text)
    assert (spec.name, spec.kind, spec.repo_id, spec.revision, spec.filename, spec.sha256, spec.path) == (
        text, "hub", repo_id, revision, "model.safetensors", None, None)


def test_resolve_spec_none_is_the_registry_default(env):
    assert resolve_spec(None).name == "toon" and resolve_spec().kind == "builtin"
    write_registry(env, {}, default="sketch")
    spec = resolve_spec(None)
    assert (spec.name, spec.kind, spec.builtin) == ("sketch", "builtin", "sketch")


@pytest.mark.parametrize("garbage", ["no such style", "a/b/c", "/definitely/not/a/folder", "toon "])
def test_resolve_spec_garbage_lists_known_names(env, garbage):
    write_registry(env, {"extra-one": {"kind": "builtin", "builtin": "toon", "licence": "mit"}})
    with pytest.raises(StyleNotFoundError) as exc:
        resolve_spec(garbage)
    msg = str(exc.value)
    assert msg.startswith(f"unknown style {garbage!r}"), msg
    assert f"Known styles: {', '.join(PACKAGE_STYLES + ['extra-one'])}." in msg


def test_is_available_offline_builtin(env):
    for name in ("toon", "sketch"):
        assert is_available_offline(resolve_spec(name)) is True


def test_is_available_offline_local_folder(env, tiny):
    folder = env["tmp"] / "my-style"
    shutil.copytree(tiny["folder"], folder)
    spec = resolve_spec(str(folder))
    assert is_available_offline(spec) is True
    shutil.rmtree(folder)
    assert is_available_offline(spec) is False


@pytest.mark.parametrize("how", ["registered", "hub_id"])
def test_is_available_offline_hub(env, tiny, how):
    write_registry(env, {"tiny-style": hub_entry(tiny["sha256"])})
    spec = resolve_spec("tiny-style" if how == "registered" else f"{HUB_REPO}@{COMMIT}")
    assert spec.kind == "hub"
    assert is_available_offline(spec) is False
    seed(env, tiny)
    assert is_available_offline(spec) is True
    other = resolve_spec(f"{HUB_REPO}@{'f' * 40}")  # same repo, a commit that is not cached
    assert is_available_offline(other) is False


def test_load_network_fills_local_provenance_from_the_folder(env, tiny):
    network, spec = load_network(resolve_spec(str(tiny["folder"])))
    assert isinstance(network, TTNStyle) and not network.training
    assert (spec.kind, spec.name, spec.description, spec.available_offline) == (
        "local", "tiny", "tiny test style", True)
    assert_head_equal(network, tiny["head"])


# --- registry entries of kind "local" -----------------------------------------------------------


def test_registered_local_style_loads_bit_exact(env, tiny, monkeypatch):
    folder = env["tmp"] / "styles" / "mine"
    shutil.copytree(tiny["folder"], folder)
    write_registry(env, {"mine": {"kind": "local", "path": "styles/mine", "description": "my own"}})
    elsewhere = env["tmp"] / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the path is relative to the registry file, not to the cwd
    assert {s.name: s.available_offline for s in ps.list_styles("mine")} == {"mine": True}
    torch.manual_seed(0)  # a model that silently skipped loading would have different random weights

    st = ps.load_style("mine", device="cpu", backend="torch")

    assert isinstance(st.model, TTNStyle)
    assert st.spec.kind == "local" and st.spec.name == "mine"  # the registry's name, not the folder's config
    assert st.spec.path == str(folder)
    assert st.spec.description == "my own"  # the registry's own description is kept
    assert_head_equal(st.model, tiny["head"])


def test_registered_local_style_missing_folder(env):
    write_registry(env, {"gone": {"kind": "local", "path": "styles/gone"}})
    assert {s.name: s.available_offline for s in ps.list_styles("gone")} == {"gone": False}
    with pytest.raises(StyleNotFoundError) as exc:
        ps.load_style("gone")
    msg = str(exc.value)
    assert "'gone'" in msg
    assert str(env["tmp"] / "styles" / "gone") in msg
    assert "does not exist" in msg


def test_unregistered_folder_without_a_name_is_named_after_the_folder(env, tiny, monkeypatch):
    import json

    folder = env["tmp"] / "unnamed"
    shutil.copytree(tiny["folder"], folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "name": ""}))
    assert ps.load_style(str(folder), backend="torch").name == "unnamed"


def test_a_missing_folder_under_an_existing_one_is_not_taken_for_a_hub_id(online, monkeypatch):
    monkeypatch.chdir(online["tmp"])
    (online["tmp"] / "styles").mkdir()
    with pytest.raises(StyleNotFoundError, match="no style folder 'styles/mine' .*write 'hf-hub:' before it"):
        ps.load_style("styles/mine")
    assert online["hub"].requests == []
    assert resolve_spec("hf-hub:styles/mine").repo_id == "styles/mine"


# --- names that are none of a registered name, a style folder and a Hub id -----------------------


@pytest.fixture
def unrelated_folder(env, monkeypatch):
    """``tmp/things`` holding files that are no style's, with the current folder inside it."""
    folder = env["tmp"] / "things"
    (folder / "sub").mkdir(parents=True)
    for name in ("notes.txt", "photo.jpg", "pytorch_model.bin"):
        (folder / name).write_bytes(b"not a style")
    monkeypatch.chdir(folder)
    return folder


@pytest.mark.parametrize("name,said", [("", "the style name is empty. "),
                                       (" \t", "the style name is empty (only white space). ")])
def test_an_empty_name_is_an_error_not_the_current_folder(env, unrelated_folder, name, said):
    with pytest.raises(StyleNotFoundError) as exc:
        ps.load_style(name)
    msg = str(exc.value)
    assert msg.startswith(said) and f"A style is a registered name ({', '.join(PACKAGE_STYLES)})" in msg
    assert "notes.txt" not in msg and "things" not in msg


@pytest.mark.parametrize("name", ["..", ".", "sub", "things-abs"])
def test_a_folder_without_a_style_is_named_as_such_without_its_files(env, unrelated_folder, name):
    name = str(unrelated_folder) if name == "things-abs" else name
    with pytest.raises(StyleNotFoundError) as exc:
        resolve_spec(name)
    msg = str(exc.value)
    assert msg == (f"{name!r} is a folder but not a style folder: a style folder holds config.json and "
                   "model.safetensors (as `portrait-stylize convert` and `save_style` write them).")
    assert exc.value.exit_code == 2


def test_a_registered_local_entry_on_a_folder_without_a_style(env, unrelated_folder):
    write_registry(env, {"mine": {"kind": "local", "path": str(unrelated_folder)}})
    assert {s.name: s.available_offline for s in ps.list_styles("mine")} == {"mine": False}
    with pytest.raises(StyleNotFoundError) as exc:
        ps.load_style("mine")
    assert str(exc.value) == f"style 'mine': {unrelated_folder} is a folder but not a style folder: a style " \
                             "folder holds config.json and model.safetensors (as `portrait-stylize convert` and " \
                             "`save_style` write them)"


def test_a_half_copied_style_folder_still_says_what_is_missing(env, tiny):
    folder = env["tmp"] / "half"
    folder.mkdir()
    (folder / "config.json").write_bytes(tiny["files"]["config.json"])
    with pytest.raises(InvalidStyleError, match="no model.safetensors"):
        ps.load_style(str(folder))


def test_a_file_is_not_a_style(env, unrelated_folder):
    for name in ("notes.txt", str(unrelated_folder / "photo.jpg")):
        with pytest.raises(StyleNotFoundError) as exc:
            resolve_spec(name)
        assert str(exc.value) == (f"{name!r} is a file, not a style: give the style folder that holds config.json "
                                  "and model.safetensors.")


@pytest.mark.parametrize("name,reason", [
    pytest.param("x" * 10_000, " is not a valid style name (File name too long). A style is", id="10kB"),
    pytest.param("./" + "y" * 300, " is not a valid style name (File name too long). A style is",
                 id="long_path_part"),
    pytest.param("org/" + "z" * 200, " is not a valid style name: a Hub id is 'org/name', each part 1 to 96",
                 id="hub_name_over_96"),
    pytest.param("org/na--me", " is not a valid style name: a Hub id is", id="hub_double_dash"),
])
def test_an_invalid_name_is_said_to_be_invalid_and_cut_short(env, name, reason):
    with pytest.raises(StyleNotFoundError) as exc:
        ps.load_style(name)
    msg = str(exc.value)
    shown = repr(name if len(name) <= 80 else name[:79] + "…")
    assert msg.startswith(shown + reason), msg
    assert len(msg) < 400


def test_the_command_line_echoes_at_most_80_characters_of_a_name(env, tmp_path, capsys):
    from PIL import Image

    from portrait_stylize.cli import main

    photo, out = tmp_path / "p.png", tmp_path / "o.png"
    Image.new("RGB", (32, 32)).save(photo)
    assert main(["run", str(photo), "-o", str(out), "--style", "q" * 10_000]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: '" + "q" * 79 + "…' is not a valid style name") and len(err) < 400
    assert not out.exists()
