"""Hostile inputs to the training scripts: corrupt checkpoints and broken data folders.

A corrupt newest checkpoint makes ``--resume_from_checkpoint latest`` fall back to the newest
intact one (one line says which was skipped and why); a corrupt checkpoint named explicitly, or
a broken data folder, ends the script with one ``error: ...`` line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from train import common
from train.data import load_set

from helpers import REPO

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
SCRIPT = str(REPO / "train" / "tttn.py")
TINY = ["--resolution", "16", "--batch-size", "1", "--content-net", "random", "--superpixel-segments", "4",
        "--expression-weight", "0", "--channels", "4", "--num-blocks", "1"]


def _images(folder, n: int = 3, seed: int = 0):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.random.default_rng(seed + i).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(
            folder / f"{i}.png")
    return folder


def _truncated_png(path):
    Image.fromarray(np.random.default_rng(9).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, cwd=REPO, timeout=300)


def _one_line_error(result: subprocess.CompletedProcess) -> str:
    """The run ended with exit status 2 and exactly one ``error:`` line on stderr, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0]), result.stderr[-3000:]
    return errors[0]


# ---------------------------------------------------------------------------- broken data folders


def _missing(tmp_path):
    return tmp_path / "nope", "folder not found"


def _empty(tmp_path):
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty", "empty"


