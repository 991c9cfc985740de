"""``portrait-stylize batch``: planned once, split across processes, resumable, atomic."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from portrait_stylize.batch import expand_inputs, output_paths, run_pairs, shard
from portrait_stylize.errors import InvalidArgumentError

from helpers import REPO, run_cli

EXAMPLES = REPO / "examples"


def _photos(folder: Path, n: int) -> list[Path]:
    """``n`` small distinct photos (crops of the public-domain examples)."""
    folder.mkdir(parents=True, exist_ok=True)
    source = Image.open(EXAMPLES / "hopper.jpg").convert("RGB").resize((96, 120))
    paths = []
    for i in range(n):
        path = folder / f"p{i:02d}.jpg"
        source.rotate(3 * i).save(path)
        paths.append(path)
    return paths


class TestPlan:
    def test_file_lists_folders_and_files_expand_in_order(self, tmp_path):
        photos = _photos(tmp_path / "in", 3)
        listing = tmp_path / "list.txt"
        listing.write_text("# chosen photos\nin/p02.jpg\n\nin/p00.jpg\n")
        assert expand_inputs([f"@{listing}", str(tmp_path / "in"), str(photos[1])]) == \
            [photos[2], photos[0], *photos, photos[1]]
        with pytest.raises(InvalidArgumentError, match="nope.txt: cannot read the file list"):
            expand_inputs([f"@{tmp_path / 'nope.txt'}"])

    def test_shards_cover_every_pair_once(self):
        items = list(range(11))
        parts = [shard(items, rank, 3) for rank in range(3)]
        assert sorted(i for part in parts for i in part) == items and [len(p) for p in parts] == [4, 4, 3]

    def test_outputs_never_collide_with_inputs_or_each_other(self, tmp_path):
        a, b = tmp_path / "x" / "a.jpg", tmp_path / "y" / "a.jpg"
        out = tmp_path / "out"
        assert [p.name for p in output_paths([a, b], out, False, "toon", "{name}.{style}.png")] == \
            ["a.toon.png", "a_1.toon.png"]


class TestRunPairs:
    def test_existing_results_are_skipped_and_one_failure_does_not_stop_the_rest(self, tmp_path):
        pairs = [(tmp_path / f"in{i}", tmp_path / f"out{i}") for i in range(4)]
        pairs[1][1].write_text("done before the crash")
        calls = []

        def stylize(src, dst):
            calls.append(src.name)
            if src.name == "in2":
                raise ValueError("cannot read it")
            dst.write_text("new")

        report = run_pairs(stylize, pairs)
        assert calls == ["in0", "in2", "in3"] and report.existing == [pairs[1][1]]
        assert (report.written == [pairs[0][1], pairs[3][1]]
                and report.failed == [(pairs[2][0], f"{pairs[2][0]}: cannot read it")])
        assert pairs[1][1].read_text() == "done before the crash"
        assert len(run_pairs(stylize, pairs, overwrite=True).written) == 3

    def test_a_damaged_earlier_result_is_made_again_and_reported(self, tmp_path):
        pairs = [(tmp_path / f"in{i}", tmp_path / f"out{i}") for i in range(3)]
        pairs[0][1].write_text("whole")
        pairs[1][1].write_text("")  # emptied by something else
        seen = []
        report = run_pairs(lambda src, dst: dst.write_text("new"), pairs, complete=lambda p: p.read_text() == "whole",
                           progress=lambda src, dst, outcome: seen.append(outcome))
        assert seen == ["existing", "redone", "written"] and report.existing == [pairs[0][1]]
        assert report.written == [pairs[1][1], pairs[2][1]] and report.redone == [pairs[1][1]]
        assert pairs[1][1].read_text() == "new" and pairs[0][1].read_text() == "whole"


class TestCommandLine:
    """Where only a folder can hold the results, -o is a folder; damaged results are not trusted."""

    def test_a_destination_that_can_only_be_a_folder_is_one(self, tmp_path, capsys):
        from portrait_stylize import cli

        photos = _photos(tmp_path / "in", 2)
        both = ["p00.sketch.png", "p01.sketch.png"]
        for command, sources, out, expected in (("batch", [str(photos[0])], "b", both[:1]),
                                                ("run", [str(tmp_path / "in")], "r", both),
                                                ("run", [str(p) for p in photos], "two", both)):
            assert cli.main([command, *sources, "-o", str(tmp_path / out), "--style", "sketch", "-q"]) == 0
            assert sorted(p.name for p in (tmp_path / out).iterdir()) == expected
        (tmp_path / "notes").write_text("a file")
        capsys.readouterr()
        assert cli.main(["batch", str(photos[0]), "-o", str(tmp_path / "notes"), "--style", "sketch"]) == 2
        assert "exists and is not a folder" in capsys.readouterr().err
        # One input and a bare name: a file or a folder? Still asked, not guessed.
        assert cli.main(["run", str(photos[0]), "-o", str(tmp_path / "what"), "--style", "sketch"]) == 2
        assert "add a suffix for a file" in capsys.readouterr().err and not (tmp_path / "what").exists()

    def test_a_truncated_or_empty_earlier_result_is_made_again(self, tmp_path, capsys):
        from portrait_stylize import cli

        photos = _photos(tmp_path / "in", 3)
        out = tmp_path / "out"
        assert cli.main(["batch", str(tmp_path / "in"), "-o", str(out), "--style", "sketch", "-q"]) == 0
        good = (out / "p00.sketch.png").read_bytes()
        (out / "p01.sketch.png").write_bytes(good[: len(good) // 2])
        (out / "p02.sketch.png").write_bytes(b"")
        capsys.readouterr()
        assert cli.main(["batch", str(tmp_path / "in"), "-o", str(out), "--style", "sketch"]) == 0
        captured = capsys.readouterr()
        assert "wrote 2 of 3 image(s)" in captured.out and "1 already there, 2 damaged earlier result(s) made again" \
            in captured.out
        assert captured.err.count("the earlier result was damaged") == 2
        for photo in photos:
            assert Image.open(out / f"{photo.stem}.sketch.png").size == (96, 120)


def test_the_batch_module_is_not_a_command_that_silently_does_nothing():
    result = subprocess.run([sys.executable, "-m", "portrait_stylize.batch", "in/", "-o", "out/"], capture_output=True,
                            text=True, cwd=REPO)
    assert result.returncode == 2 and "portrait-stylize batch" in result.stderr


@pytest.mark.slow
def test_batch_resumes_after_a_crash_without_redoing_finished_files(tmp_path):
    _photos(tmp_path / "in", 4)
    (tmp_path / "in" / "p99.jpg").write_bytes(b"truncated")
    out = tmp_path / "out"
    first = run_cli("batch", str(tmp_path / "in"), "-o", f"{out}/", "--style", "sketch", "-q", cwd=REPO)
    assert first.returncode == 1 and "p99.jpg" in first.stderr  # the broken file fails alone
    written = sorted(p.name for p in out.iterdir())
    assert written == [f"p0{i}.sketch.png" for i in range(4)]
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    (out / "p02.sketch.png").unlink()  # as if the crash came before this one was written
    (tmp_path / "in" / "p99.jpg").unlink()
    again = run_cli("batch", str(tmp_path / "in"), "-o", f"{out}/", "--style", "sketch", cwd=REPO)
    assert again.returncode == 0, again.stderr
    assert "wrote 1 of 4 image(s)" in again.stdout and "3 already there" in again.stdout
    for name, stamp in stamps.items():
        if name != "p02.sketch.png":
            assert (out / name).stat().st_mtime_ns == stamp  # not redone
    result = np.asarray(Image.open(out / "p02.sketch.png"))
    assert result.shape == (120, 96, 3) and (result[..., 0] == result[..., 1]).all()  # sketch is grey
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left
    refused = run_cli("batch", str(tmp_path / "in" / "p00.jpg"), "-o", str(tmp_path / "one.png"), cwd=REPO)
    assert refused.returncode == 2 and "batch writes to a folder" in refused.stderr


@pytest.mark.slow
def test_two_launched_processes_split_the_folder(tmp_path):
    """``accelerate launch --multi_gpu --num_processes 2 -m portrait_stylize batch`` (torchrun under
    the hood; on a machine without GPUs both processes use the CPU): each file is written once,
    by one of the two processes, and each says which share it did."""
    photos = _photos(tmp_path / "in", 6)
    accelerate = REPO / ".venv" / "bin" / "accelerate"
    launcher = [str(accelerate) if accelerate.exists() else shutil.which("accelerate"), "launch", "--multi_gpu",
                "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([*launcher, "-m", "portrait_stylize", "batch", str(tmp_path / "in"), "-o", f"{out}/",
                             "--style", "toon", "--face-backend", "mediapipe"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{p.stem}.toon.png" for p in photos)
    assert ("wrote 3 of 3 image(s)" in result.stdout and "[process 1/2]" in result.stdout
            and "[process 2/2]" in result.stdout)
