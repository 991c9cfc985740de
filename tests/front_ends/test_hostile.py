"""Hostile and careless input, through the entry points where a user meets it (Python API, CLI).

Each test is a regression test for a failure found by trying to break the package: one bad input
must never break the next request, never lose a user's file, and always end in our own error with
a message that names the problem. (App uploads: tests/front_ends/test_app.py; registry entries:
tests/sources/test_registry.py; downloads: tests/sources/test_converted_styles.py and
tests/sources/test_pin_and_downloads.py.)
"""

from __future__ import annotations

import json
import math
import os
import shutil
import stat
import struct
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

import portrait_stylize as ps
from portrait_stylize import ui
from portrait_stylize.common import files
from portrait_stylize.errors import InvalidStyleError, StyleDownloadError, StyleNotCachedError
from portrait_stylize.faces import get_face_backend, mediapipe_graphs
from portrait_stylize.imaging import io
from portrait_stylize.models import TTNStyle
from portrait_stylize.models.serialization import save_style
from portrait_stylize.sources import hub

from helpers import REPO, run_cli


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=cwd, env={"PORTRAIT_STYLIZE_FACE_BACKEND": "mediapipe"})


class TestDegenerateImages:
    """1. and 2.: images one pixel thin."""

    @pytest.mark.parametrize("shape", [(1, 5000, 3), (5000, 1, 3), (1, 1, 3), (2, 40, 3)])
    def test_thin_images_with_regions(self, shape):
        out = ps.load_style("toon", face_backend="mediapipe")(np.full(shape, 128, np.uint8),
                                                              regions=["skin", "background"])
        assert out.size == (shape[1], shape[0])

    def test_a_thin_image_does_not_poison_the_next_one(self, portraits):
        backend = get_face_backend("mediapipe")
        assert backend.detect(np.zeros((1, 500, 3), np.uint8)) == []
        assert backend.detect(np.zeros((500, 1, 3), np.uint8)) == []
        assert len(ps.detect_faces(portraits[1], backend="mediapipe")) == 2

    def test_an_error_inside_the_face_backend_does_not_break_the_next_image(self, portraits, monkeypatch):
        backend = get_face_backend("mediapipe")

        def broken(*args, **kwargs):
            raise RuntimeError("network failed")

        monkeypatch.setattr(mediapipe_graphs, "detect_faces", broken)
        with pytest.raises(RuntimeError, match="network failed"):
            backend.detect(np.asarray(Image.open(portraits[1]).convert("RGB")))
        monkeypatch.undo()
        assert len(ps.detect_faces(portraits[1], backend="mediapipe")) == 2

    @pytest.mark.slow
    def test_a_cli_folder_run_goes_on_after_a_thin_image(self, portraits, tmp_path):
        folder = tmp_path / "in"
        folder.mkdir()
        Image.new("RGB", (1, 200), "white").save(folder / "a_thin.png")
        shutil.copy(portraits[1], folder / "b_group.jpg")
        result = _cli("run", str(folder), "-o", f"{tmp_path / 'out'}/", "--regions", "lips", "-q",
                      "--save-masks", str(tmp_path / "masks"))
        assert result.returncode == 0, result.stderr
        lips = np.asarray(Image.open(tmp_path / "masks" / "b_group_lips.png"))
        assert lips.max() == 255  # the lips of the group photo were found after the thin image


