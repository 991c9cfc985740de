"""The ``portrait-stylize`` command end to end, in a subprocess, with the network off."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import gray, run_cli

CLI = Path(sys.executable).with_name("portrait-stylize")


def test_styles_lists_builtins_as_offline():
    result = run_cli("styles")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["name", "kind", "licence", "offline"]
    rows = {line.split()[0]: line.split()[1:4] for line in lines[1:]}
    assert rows["toon"] == ["builtin", "apache-2.0", "yes"] and rows["sketch"] == ["builtin", "apache-2.0", "yes"]


@pytest.mark.slow
def test_console_script_runs_one_portrait(fixtures, tmp_path):
    assert CLI.exists(), "the console script is not installed (pip install -e .)"
    src = fixtures / "faces" / "cropped" / "Julia_Roberts_crop.png"
    out = tmp_path / "julia_sketch.png"
    result = run_cli("run", str(src), "--style", "sketch", "-o", str(out), exe=[str(CLI)])
    assert result.returncode == 0, result.stderr
    art, photo = Image.open(out), Image.open(src)
    assert art.size == photo.size
    assert np.abs(gray(art) - gray(photo)).mean() > 20


@pytest.mark.slow
def test_batch_continues_past_bad_file(fixtures, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("Adele_crop.png", "Paris_Hilton_crop.png"):
        shutil.copy(fixtures / "faces" / "cropped" / name, inputs / name)  # temporary copy, never committed
    (inputs / "broken.png").write_text("not an image")
    out = tmp_path / "out"
    result = run_cli("run", str(inputs), "-o", f"{out}/", "-q")
    assert result.returncode == 1
    assert sorted(p.name for p in out.iterdir()) == ["Adele_crop.toon.png", "Paris_Hilton_crop.toon.png"]
    assert "1 of 3 image(s) failed" in result.stderr and "broken.png: not an image" in result.stderr
    assert result.stderr.count("broken.png") == 1  # the summary names the file once
    assert Image.open(out / "Adele_crop.toon.png").size == (512, 512)


#: The command's ``main`` in a subprocess that says on stdout whether PyTorch was imported.
_SAYS_IF_TORCH = [sys.executable, "-c", "import sys; from portrait_stylize.cli import main; rc = main(sys.argv[1:]); "
                  "print('torch' in sys.modules); sys.exit(rc)"]


@pytest.mark.parametrize("args,message,before_torch", [
    (["run", "x.png", "--style", "nope", "-o", "o.png"], "unknown style 'nope'. Known styles: toon, sketch", True),
    (["run", "a.png", "b.png", "-o", "o.png"], "2 inputs need an output folder", True),
    (["run", "missing.png", "-o", "o.png"], "no such file or folder: missing.png", True),
    (["run", "x.png", "--device", "tpu9", "-o", "o.png"], "invalid device 'tpu9'", False),
])
def test_errors_are_one_line_and_exit_2(tmp_path, args, message, before_torch):
    """Mistakes in the command line itself are answered before PyTorch is imported (0.1-0.6 s
    instead of about 3)."""
    for name in ("x.png", "a.png", "b.png"):  # real inputs, so that each case fails for its own reason
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    result = run_cli(*args, cwd=tmp_path, exe=_SAYS_IF_TORCH)
    assert result.returncode == 2, result.stderr  # the README: bad arguments exit 2
    assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr  # one line
    assert "Traceback" not in result.stderr
    assert result.stdout.strip() == str(not before_torch)


@pytest.mark.slow
def test_run_with_regions_faces_and_masks(fixtures, tmp_path):
    src = fixtures / "faces" / "whole" / "Blake_Lively.jpg"
    out, masks = tmp_path / "lips.png", tmp_path / "masks"
    result = run_cli("run", str(src), "-o", str(out), "--regions", "lips,eyes", "--faces", "2", "--harmonize", "0",
                  "--face-backend", "mediapipe", "--save-masks", str(masks), "-q")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in masks.iterdir()) == ["Blake_Lively_eyes.png", "Blake_Lively_lips.png",
                                                       "Blake_Lively_weight.png"]
    weight = np.asarray(Image.open(masks / "Blake_Lively_weight.png"))
    changed = (np.asarray(Image.open(out)) != np.asarray(Image.open(src).convert("RGB"))).any(-1)
    assert changed.any() and not (changed & (weight == 0)).any()
    assert weight[:, : weight.shape[1] // 2].max() == 0  # face 2 is the right-hand one
    bad = run_cli("run", str(src), "-o", str(tmp_path / "ears.png"), "--regions", "ears", "--face-backend", "mediapipe")
    assert bad.returncode == 2 and "cannot see 'ears'" in bad.stderr and bad.stderr.count("\n") == 1
    assert not (tmp_path / "ears.png").exists()


def test_one_unreadable_image_is_one_line_naming_it_once(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    result = run_cli("run", str(broken), "-o", str(tmp_path / "out.png"))
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("broken.png") == 1, result.stderr


@pytest.mark.slow
def test_one_progress_display_tiles_for_one_image_the_batch_bar_for_several(tmp_path):
    for name in ("a.png", "b.png"):
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 700, 3), np.uint8)).save(tmp_path / name)
    one = run_cli("run", str(tmp_path / "a.png"), "-o", str(tmp_path / "one.png"), "--tile-size", "256")
    batch = run_cli("run", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o", f"{tmp_path / 'out'}/",
                 "--tile-size", "256")
    assert one.returncode == batch.returncode == 0
    assert "tiles" in one.stderr
    assert "tiles" not in batch.stderr and "stylizing (toon)" in batch.stderr


def test_help_and_argument_errors_answer_without_loading_torch():
    """--help and bad arguments never import torch, MediaPipe or Gradio (they take seconds)."""
    code = ("import sys\nfrom portrait_stylize.cli import main\n"
            "for argv in (['--help'], ['run', 'x.png', '-o', 'y.png', '--strength', '2']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in ('torch', 'mediapipe', 'gradio', 'numpy') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout


def test_styles_lists_without_loading_torch_in_well_under_a_second(tmp_path):
    """`portrait-stylize styles` reads the registry and the cache only: no torch, MediaPipe or
    Gradio, and it answers in under a second (0.4 s measured on 2 cores)."""
    code = ("import sys, time\nt = time.perf_counter()\nfrom portrait_stylize.cli import main\n"
            "code = main(['styles'])\nseconds = time.perf_counter() - t\n"
            "print(code, sorted(m for m in ('torch', 'mediapipe', 'gradio') if m in sys.modules), seconds)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = result.stdout.strip().splitlines()
    assert any(line.startswith("toon ") for line in lines), result.stdout
    code, loaded, seconds = lines[-1].split(" ", 1)[0], *lines[-1].split(" ", 1)[1].rsplit(" ", 1)
    assert (code, loaded) == ("0", "[]"), lines[-1]
    assert float(seconds) < 1.0, lines[-1]


class TestExitStatus:
    """docs/cli.md "Exit status": 2 = the command line or its arguments are wrong, 1 = the run
    failed, 0 = done; decided by the error classes (``exit_code``), the same in every command."""

    @pytest.fixture
    def files(self, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # nothing downloaded or converted yet
        Image.new("RGB", (16, 16), "grey").save(tmp_path / "ok.png")
        (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
        return tmp_path

    @pytest.mark.parametrize("args,status,message", [
        (["run", "ok.png", "-o", "out.png", "--style", "sketch"], 0, ""),
        (["run", "ok.png", "-o", "out.png", "--strength", "1.5"], 2, "expected a number in [0, 1]"),
        (["run", "ok.png", "-o", "out.png", "--style", "no-such-style"], 2, "no-such-style"),
        (["run", "missing.png", "-o", "out.png"], 2, "no such file or folder: missing.png"),
        (["run", "ok.png", "-o", "ok.png"], 2, "is the input image itself"),
        (["run", "ok.png", "-o", "out"], 2, "not an image file name and not a folder"),
        (["run", "broken.png", "-o", "out.png"], 1, "broken.png"),
        (["run", "ok.png", "-o", "out.png", "--style", "whitebox"], 1, "offline"),
        (["evaluate", "--style", "toon", "--photos", "nowhere"], 2, "--photos: no such folder"),
    ])
    def test_each_kind_of_error_has_its_status(self, files, capsys, args, status, message):
        from portrait_stylize.cli import main

        try:
            code = main(args)
        except SystemExit as exc:  # argparse's own refusals
            code = exc.code
        err = capsys.readouterr().err
        assert code == status, err
        assert message in err and "Traceback" not in err
        assert (files / "out.png").exists() == (status == 0)

    def test_every_error_class_says_how_the_command_ends(self):
        import inspect

        from portrait_stylize import errors

        classes = [c for _, c in inspect.getmembers(errors, inspect.isclass)
                   if issubclass(c, errors.PortraitStylizeError)]
        assert len(classes) >= 15
        usage = {c.__name__ for c in classes if c.exit_code == errors.EXIT_USAGE}
        assert usage == {"InvalidArgumentError", "StyleNotFoundError"}
        assert all(c.exit_code in (errors.EXIT_FAILED, errors.EXIT_USAGE) for c in classes)
