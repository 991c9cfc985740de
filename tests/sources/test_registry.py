"""The style registry: parsing and validating ``checkpoints.json`` files into :class:`StyleSpec`.

Covers :mod:`portrait_stylize.sources.registry` (``StyleSpec``, ``parse_registry``, ``read_registry``,
``load_registry``, ``parse_hub_id``), the extra registry named by ``PORTRAIT_STYLIZE_CHECKPOINTS``
(overrides, ``default``), the closed set of kinds, and ``list_styles``' glob. Nothing here touches
the network or ``~/.cache``: the ``env`` fixture (conftest.py) gives every test a private
``HF_HUB_CACHE`` and an offline fake Hub.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch

import portrait_stylize as ps
from portrait_stylize import loading
from portrait_stylize.errors import RegistryError, UnsafeWeightsError
from portrait_stylize.sources import registry
from portrait_stylize.sources.registry import StyleSpec, parse_hub_id, parse_registry, read_registry

from helpers import COMMIT, HUB_REPO, assert_head_equal, hub_entry, seed, write_registry

# --- malformed registry -----------------------------------------------------------------------


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
        pytest.param({"s": hub_entry(GOOD_SHA, repo_id="org/..")}, ["key 'repo_id'", "'org/..'"], id="repo_id_dotdot"),
        pytest.param({"s": hub_entry(GOOD_SHA, repo_id="org/" + "n" * 97)}, ["key 'repo_id' must be a Hub id",
                     "each part 1 to 96", "'org/nnn"], id="repo_id_over_96"),
        pytest.param({"s": hub_entry(GOOD_SHA, repo_id="org/my--style")}, ["key 'repo_id'", "without '--'"],
                     id="repo_id_double_dash"),
        pytest.param({"s": hub_entry(GOOD_SHA, filename="../model.safetensors")}, ["key 'filename'", "'..'"],
                     id="filename_dotdot"),
    ],
)
def test_bad_entry_in_an_extra_registry_is_skipped_with_a_warning(env, styles_or_doc, fragments, caplog):
    path = write_registry(env, {**styles_or_doc, "good": {"kind": "builtin", "builtin": "toon", "licence": "mit"}})
    with pytest.raises((RegistryError, UnsafeWeightsError)) as exc:  # validating the file itself: an error
        read_registry(path)
    for fragment in fragments:
        assert fragment in str(exc.value), (fragment, str(exc.value))
    with caplog.at_level("WARNING", logger="portrait_stylize.sources.registry"):
        names = [s.name for s in ps.list_styles()]
    assert "s" not in names and "good" in names and "toon" in names  # the other styles survive
    warning = next(r.getMessage() for r in caplog.records if "style 's'" in r.getMessage())
    assert warning.startswith(str(env["registry"])) and "skipped" in warning
    for fragment in fragments:
        assert fragment in warning, (fragment, warning)
    assert ps.load_style("toon").name == "toon"


@pytest.mark.parametrize(
    ("doc", "fragments"),
    [
        pytest.param({"format_version": 1, "default": "nope", "styles": {"s": hub_entry(GOOD_SHA)}},
                     ["key 'default' names 'nope'"], id="default_not_a_style"),
        pytest.param({"format_version": 2, "styles": {}}, ["key 'format_version' is 2"], id="format_version"),
        pytest.param({"styles": []}, ["'styles' object"], id="styles_not_object"),
    ],
)
def test_malformed_registry_file_raises_registry_error(env, doc, fragments):
    write_registry(env, raw=json.dumps(doc))
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
    path = write_registry(env, {"s": hub_entry(GOOD_SHA, filename=filename)})
    with pytest.raises(UnsafeWeightsError) as exc:
        read_registry(path)
    msg = str(exc.value)
    assert "key 'filename'" in msg and repr(filename) in msg and "safetensors" in msg
    assert "s" not in [spec.name for spec in ps.list_styles()]  # skipped when loaded as an extra registry
    with pytest.raises(ps.StyleNotFoundError):
        ps.load_style("s")


# --- the extra registry: overrides and default ------------------------------------------------


def test_extra_registry_overrides_builtin_by_name(env, tiny):
    seed(env, tiny)
    write_registry(env, {"toon": hub_entry(tiny["sha256"])}, default="toon")
    st = ps.load_style("toon", device="cpu", backend="torch")
    assert st.spec.kind == "hub"
    assert_head_equal(st.model, tiny["head"])


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


# --- list_styles glob -------------------------------------------------------------------------


def test_list_styles_glob_and_stylize_shortcut():
    assert [s.name for s in ps.list_styles("sk*")] == ["sketch"]
    arr = (torch.rand(40, 56, 3) * 255).to(torch.uint8).numpy()
    assert ps.stylize(arr, style="sketch").tobytes() == ps.load_style("sketch")(arr).tobytes()


# --- kinds, local entries, to_entry and parse_hub_id -------------------------------------------


def test_kinds_are_a_closed_set():
    assert registry.KINDS == ("builtin", "hub", "local", "modelscope", "url", "github")
    assert set(loading.SOURCES) == set(registry.KINDS)
    for f in dataclasses.fields(StyleSpec):
        if not f.metadata:  # name, available_offline: not registry keys
            assert f.name in ("name", "available_offline"), f.name
            continue
        assert set(f.metadata["kinds"]) <= set(registry.KINDS), f.name
        assert set(f.metadata["required"]) <= set(f.metadata["kinds"]), f.name


def _registry_file(folder: Path, styles: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "registry.json"
    path.write_text(json.dumps({"format_version": 1, "styles": styles}), encoding="utf-8")
    return path


def test_local_entry_path_is_relative_to_the_registry_file(tmp_path, monkeypatch):
    registry_dir = tmp_path / "registries"
    path = _registry_file(registry_dir, {"mine": {"kind": "local", "path": "styles/mine", "description": "mine"}})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # not the registry's folder: a cwd-relative path would differ

    spec = read_registry(path).styles["mine"]

    assert spec.kind == "local"
    assert spec.path == str(registry_dir / "styles/mine")
    assert Path(spec.path).is_absolute()
    assert (spec.name, spec.description, spec.repo_id, spec.builtin) == ("mine", "mine", None, None)


def test_local_entry_absolute_path_is_kept(tmp_path):
    target = tmp_path / "somewhere" / "style"
    path = _registry_file(tmp_path / "reg", {"mine": {"kind": "local", "path": str(target)}})
    assert read_registry(path).styles["mine"].path == str(target)


def test_local_entry_through_the_extra_registry(env):
    write_registry(env, {"mine": {"kind": "local", "path": "styles/mine"}})
    assert registry.load_registry().styles["mine"].path == str(env["registry"].parent / "styles/mine")
    assert {s.name: s.available_offline for s in ps.list_styles("mine")} == {"mine": False}  # no such folder yet
    folder = env["tmp"] / "styles" / "mine"
    folder.mkdir(parents=True)
    assert {s.name: s.available_offline for s in ps.list_styles("mine")} == {"mine": False}  # holds no style
    (folder / "model.safetensors").write_bytes(b"")  # listing looks for the files, loading reads them
    assert {s.name: s.available_offline for s in ps.list_styles("mine")} == {"mine": True}


def test_local_entry_without_path(tmp_path):
    path = _registry_file(tmp_path, {"mine": {"kind": "local", "description": "no folder"}})
    with pytest.raises(RegistryError) as exc:
        read_registry(path)
    msg = str(exc.value)
    assert msg.startswith(str(path)), msg
    assert "style 'mine'" in msg and "missing required key 'path'" in msg


@pytest.mark.parametrize("key,value", [("repo_id", "org/name"), ("sha256", "a" * 64), ("builtin", "toon")])
def test_local_entry_with_a_key_of_another_kind(tmp_path, key, value):
    path = _registry_file(tmp_path, {"mine": {"kind": "local", "path": "styles/mine", key: value}})
    with pytest.raises(RegistryError) as exc:
        read_registry(path)
    msg = str(exc.value)
    assert f"unknown key {key!r} for kind 'local'" in msg, msg
    assert "allowed: kind, description, licence, source, path" in msg, msg


BUILTIN_KEYS = {"kind", "description", "licence", "source", "builtin", "params"}
HUB_KEYS = {"kind", "description", "licence", "source", "repo_id", "revision", "filename", "sha256"}

HUB_SPEC = StyleSpec(name="tiny-style", kind="hub", description="tiny", licence="apache-2.0",
                     source="https://example.org/tiny", repo_id=HUB_REPO, revision=COMMIT,
                     filename="styles/tiny/model.safetensors", sha256="b" * 64)


def _package_toon() -> StyleSpec:
    return read_registry(registry.builtin_registry_path()).styles["toon"]


@pytest.mark.parametrize("spec,allowed", [
    pytest.param(_package_toon(), BUILTIN_KEYS, id="builtin_from_package"),
    pytest.param(StyleSpec(name="soft", kind="builtin", builtin="toon", licence="mit", params={"sigma": 2.5}),
                 BUILTIN_KEYS, id="builtin_with_params"),
    pytest.param(HUB_SPEC, HUB_KEYS, id="hub_pinned"),
    pytest.param(StyleSpec(name="hub-main", kind="hub", licence="mit", repo_id="org/name",
                           filename="model.safetensors", sha256="c" * 64), HUB_KEYS, id="hub_main"),
])
def test_to_entry_round_trips_through_parse_registry(spec, allowed):
    entry = spec.to_entry()
    assert set(entry) <= allowed, set(entry) - allowed
    assert entry["kind"] == spec.kind
    json.dumps(entry)  # a checkpoints.json entry: plain JSON
    assert parse_registry({"styles": {spec.name: entry}}).styles[spec.name] == spec


def test_to_entry_reference_value():
    assert HUB_SPEC.to_entry() == {
        "kind": "hub", "description": "tiny", "licence": "apache-2.0", "source": "https://example.org/tiny",
        "repo_id": HUB_REPO, "revision": COMMIT, "filename": "styles/tiny/model.safetensors", "sha256": "b" * 64,
    }
    entry = StyleSpec(name="hub-main", kind="hub", licence="mit", repo_id="org/name",
                      filename="model.safetensors", sha256="c" * 64).to_entry()
    assert "revision" not in entry  # None (main) is left out, not written as null
    assert "params" not in _package_toon().to_entry()  # empty params are left out


def test_to_entry_drops_keys_of_other_kinds():
    # A spec built in code can carry fields of another kind; its entry must still parse.
    spec = StyleSpec(name="mixed", kind="builtin", builtin="toon", licence="mit", repo_id="org/name",
                     sha256="d" * 64, path="/tmp/x", available_offline=True)
    entry = spec.to_entry()
    assert set(entry) <= BUILTIN_KEYS, set(entry) - BUILTIN_KEYS
    assert (entry["kind"], entry["builtin"], entry["licence"]) == ("builtin", "toon", "mit")
    parsed = parse_registry({"styles": {"mixed": entry}}).styles["mixed"]
    assert (parsed.repo_id, parsed.sha256, parsed.path, parsed.available_offline) == (None, None, None, False)


@pytest.mark.parametrize("text,expected", [
    ("org/name", ("org/name", None)),
    ("hf-hub:org/name", ("org/name", None)),
    ("hf-hub:org/name@v1.0", ("org/name", "v1.0")),
    (f"{HUB_REPO}@{COMMIT}", (HUB_REPO, COMMIT)),
    ("org/name@refs/pr/1", ("org/name", "refs/pr/1")),
    ("Org-1/my.style_v2", ("Org-1/my.style_v2", None)),
    ("not a repo", None),
    ("/abs/path", None),
    ("a/b/c", None),
    ("no-slash", None),
    ("org/name@", None),
    ("./org/name", None),
    ("hf-hub:", None),
    ("", None),
])
def test_parse_hub_id(text, expected):
    assert parse_hub_id(text) == expected


def test_conversion_options_are_checked_at_load(tmp_path):
    entry = {"kind": "url", "url": "https://example.org/w.tflite", "sha256": "b" * 64, "licence": "mit",
             "conversion": {"channel_order": "bgr", "sources": ["x"]}}
    path = _registry_file(tmp_path, {"w": entry})
    with pytest.raises(RegistryError, match="unknown option\\(s\\) sources; allowed: channel_order"):
        read_registry(path)


def test_conversion_options_match_convert():
    import inspect

    from portrait_stylize.convert.ttn_releases import convert
    from portrait_stylize.models.ttn import TTN

    # convert() takes its own options plus TTN overrides through **kwargs.
    accepted = set(inspect.signature(convert).parameters) | set(inspect.signature(TTN).parameters)
    assert set(registry.CONVERSION_OPTIONS) <= accepted - {"sources", "output", "ttn_overrides"}


@pytest.mark.slow
def test_the_users_own_settings_do_not_steer_the_tests(tmp_path):
    """A user's ``PORTRAIT_STYLIZE_*`` settings (an extra registry with a style "skx", offline mode, another
    cache) leave the registry tests' results unchanged (``conftest.no_ambient_state``)."""
    import os
    import subprocess

    from helpers import REPO as REPO_ROOT

    extra = tmp_path / "registry.json"
    extra.write_text('{"styles": {"skx": {"kind": "builtin", "builtin": "toon", "licence": "mit"}}}')
    env = {**os.environ, "PORTRAIT_STYLIZE_CHECKPOINTS": str(extra), "PORTRAIT_STYLIZE_OFFLINE": "1",
           "PORTRAIT_STYLIZE_CACHE": str(tmp_path / "cache"), "CI": "false"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/sources/test_registry.py", "-k", "not users_own_settings"],
                         cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:]