class TestNeverOverwriteInputs:
    """3.: a user's photo is never overwritten, and no two inputs share one output."""

    def test_output_equal_to_the_input_is_refused(self, tmp_path):
        photo = tmp_path / "me.png"
        Image.new("RGB", (40, 30), (10, 20, 30)).save(photo)
        before = photo.read_bytes()
        result = _cli("run", str(photo), "-o", str(photo))
        assert result.returncode == 2 and "is the input image itself" in result.stderr
        assert result.stderr.count("\n") == 1 and photo.read_bytes() == before

    @pytest.mark.slow
    def test_in_place_folder_run_keeps_every_input_and_every_result(self, tmp_path):
        folder = tmp_path / "photos"
        folder.mkdir()
        Image.new("RGB", (40, 30), (200, 0, 0)).save(folder / "a.jpg")
        Image.new("RGB", (40, 30), (0, 200, 0)).save(folder / "a.png")
        Image.new("RGB", (40, 30), (0, 0, 200)).save(folder / "b.png")
        inputs = {p.name: p.read_bytes() for p in folder.iterdir()}
        result = _cli("run", str(folder), "-o", str(folder))
        assert result.returncode == 0, result.stderr
        assert {name: (folder / name).read_bytes() for name in inputs} == inputs
        assert sorted(p.name for p in folder.iterdir()) == ["a.jpg", "a.png", "a.toon.png", "a_1.toon.png",
                                                           "b.png", "b.toon.png"]
        assert result.stderr.count("so that no input") == 1 and "a.png -> " in result.stderr

    @pytest.mark.slow
    def test_two_styles_into_one_folder_keep_both_results(self, tmp_path):
        photo = tmp_path / "p.png"
        Image.new("RGB", (40, 30), (120, 90, 60)).save(photo)
        for style in ("toon", "sketch"):
            assert _cli("run", str(photo), "--style", style, "-o", f"{tmp_path / 'out'}/").returncode == 0
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p.sketch.png", "p.toon.png"]
        custom = _cli("run", str(photo), "-o", f"{tmp_path / 'custom'}/", "--name-pattern", "{style}-{name}.jpg")
        assert custom.returncode == 0 and (tmp_path / "custom" / "toon-p.jpg").is_file()

    @pytest.mark.parametrize("output,pattern,message", [
        ("result", None, "not an image file name and not a folder"),
        ("out/", "{style}.png", "must contain {name}"),
        ("out/", "{name}.txt", "end in an image suffix"),
        ("out/", "{name}-{size}.png", "may only use {name} and {style}"),
    ])
    def test_unclear_outputs_are_refused(self, tmp_path, output, pattern, message):
        photo = tmp_path / "p.png"
        Image.new("RGB", (40, 30)).save(photo)
        result = _cli("run", str(photo), "-o", str(tmp_path / output) + ("/" if output.endswith("/") else ""),
                      *(["--name-pattern", pattern] if pattern else []))
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert not (tmp_path / "result").exists() and not (tmp_path / "out").exists()

    def test_video_output_equal_to_the_input_is_refused(self, tmp_path):
        from portrait_stylize.video import stylize_video

        clip = tmp_path / "clip.mp4"
        clip.write_bytes(b"not really a video")
        with pytest.raises(ValueError, match="is the input video itself"):
            stylize_video(clip, clip, ps.load_style("toon"))
        assert clip.read_bytes() == b"not really a video"


def _tiny_style(folder: Path, **config) -> Path:
    save_style(TTNStyle(name="tiny"), folder)
    if config:
        path = folder / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
    return folder