def _not_images(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    (folder / "data.csv").write_text("a,b")
    return folder, "no images"


def _all_unreadable(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"not a jpeg at all")
    (folder / "b.png").write_bytes(b"")
    _truncated_png(folder / "c.png")
    return folder, "none of the 3 files could be used"


def _a_file(tmp_path):
    _images(tmp_path / "imgs", 1)
    return tmp_path / "imgs" / "0.png", "not a folder"


_BROKEN = {"missing": _missing, "empty": _empty, "not-images": _not_images, "all-unreadable": _all_unreadable,
           "a-file": _a_file}


def _cases():
    """Every kind of broken folder under each flag; the default run takes one flag per kind, in
    turn (each case runs the script: 2 s), CI's slow run the other."""
    for i, (name, broken) in enumerate(_BROKEN.items()):
        for j, flag in enumerate(("--photos", "--styles")):
            marks = () if (i + j) % 2 == 0 else (pytest.mark.slow,)
            yield pytest.param(broken, flag, id=f"{flag}-{name}", marks=marks)


@pytest.mark.parametrize(("broken", "flag"), list(_cases()))
def test_broken_data_folder_is_a_one_line_error(tmp_path, broken, flag):
    good = _images(tmp_path / "good")
    bad, why = broken(tmp_path)
    folders = {"--photos": str(good), "--styles": str(good), flag: str(bad)}
    result = _script(*[x for kv in folders.items() for x in kv], "--output", str(tmp_path / "out"),
                     "--max-steps", "1", *TINY)
    line = _one_line_error(result)
    assert flag in line and str(bad) in line and why in line, line


def test_unreadable_images_among_good_ones_are_skipped_with_a_warning(tmp_path, capsys):
    folder = _images(tmp_path / "mixed", 2)
    (folder / "garbage.jpg").write_bytes(b"\xff\xd8 nonsense")
    _truncated_png(folder / "truncated.png")
    (folder / "zero.webp").write_bytes(b"")
    found = load_set([folder], "--styles", 16, progress=True)
    assert len(found.samples) == 2 and found.skipped["unreadable"] == 3
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 3, err
    for name, why in (("garbage.jpg", "not an image"), ("truncated.png", "truncated"), ("zero.webp", "empty")):
        assert any(str(folder / name) in w and why in w for w in warnings), (name, warnings)
    assert sorted(str(p.name) for p, _ in found.unreadable) == ["garbage.jpg", "truncated.png", "zero.webp"]


def test_any_failure_to_read_an_image_skips_it(tmp_path, monkeypatch):
    """Not only the library's InvalidImageError: e.g. a file without read permission."""
    import train.data

    folder = _images(tmp_path / "perm", 2)
    real = train.data.load_image

    def load_image(path, *args, **kwargs):
        if path.name == "1.png":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(train.data, "load_image", load_image)
    found = load_set([folder], "--styles", 16, progress=False)
    assert len(found.samples) == 1
    assert found.unreadable == [(folder / "1.png", f"{folder / '1.png'}: Permission denied (PermissionError)")]


# ---------------------------------------------------------------------------- corrupt checkpoints


@pytest.fixture
def run(tmp_path):
    """A tiny Accelerate run (one Linear, Adam) with checkpoints 1, 2 and 3 whose weights equal the step."""
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    net = torch.nn.Linear(4, 4)
    net, _ = accelerator.prepare(net, torch.optim.Adam(net.parameters()))
    out = tmp_path / "OUT"
    for step in (1, 2, 3):
        with torch.no_grad():
            net.weight.fill_(step)
        common.save_checkpoint(accelerator, out, step, keep=5)
    with torch.no_grad():
        net.weight.fill_(-1)
    return accelerator, net, out


def _resume(accelerator, out, how="latest") -> int:
    return common.resume(accelerator, argparse.Namespace(resume_from_checkpoint=how), out, "hostile")


def _empty_model(c):
    (c / "model.safetensors").write_bytes(b"")


def _truncated_model(c):
    data = (c / "model.safetensors").read_bytes()
    (c / "model.safetensors").write_bytes(data[:-20])


def _garbage_optimizer(c):
    (c / "optimizer.bin").write_bytes(b"garbage" * 40)


def _flipped_random_states(c):
    data = bytearray((c / "random_states_0.pkl").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (c / "random_states_0.pkl").write_bytes(bytes(data))


def _missing_random_states(c):
    (c / "random_states_0.pkl").unlink()


def _emptied(c):
    shutil.rmtree(c)
    c.mkdir()


def _legacy_truncated(c):  # a checkpoint saved before checkpoints had a manifest
    for f in c.glob("manifest*"):
        f.unlink()
    _truncated_model(c)


CORRUPTIONS = [_empty_model, _truncated_model, _garbage_optimizer, _flipped_random_states, _missing_random_states,
               _emptied, _legacy_truncated]


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=[c.__name__.strip("_") for c in CORRUPTIONS])
def test_latest_falls_back_to_the_newest_intact_checkpoint(run, capsys, corrupt):
    accelerator, net, out = run
    corrupt(out / "checkpoints" / "checkpoint-3")
    assert _resume(accelerator, out) == 2
    assert torch.all(net.weight == 2)
    captured = capsys.readouterr()
    skipped = [line for line in (captured.out + captured.err).splitlines() if "checkpoint-3" in line]
    assert len(skipped) == 1 and "skipped" in skipped[0], captured
    assert "checkpoint-2 (step 2)" in captured.out
    # set aside, so the next resume and the pruning of old checkpoints no longer see it
    assert [p.name for p in common.checkpoint_dirs(out)] == ["checkpoint-1", "checkpoint-2"]


def test_the_reason_is_named(run, capsys):
    accelerator, _, out = run
    _empty_model(out / "checkpoints" / "checkpoint-3")
    _resume(accelerator, out)
    line = next(line for line in capsys.readouterr().err.splitlines() if "checkpoint-3" in line)
    assert "model.safetensors" in line, line


def test_intact_checkpoints_with_and_without_manifest_resume(run, capsys):
    accelerator, net, out = run
    assert _resume(accelerator, out) == 3 and torch.all(net.weight == 3)
    (out / "checkpoints" / "checkpoint-3" / common.MANIFEST).unlink()  # as saved before manifests existed
    with torch.no_grad():
        net.weight.fill_(-1)
    assert _resume(accelerator, out) == 3 and torch.all(net.weight == 3)
    assert "skipped" not in capsys.readouterr().err


def test_no_intact_checkpoint_starts_from_step_0(run, capsys):
    accelerator, net, out = run
    for step in (1, 2, 3):
        _garbage_optimizer(out / "checkpoints" / f"checkpoint-{step}")
    assert _resume(accelerator, out) == 0
    assert torch.all(net.weight == -1), "nothing of a corrupt checkpoint may be loaded"
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert all(f"checkpoint-{s}" in text for s in (1, 2, 3)) and "step 0" in text, text
    assert common.checkpoint_dirs(out) == []


def test_an_explicit_corrupt_checkpoint_is_an_error(run):
    accelerator, net, out = run
    path = out / "checkpoints" / "checkpoint-3"
    _truncated_model(path)
    with pytest.raises(common.CheckpointError, match="checkpoint-3.*model.safetensors"):
        _resume(accelerator, out, str(path))
    assert torch.all(net.weight == -1) and path.is_dir()
    with pytest.raises(common.CheckpointError, match="checkpoint-9"):
        _resume(accelerator, out, str(out / "checkpoints" / "checkpoint-9"))


def test_an_intact_checkpoint_of_another_model_is_an_error_not_a_fallback(run, tmp_path):
    from accelerate import Accelerator

    _, _, out = run
    accelerator = Accelerator(cpu=True)
    other = torch.nn.Linear(5, 5)
    accelerator.prepare(other, torch.optim.Adam(other.parameters()))
    with pytest.raises(common.CheckpointError, match="checkpoint-3.*cannot be loaded"):
        _resume(accelerator, out)
    assert len(common.checkpoint_dirs(out)) == 3


@pytest.mark.slow
def test_explicit_corrupt_or_missing_checkpoint_ends_the_script_with_one_line(tmp_path):
    good = _images(tmp_path / "good")
    bad = tmp_path / "OUT" / "checkpoints" / "checkpoint-5"
    bad.mkdir(parents=True)
    (bad / "model.safetensors").write_bytes(b"")
    base = ["--photos", str(good), "--styles", str(good), "--output", str(tmp_path / "OUT"), "--max-steps", "6", *TINY]
    line = _one_line_error(_script(*base, "--resume_from_checkpoint", str(bad)))
    assert str(bad) in line and "model.safetensors" in line, line
    line = _one_line_error(_script(*base, "--resume_from_checkpoint", str(tmp_path / "checkpoint-7")))
    assert "checkpoint-7" in line and "not found" in line, line


@pytest.mark.slow
def test_script_resumes_from_the_newest_intact_checkpoint(tmp_path):
    """End to end: the newest checkpoint is truncated; ``latest`` resumes from the one before, and
    the data's unreadable image is named in a warning."""
    photos, styles = _images(tmp_path / "photos"), _images(tmp_path / "styles", seed=10)
    _truncated_png(styles / "broken.png")
    args = ["--photos", str(photos), "--styles", str(styles), "--output", str(tmp_path / "OUT"),
            "--checkpointing-steps", "1", *TINY]
    first = _script(*args, "--max-steps", "2")
    assert first.returncode == 0, first.stderr[-3000:]
    assert any(line.startswith("warning:") and str(styles / "broken.png") in line for line in first.stderr.splitlines())
    _truncated_model(tmp_path / "OUT" / "checkpoints" / "checkpoint-2")
    second = _script(*args, "--max-steps", "3", "--resume_from_checkpoint", "latest")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "checkpoint-1 (step 1)" in second.stdout
    assert [line for line in second.stderr.splitlines() if "checkpoint-2" in line and "skipped" in line]
    assert (tmp_path / "OUT" / "checkpoints" / "checkpoint-3").is_dir()
