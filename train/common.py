"""Conventions shared by the training scripts: config files, atomic checkpoints, sample grids,
style folders and publishing."""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

CHECKPOINTS = "checkpoints"


def parse_with_config(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``--config FILE`` (YAML or JSON, keys = option names with ``_`` or ``-``) sets defaults;
    flags on the command line override it. Unknown keys are an error naming them."""
    pre, _ = parser.parse_known_args(argv)
    if pre.config:
        path = Path(pre.config)
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            config = json.loads(text)
        else:
            import yaml

            config = yaml.safe_load(text) or {}
        config = {k.replace("-", "_"): v for k, v in config.items()}
        known = {a.dest for a in parser._actions}
        unknown = sorted(set(config) - known)
        if unknown:
            parser.error(f"{path}: unknown option(s) {', '.join(unknown)}")
        parser.set_defaults(**config)
    return parser.parse_args(argv)


def checkpoint_dirs(output: Path) -> list[Path]:
    """Complete checkpoints ``OUTPUT/checkpoints/checkpoint-STEP``, oldest first."""
    root = output / CHECKPOINTS
    found = [p for p in root.glob("checkpoint-*") if re.fullmatch(r"checkpoint-\d+", p.name) and p.is_dir()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def resolve_resume(output: Path, resume: str | None) -> tuple[Path | None, int]:
    """``latest`` -> the newest complete checkpoint (or none); a path -> that one. Returns (dir, step)."""
    if not resume:
        return None, 0
    if resume == "latest":
        dirs = checkpoint_dirs(output)
        return (dirs[-1], int(dirs[-1].name.split("-")[1])) if dirs else (None, 0)
    path = Path(resume)
    match = re.fullmatch(r"checkpoint-(\d+)", path.name)
    if not path.is_dir() or not match:
        raise FileNotFoundError(f"--resume_from_checkpoint {resume}: not a checkpoint-STEP folder")
    return path, int(match.group(1))


def save_checkpoint(accelerator, output: Path, step: int, keep: int) -> Path:
    """``accelerator.save_state`` into a temporary folder renamed into place, so a crash while
    saving never leaves a half-written checkpoint; keeps the newest ``keep``."""
    root = output / CHECKPOINTS
    final, tmp = root / f"checkpoint-{step}", root / f".tmp-checkpoint-{step}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in checkpoint_dirs(output)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def grid(rows: list[list[torch.Tensor]]) -> Image.Image:
    """A grid image from rows of ``(3, H, W)`` tensors in [-1, 1] (e.g. photo | stylized)."""
    rows_np = [np.concatenate([((t.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).permute(1, 2, 0).numpy()
                               for t in row], axis=1) for row in rows]
    return Image.fromarray(np.concatenate(rows_np, axis=0).round().astype(np.uint8))


def publish(folder: Path, repo_id: str, name: str) -> None:
    """Upload a trained style folder and print its ``checkpoints.json`` entry."""
    from portrait_stylize.hub import publish_style_folder

    entry = publish_style_folder(folder, repo_id, commit_message="Upload trained portrait-stylize style")
    print(f"published to https://huggingface.co/{repo_id} at {entry['revision']}")
    print("checkpoints.json entry:")
    print(json.dumps({name: entry}, indent=2))