class TestBrokenStyles:
    """4. and 5.: malformed safetensors, unbounded or non-finite config values, NaN weights."""

    def test_a_header_declaring_a_huge_shape(self, tmp_path):
        folder = _tiny_style(tmp_path / "s")
        raw = (folder / "model.safetensors").read_bytes()
        n = struct.unpack("<Q", raw[:8])[0]
        header = json.loads(raw[8:8 + n])
        key = next(k for k in header if k != "__metadata__")
        header[key] = {**header[key], "shape": [10**9, 10**9]}
        text = json.dumps(header).encode()
        (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:])
        with pytest.raises(InvalidStyleError, match="model.safetensors: not a valid safetensors file"):
            ps.load_style(folder)

    def test_a_polyglot_file(self, tmp_path):
        folder = _tiny_style(tmp_path / "s")
        (folder / "model.safetensors").write_bytes(struct.pack("<Q", 20) + b'{"a":1}' + b" " * 13 + b"PK\x03\x04")
        with pytest.raises(InvalidStyleError, match="not a valid safetensors file"):
            ps.load_style(folder)

    @pytest.mark.parametrize("config,fragment", [
        ({"head": {"channels": 10**9}}, "channels must be an integer in [1, 256]"),
        ({"head": {"num_blocks": 10**6}}, "num_blocks must be an integer in [0, 32]"),
        ({"head": {"gf_eps": float("nan")}}, "gf_eps must be a finite number"),
        ({"head": {"gf_radius": -1}}, "gf_radius must be an integer"),
        ({"input_range": [float("-inf"), 1]}, "input_range"),
        ({"image_pad_multiple": 10**9}, "image_pad_multiple"),
        ({"head": "big"}, "head must be an object"),
    ])
    def test_config_values_are_bounded_before_anything_is_built(self, tmp_path, config, fragment):
        folder = _tiny_style(tmp_path / "s", **config)
        with pytest.raises(InvalidStyleError) as exc:
            ps.load_style(folder)
        assert fragment in str(exc.value) and "config.json" in str(exc.value)

    def test_reference_style_generator_sizes_are_bounded(self, tmp_path):
        from portrait_stylize.models import build_network

        with pytest.raises(InvalidStyleError, match="attn_tokens"):
            build_network({"arch": "u2lffm", "generator": {"attn_tokens": 10**9}})
        with pytest.raises(InvalidStyleError, match="channels must be an integer"):
            build_network({"arch": "u2lffm", "generator": {"content_stages": [[4, 10**6, 32]]}})

    def test_nan_weights_are_refused_at_load(self, tmp_path):
        model = TTNStyle(name="nan")
        with torch.no_grad():
            model.head.conv_out.bias[0] = float("nan")
        folder = save_style(model, tmp_path / "s")
        with pytest.raises(InvalidStyleError, match="'head.conv_out.bias' holds NaN"):
            ps.load_style(folder)

    def test_non_finite_output_fails_clearly(self):
        model = TTNStyle(name="inf", input_range=[-1.0, 1.0])
        with torch.no_grad():
            model.head.conv_out.bias.fill_(float("inf"))  # as NaN weights that slipped past loading would
        st = ps.Stylizer(model, ps.StyleSpec(name="inf", kind="local"), backend="torch")
        with pytest.raises(InvalidStyleError, match="produced NaN or infinite values"):
            st(np.full((32, 32, 3), 100, np.uint8))


class TestNetworkFaults:
    """6.: raw httpx errors from the Hub become our errors, saying to retry or work offline."""

    @pytest.mark.parametrize("error,expected,fragment", [
        (httpx.RemoteProtocolError("peer closed connection"), StyleDownloadError, "broke off"),
        (httpx.ReadTimeout("timed out"), StyleNotCachedError, "cannot reach"),
        (httpx.ConnectError("refused"), StyleNotCachedError, "cannot reach"),
    ])
    def test_hub_transport_errors(self, monkeypatch, error, expected, fragment):
        def fail(*args, **kwargs):
            raise error

        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(hub, "hf_hub_download", fail)
        with pytest.raises(expected, match=fragment) as exc:
            ps.load_style("someone/some-style")
        assert "style 'someone/some-style'" in str(exc.value)


class TestOptionsThatCannotApply:
    """8. and 9.: options that cannot apply, and numbers that are not numbers."""

    def test_a_face_that_is_not_in_the_picture(self):
        with pytest.raises(ps.InvalidArgumentError, match=r"there is no face 99: 0 face\(s\) found$"):
            ps.load_style("toon")(np.zeros((32, 32, 3), np.uint8), faces=[99])

    def test_cli_faces_99_is_an_error(self, tmp_path):
        photo = tmp_path / "p.png"
        Image.new("RGB", (40, 30)).save(photo)
        result = _cli("run", str(photo), "-o", str(tmp_path / "o.png"), "--faces", "99")
        assert result.returncode != 0 and "there is no face 99" in result.stderr
        assert not (tmp_path / "o.png").exists()

    @pytest.mark.parametrize("value", [float("nan"), float("inf"), -5, 0, 7.5, "big", True])
    def test_max_side_must_be_a_real_size(self, value, tmp_path):
        photo = tmp_path / "p.png"
        Image.new("RGB", (40, 30)).save(photo)
        with pytest.raises(ui.UserError, match="largest side must be a whole number"):
            ui.run_photo(str(photo), "toon", max_side=value)

    @pytest.mark.parametrize("kwargs,fragment", [
        ({"tile_size": float("nan")}, "tile_size"), ({"tile_size": -1}, "tile_size"),
        ({"tile_overlap": 10**6}, "tile_overlap"), ({"max_pixels": -3}, "max_pixels"),
        ({"min_face_size": float("inf")}, "min_face_size"), ({"max_short_side": math.nan}, "max_short_side"),
    ])
    def test_stylizer_numbers(self, kwargs, fragment):
        with pytest.raises(ValueError, match=fragment):
            ps.load_style("toon", **kwargs)

    @pytest.mark.parametrize("kwargs", [{"strength": float("nan")}, {"harmonize": float("inf")},
                                        {"strength": {"skin": float("nan")}, "regions": ["skin"]}])
    def test_call_numbers(self, kwargs):
        with pytest.raises(ValueError, match="must be a finite number in"):
            ps.load_style("toon", face_backend="mediapipe")(np.zeros((32, 32, 3), np.uint8), **kwargs)

    @pytest.mark.parametrize("kwargs", [{"smoothing": float("nan")}, {"max_seconds": float("nan")},
                                        {"max_seconds": -1}])
    def test_video_numbers(self, tmp_path, kwargs):
        from portrait_stylize.video import stylize_video

        with pytest.raises(ValueError, match="smoothing|max_seconds"):
            stylize_video(tmp_path / "in.mp4", tmp_path / "out.mp4", ps.load_style("toon"), **kwargs)


