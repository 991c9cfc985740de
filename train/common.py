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
    from portrait_stylize.hub import publication_report, publish_style_folder

    print(publication_report(publish_style_folder(folder, repo_id, name=name,
                                                  commit_message="Upload trained portrait-stylize style")))


def add_run_options(parser: argparse.ArgumentParser, max_steps: int) -> None:
    """Options every training script shares: steps, seed, precision, output, checkpoints, logs, publishing."""
    g = parser.add_argument_group("run, checkpoints, logs and publishing")
    g.add_argument("--max-steps", type=int, default=max_steps)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default=None, help="default: accelerate config")
    g.add_argument("--output", help="output folder: the style, plus checkpoints/, logs/, samples/")
    g.add_argument("--checkpointing-steps", type=int, default=500)
    g.add_argument("--checkpoints-total-limit", type=int, default=3)
    g.add_argument("--resume_from_checkpoint", "--resume-from-checkpoint", help="'latest' or a checkpoint-STEP folder")
    g.add_argument("--sample-steps", type=int, default=250)
    g.add_argument("--logging-steps", type=int, default=10)
    g.add_argument("--name", default="", help="style name (default: the output folder's name)")
    g.add_argument("--description", default="")
    g.add_argument("--licence", default="other", help="licence of the trained weights (mind your data's licence)")
    g.add_argument("--push-to-hub", metavar="ORG/REPO", help="upload the style and print its checkpoints.json entry")


def parse_run_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """:func:`parse_with_config`, then require ``--photos``, ``--styles`` and ``--output``."""
    args = parse_with_config(parser, argv)
    missing = [flag for flag in ("photos", "styles", "output") if not getattr(args, flag)]
    if missing:
        parser.error("missing " + ", ".join(f"--{m}" for m in missing))
    return args


def start_run(args: argparse.Namespace, kwargs_handlers: list | None = None):
    """The Accelerator (TensorBoard logs in ``OUTPUT/logs``), seeded. Returns ``(accelerator, output)``."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed

    output = Path(args.output)
    accelerator = Accelerator(mixed_precision=args.mixed_precision, log_with="tensorboard",
                              kwargs_handlers=kwargs_handlers,
                              project_config=ProjectConfiguration(project_dir=str(output),
                                                                  logging_dir=str(output / "logs")))
    set_seed(args.seed)
    return accelerator, output


def resume(accelerator, args: argparse.Namespace, output: Path, tracker: str) -> int:
    """Start the trackers and load ``--resume_from_checkpoint``; returns the step to start from."""
    accelerator.init_trackers(tracker, config={k: str(v) for k, v in vars(args).items()})
    checkpoint, start = resolve_resume(output, args.resume_from_checkpoint)
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        if accelerator.is_main_process:
            print(f"resumed from {checkpoint} (step {start})")
    return start


def after_step(accelerator, args: argparse.Namespace, output: Path, done: int, values: dict, bar,
               g_key: str = "g_loss") -> None:
    """Log ``values`` (with the generator's total under ``g_key``) and checkpoint on their
    schedules (``done`` = steps completed)."""
    last = done == args.max_steps
    if done % args.logging_steps == 0 or last:
        scalars = {k: float(torch.as_tensor(v).detach()) for k, v in values.items()}
        accelerator.log(scalars, step=done)
        bar.set_postfix(g=f"{scalars[g_key]:.3f}", d=f"{scalars['d_loss']:.3f}")
    if done % args.checkpointing_steps == 0 or last:
        save_checkpoint(accelerator, output, done, args.checkpoints_total_limit)


def sample_due(accelerator, args: argparse.Namespace, done: int) -> bool:
    return accelerator.is_main_process and (done % args.sample_steps == 0 or done == args.max_steps)


def save_samples(accelerator, image: Image.Image, output: Path, step: int) -> None:
    """A sample grid -> ``OUTPUT/samples/step-N.png``, ``OUTPUT/sample.png`` and TensorBoard."""
    (output / "samples").mkdir(parents=True, exist_ok=True)
    image.save(output / "samples" / f"step-{step:06d}.png")
    image.save(output / "sample.png")
    accelerator.get_tracker("tensorboard").log_images({"samples": np.asarray(image)}, step=step, dataformats="HWC")


def card_extra(args: argparse.Namespace, caption: str, data: str) -> str:
    """The model card's training section: the last sample grid, the data, every option."""
    options = "\n".join(f"| `{k}` | `{v}` |" for k, v in sorted(vars(args).items()) if k != "config")
    return (f"\n## Training\n\n![{caption}](sample.png)\n\n{data}\n\n"
            f"| option | value |\n|---|---|\n{options}\n")


def finish(accelerator, args: argparse.Namespace, output: Path, write_style) -> None:
    """Write the style folder (main process), publish it when asked, close the trackers."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_style()
        if args.push_to_hub:
            publish(output, args.push_to_hub, args.name or output.name)
    accelerator.end_training()
