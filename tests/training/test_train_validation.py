"""Validation during training: ``--validation_photos`` scores the style with the metrics of
``portrait-stylize evaluate`` every N steps (TensorBoard scalars and a picture grid) and the
model card tables the last scores. Offline, on random metric networks in a seeded cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from helpers import REPO, seed_metric_cache


def _tensorboard_scalars(logs) -> dict[str, list[int]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps: dict[str, list[int]] = {}
    for events in logs.rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events.parent))
        accumulator.Reload()
        for tag in accumulator.Tags().get("scalars", []):
            steps.setdefault(tag, []).extend(e.step for e in accumulator.Scalars(tag))
        for tag in accumulator.Tags().get("images", []):
            steps.setdefault(f"image:{tag}", []).extend(e.step for e in accumulator.Images(tag))
    return steps


@pytest.fixture
def offline_metrics(tmp_path):
    home = tmp_path / "hf"
    photos = tmp_path / "validation"
    photos.mkdir()
    for name in ("astronaut.jpg", "hopper.jpg", "group.jpg"):
        shutil.copy(REPO / "examples" / name, photos / name)
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    return home, photos, env


@pytest.mark.slow
@pytest.mark.parametrize("script", ["tttn.py", "local.py"])
def test_training_logs_validation_metrics_and_the_card_tables_them(script, fixtures, offline_metrics, tmp_path):
    home, photos, env = offline_metrics
    seed_metric_cache(home)
    out = tmp_path / "style"
    args = [sys.executable, str(REPO / "train" / script), "--photos", str(fixtures / "train" / "photos"),
            "--styles", str(fixtures / "train" / "anime"), "--resolution", "64", "--batch-size", "2",
            "--max-steps", "4", "--content-net", "random", "--logging-steps", "1", "--output", str(out),
            "--validation_photos", str(photos), "--validation_steps", "2", "--validation_size", "64"]
    result = subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    scalars = _tensorboard_scalars(out / "logs")
    for metric in ("ssim", "lpips", "identity", "fid", "kid"):
        assert sorted(scalars[f"validation/{metric}"]) == [2, 4], (metric, scalars.keys())
    assert sorted(scalars["image:validation"]) == [2, 4]
    report = json.loads((out / "validation.json").read_text())
    row = report["styles"]["style"]
    assert report["protocol"]["step"] == 4 and row["images"] == 3 and row["faces"] == 3
    assert 0 < row["ssim"] < 1 and row["lpips"] > 0 and row["fid"] >= 0
    card = (out / "README.md").read_text()
    assert "## Validation" in card and "At step 4" in card and "| style |" in card


def test_a_missing_metric_network_stops_training_before_it_starts(fixtures, offline_metrics, tmp_path):
    _, photos, env = offline_metrics  # nothing seeded: offline, the networks cannot be fetched
    out = tmp_path / "style"
    result = subprocess.run([sys.executable, str(REPO / "train" / "tttn.py"),
                             "--photos", str(fixtures / "train" / "photos"),
                             "--styles", str(fixtures / "train" / "anime"), "--resolution", "64", "--max-steps", "4",
                             "--content-net", "random", "--output", str(out), "--validation_photos", str(photos)],
                            capture_output=True, text=True, cwd=REPO, timeout=600, env=env)
    assert (result.returncode == 2
            and "error: the lpips network for the evaluation metrics is not cached" in result.stderr)
    assert "Traceback" not in result.stderr and not (out / "checkpoints").exists()