class TestOutputs:
    """13.: results get the usual permissions, stale temporaries go, the app's results are bounded."""

    def test_results_follow_the_umask(self, tmp_path):
        old = os.umask(0o022)
        try:
            path = io.save_image(Image.new("RGB", (4, 4)), tmp_path / "r.png")
        finally:
            os.umask(old)
        assert stat.S_IMODE(path.stat().st_mode) == 0o644

    def test_stale_temporaries_of_a_killed_run_are_removed(self, tmp_path):
        stale = tmp_path / f"{files.TEMP_PREFIX}r.png.abc.png"
        fresh = tmp_path / f"{files.TEMP_PREFIX}q.png.def.png"  # maybe another run's save in progress
        stale.write_bytes(b"half")
        fresh.write_bytes(b"half")
        old = time.time() - 2 * files.STALE_SECONDS
        os.utime(stale, (old, old))
        io.save_image(Image.new("RGB", (4, 4)), tmp_path / "r.png")
        assert not stale.exists() and fresh.exists() and (tmp_path / "r.png").exists()

    def test_the_apps_result_folder_is_bounded(self, monkeypatch, tmp_path):
        from portrait_stylize.ui import result_files

        monkeypatch.setattr(result_files, "_results_dir", lambda: tmp_path)
        for i in range(6):
            path = result_files.result_path(f"r{i}.png", keep=3)
            path.write_bytes(b"x")
            old = time.time() - 100 + i
            os.utime(path.parent, (old, old))
        assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 3
        assert (tmp_path / path.parent.name / "r5.png").exists()

    def test_results_survive_other_requests_pruning_and_a_cleaned_tmp(self, monkeypatch, tmp_path):
        """Another worker deleted a folder between the listing and its stat (a lost result, the
        server's path shown to the user), and a tmp cleaner may remove the whole folder."""
        import pathlib

        from portrait_stylize.ui import result_files

        root = tmp_path / "results"
        monkeypatch.setattr(result_files, "_results_dir", lambda: root)
        first = result_files.result_path("a.png", keep=2)
        first.write_bytes(b"x")
        is_dir = pathlib.Path.is_dir

        def racing_is_dir(self):
            answer = is_dir(self)
            if self == first.parent and answer:
                shutil.rmtree(self)  # pruned by another request right after this look
            return answer

        monkeypatch.setattr(pathlib.Path, "is_dir", racing_is_dir)
        second = result_files.result_path("b.png", keep=2)
        monkeypatch.setattr(pathlib.Path, "is_dir", is_dir)
        second.write_bytes(b"y")
        assert second.read_bytes() == b"y" and not first.parent.exists()
        shutil.rmtree(root)  # a tmp cleaner
        third = result_files.result_path("c.png", keep=2)
        third.write_bytes(b"z")
        assert third.parent.parent == root and third.read_bytes() == b"z"


def test_the_readme_shows_the_one_argument_api_call():
    assert 'client.predict(handle_file(' in (REPO / "README.md").read_text()
