"""What docs/cli.md and the README promise of each `portrait-stylize` option, checked on outputs.

The command runs in-process through ``main(argv)`` and is compared with the Python API given the
same options; only ``-v`` needs a subprocess (logging is set up once per process). tests/front_ends/test_cli.py
covers the console script, batches, masks and runtime errors; tests/front_ends/test_hostile.py hostile input.
"""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import portrait_stylize as ps
from portrait_stylize import cli
from portrait_stylize.models.serialization import save_style
from portrait_stylize.runtime import runners

from helpers import lively_style_model, psnr


def _photo(path: Path, width: int, height: int) -> Path:
    """A smooth random picture (so styles have edges and flat areas to work on)."""
    noise = np.random.default_rng(width * height).random((height // 8 + 2, width // 8 + 2, 3)) * 255
    Image.fromarray(noise.astype(np.uint8)).resize((width, height), Image.BICUBIC).save(path)
    return path


def _pixels(image) -> np.ndarray:
    return np.asarray(Image.open(image) if isinstance(image, Path) else image, np.int16)


def _assert_same_pixels(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape, (a.shape, b.shape)
    assert np.array_equal(a, b), f"{np.count_nonzero(a != b)} values differ, by up to {np.abs(a - b).max()}"


@pytest.fixture(scope="module")
def network_style(tmp_path_factory) -> Path:
    """A style folder with a TTN whose output depends on a wide neighbourhood (tiling shows)."""
    folder = tmp_path_factory.mktemp("style") / "lively"
    save_style(lively_style_model(name="lively"), folder)
    return folder


def _names(listing: str) -> list[str]:
    """Style names of a `portrait-stylize styles` listing (no header, no `source:` lines)."""
    return [line.split()[0] for line in listing.splitlines()[1:] if not line.startswith(" ")]


def test_styles_glob_lists_exactly_the_matching_names(capsys):
    assert cli.main(["styles"]) == 0
    everything = _names(capsys.readouterr().out)
    assert {"toon", "sketch"} <= set(everything)
    for pattern in ("*toon*", "s*", "*"):
        assert cli.main(["styles", pattern]) == 0
        assert _names(capsys.readouterr().out) == [n for n in everything if fnmatch.fnmatchcase(n, pattern)]
    assert cli.main(["styles", "*toon*"]) == 0
    assert _names(capsys.readouterr().out) == ["toon", "webtoon"]
    assert cli.main(["styles", "anime*"]) == 0
    assert _names(capsys.readouterr().out) == ["anime", "anime-portrait", "anime-portrait-v1"]


def test_strength_0_gives_the_photo_back_and_0_5_lies_halfway(tmp_path):
    photo = _photo(tmp_path / "p.png", 64, 48)
    results = {}
    for strength in ("0", "0.5", "1"):
        out = tmp_path / f"s{strength}.png"
        assert cli.main(["run", str(photo), "-o", str(out), "--style", "toon", "--strength", strength, "-q"]) == 0
        results[strength] = _pixels(out)
    before, full = _pixels(photo), results["1"]
    _assert_same_pixels(results["0"], before)
    assert np.abs(full - before).mean() > 10  # toon changes the photo, so halfway is somewhere else
    assert np.abs(2 * results["0.5"] - before - full).max() <= 2  # within rounding of the midpoint


@pytest.mark.parametrize("args,message", [
    (["--strength", "1.5"], "argument --strength: expected a number in [0, 1], got '1.5'"),
    (["--strength", "nan"], "argument --strength: expected a number in [0, 1], got 'nan'"),
    (["--harmonize", "-0.1"], "argument --harmonize: expected a number in [0, 1], got '-0.1'"),
    (["--backend", "tensorrt"], "argument --backend: invalid choice: 'tensorrt'"),
    (["--faces", "1,x"], "argument --faces: expected comma-separated face numbers like 1,3 (1 = leftmost); got '1,x'"),
    (["--regions", ","], "argument --regions: expected comma-separated region names like hair,lips"),
    (["--tile-size", "big"], "argument --tile-size: invalid int value: 'big'"),
    (["--nope"], "unrecognized arguments: --nope"),
])
def test_bad_arguments_exit_2_naming_the_argument(tmp_path, capsys, args, message):
    photo, out = _photo(tmp_path / "p.png", 40, 30), tmp_path / "o.png"
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", str(photo), "-o", str(out), "--style", "toon", *args])
    assert exit_.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]  # argparse: the usage, then one error line
    assert re.fullmatch(r"portrait-stylize( run)?: error: .*", last) and message in last, last
    assert not out.exists()


@pytest.mark.parametrize("args,message", [
    (["--tile-size", "16"], "error: tile_size must be an integer in [128, 65536], got 16"),
    (["--tile-size", "100"], "error: tile_size must be an integer in [128, 65536], got 100"),
    (["--max-pixels", "-3"], "error: max_pixels must be an integer in [1, 1099511627776], got -3"),
    (["--max-short-side", "8"], "error: max_short_side must be an integer in [16, 65536], got 8"),
])
def test_out_of_range_sizes_exit_2_with_one_line(tmp_path, capsys, args, message):
    photo, out = _photo(tmp_path / "p.png", 40, 30), tmp_path / "o.png"
    assert cli.main(["run", str(photo), "-o", str(out), "--style", "toon", *args]) == 2
    assert capsys.readouterr().err == message + "\n"
    assert not out.exists()


def test_each_backend_is_the_one_that_runs(network_style, tmp_path, monkeypatch):
    """`--backend` reaches the stylizer (which runs its networks with it), and the results agree:
    ONNX within one level of float32, bfloat16 close but not identical."""
    photo = _photo(tmp_path / "p.png", 96, 64)
    from portrait_stylize import pipeline

    loaded, load_style = [], pipeline.load_style

    def load_and_keep(*args, **kwargs):
        loaded.append(load_style(*args, **kwargs))
        return loaded[-1]

    monkeypatch.setattr(pipeline, "load_style", load_and_keep)  # the CLI imports it when it runs
    results = {}
    # auto's choice for this style's network (measured on it when auto first runs it); an int8
    # choice that this style's weights fail the floors for falls back on first use.
    probe = pipeline.load_style(str(network_style), device="cpu", face_backend="mediapipe")
    probe(photo)
    auto = probe.backend
    for backend in dict.fromkeys(("torch", "torch-bf16", "onnx", auto, "auto")):
        out = tmp_path / f"{backend}.png"
        assert cli.main(["run", str(photo), "-o", str(out), "--style", str(network_style), "--backend", backend,
                         "--device", "cpu", "--face-backend", "mediapipe", "-q"]) == 0
        ran = loaded[-1].backend
        assert ran == (auto if backend == "auto" else backend)
        runners = loaded[-1]._runners  # made on first use: what actually ran the network
        assert list(runners) == ["head"]
        runner = getattr(runners["head"], "runner", runners["head"])  # auto's first calls are timed: unwrap
        runner = getattr(runner, "net", runner)  # the PyTorch backends stream a TTN by rows: unwrap
        kind = (str(next(runner.parameters()).dtype) if isinstance(runner, torch.nn.Module) else "exported graph")
        assert kind == {"torch": "torch.float32", "torch-bf16": "torch.bfloat16"}.get(ran, "exported graph")
        results[backend] = _pixels(out)
    assert np.abs(results["onnx"] - results["torch"]).max() <= 1
    assert (results["torch-bf16"] != results["torch"]).any()
    assert psnr(results["torch-bf16"], results["torch"], peak=255.0) > 35
    _assert_same_pixels(results["auto"], results[auto])


def test_tile_size_0_never_tiles(network_style, tmp_path, monkeypatch):
    """A small default tile size stands in for the default 512, so that a small picture is tiled by
    default; `--tile-size 0` runs it in one piece. Network styles tile exactly, so both give the
    untiled pixels: what differs is the tiles the whole-image pass ran as."""
    from portrait_stylize import pipeline

    monkeypatch.setattr(cli, "DEFAULT_TILE_SIZE", 160)
    tile_sizes = []
    real_run_tiled = pipeline.run_tiled

    def recording(fn, image, tile_size, *args):
        tile_sizes.append(tile_size)
        return real_run_tiled(fn, image, tile_size, *args)

    monkeypatch.setattr(pipeline, "run_tiled", recording)
    photo = _photo(tmp_path / "p.png", 700, 200)  # wider than the tiles of a streamed network (4 x 160)
    options = ["--style", str(network_style), "--backend", "torch", "--device", "cpu", "--face-backend", "mediapipe"]
    results = {}
    for name, extra in (("untiled", ["--tile-size", "0"]), ("default", [])):
        assert cli.main(["run", str(photo), "-o", str(tmp_path / f"{name}.png"), *options, *extra, "-q"]) == 0
        results[name] = _pixels(tmp_path / f"{name}.png")
    assert tile_sizes == [None, 160 * runners.STREAM_TILE_FACTOR]  # torch streams the network by rows
    untiled = ps.load_style(network_style, tile_size=None, backend="torch", device="cpu", face_backend="mediapipe")
    _assert_same_pixels(results["untiled"], _pixels(untiled(photo)))
    _assert_same_pixels(results["default"], results["untiled"])


def test_max_pixels_limits_and_0_lifts_the_limit(tmp_path, capsys, monkeypatch):
    """A small default limit stands in for the default 50 MP, so that a 40x30 picture is over it."""
    monkeypatch.setattr(cli, "DEFAULT_MAX_PIXELS", 1000)
    photo = _photo(tmp_path / "p.png", 40, 30)
    expected = _pixels(ps.load_style("toon", max_pixels=None)(photo))
    for limit, refused in ((None, 1000), ("1199", 1199), ("1200", None), ("0", None)):
        out = tmp_path / f"{limit}.png"
        code = cli.main(["run", str(photo), "-o", str(out), "--style", "toon", "-q",
                         *(["--max-pixels", limit] if limit else [])])
        err = capsys.readouterr().err
        if refused:
            assert code == 1 and not out.exists()
            assert f"40x30 = 1,200 pixels exceeds the limit of {refused:,} pixels" in err
        else:
            assert code == 0 and err == ""
            _assert_same_pixels(_pixels(out), expected)


@pytest.mark.slow
def test_verbose_logs_what_happens(tmp_path):
    photo = _photo(tmp_path / "p.png", 40, 30)
    runs = {flags: subprocess.Popen([sys.executable, "-m", "portrait_stylize", *flags, "run", str(photo), "-o",
                                     str(tmp_path / f"o{len(flags)}.png"), "--style", "toon", "-q"],
                                    stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            for flags in ((), ("-v",))}
    errors = {flags: run.communicate(timeout=300)[1] for flags, run in runs.items()}
    assert [run.returncode for run in runs.values()] == [0, 0], errors
    assert errors[()] == ""
    assert "INFO portrait_stylize.loading: loaded style 'toon' (builtin, arch builtin)" in errors[("-v",)]


def test_regions_and_several_faces_match_the_python_api(portraits, tmp_path):
    """`--regions hair,lips --faces 1,2` does exactly what the same Python call does, on both faces
    of the group photo (tests/front_ends/test_cli.py: `--faces 2` alone leaves the left-hand face alone)."""
    group, out, masks = portraits[1], tmp_path / "out.png", tmp_path / "masks"
    assert cli.main(["run", str(group), "-o", str(out), "--style", "toon", "--regions", "hair,lips", "--faces", "1,2",
                     "--face-backend", "mediapipe", "--save-masks", str(masks), "-q"]) == 0
    expected = ps.load_style("toon", face_backend="mediapipe")(group, regions=["hair", "lips"], faces=[1, 2])
    _assert_same_pixels(_pixels(out), _pixels(expected))
    assert sorted(p.name for p in masks.iterdir()) == [f"{group.stem}_{n}.png" for n in ("hair", "lips", "weight")]
    weight = _pixels(masks / f"{group.stem}_weight.png")
    half = weight.shape[1] // 2
    assert weight[:, :half].max() == weight[:, half:].max() == 255  # both faces
