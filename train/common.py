"""Conventions shared by the training scripts: config files, atomic checkpoints, sample grids,
style folders and publishing.

Errors a user causes (a broken data folder, a missing or corrupt checkpoint named with
``--resume_from_checkpoint``) raise :class:`~train.data.DataError` or :class:`CheckpointError`
with a one-line message; a script run (:func:`parse_run_args`) prints it as ``error: ...`` on
stderr and exits with status 2 instead of showing a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from portrait_stylize.common.files import sha256_file, write_atomically
from portrait_stylize.errors import PortraitStylizeError
from portrait_stylize.imaging.io import pil_to_tensor, tensor_to_pil
from portrait_stylize.models.serialization import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME
from train.data import DataError

CHECKPOINTS = "checkpoints"
MANIFEST = "manifest.json"  # in each checkpoint: size and SHA-256 of every file save_state wrote
SAMPLE = "sample.png"  # the last sample grid, shown by the model card
VALIDATION = "validation.json"  # the last validation's metrics, tabled in the model card
#: What a published training output holds.
STYLE_FILES = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, SAMPLE)
CORRUPT_PREFIX = "corrupt-"  # corrupt checkpoints skipped by ``latest`` are renamed corrupt-checkpoint-STEP


class CheckpointError(Exception):
    """``--resume_from_checkpoint`` names a checkpoint that is missing, corrupt, or does not fit this run."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """``--resume_from_checkpoint PATH``: no such checkpoint-STEP folder."""


#: PortraitStylizeError: the library refusing an option (e.g. a validation folder without
#: images, a metric network that cannot be fetched offline).
USER_ERRORS = (DataError, CheckpointError, PortraitStylizeError)


def exit_on_user_errors() -> None:
    """Make a :data:`USER_ERRORS` exception that ends the script print ``error: MESSAGE`` (one line,
    stderr) and exit with status 2, like a command-line error, instead of a traceback. Any other
    exception keeps its traceback. Installed by :func:`parse_run_args` (script runs only)."""
    previous = sys.excepthook
    if getattr(previous, "_train_user_errors", False):
        return

    def hook(kind, exc, tb):
        if issubclass(kind, USER_ERRORS):
            sys.stdout.flush()
            print(f"error: {_one_line(exc)}", file=sys.stderr, flush=True)
            raise SystemExit(2)  # honoured when raised by sys.excepthook: the exit status becomes 2
        previous(kind, exc, tb)

    hook._train_user_errors = True
    sys.excepthook = hook


def _one_line(text, limit: int = 400) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


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
    """``latest`` -> the newest complete checkpoint (or none); a path -> that one. Returns (dir, step).

    Only the folder names are looked at; :func:`checkpoint_problem` checks the contents.
    Raises :class:`CheckpointNotFoundError` (a ``FileNotFoundError``) for a path that is not an
    existing ``checkpoint-STEP`` folder."""
    if not resume:
        return None, 0
    if resume == "latest":
        dirs = checkpoint_dirs(output)
        return (dirs[-1], int(dirs[-1].name.split("-")[1])) if dirs else (None, 0)
    path = Path(resume)
    match = re.fullmatch(r"checkpoint-(\d+)", path.name)
    if not path.exists():
        raise CheckpointNotFoundError(f"--resume_from_checkpoint {resume}: checkpoint folder not found")
    if not path.is_dir() or not match:
        raise CheckpointNotFoundError(f"--resume_from_checkpoint {resume}: not a checkpoint-STEP folder")
    return path, int(match.group(1))


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a folder
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_manifest(folder: Path) -> None:
    """Record size and SHA-256 of every file in ``folder`` (flushing each to disk) in ``MANIFEST``."""
    files = {}
    for f in sorted(folder.rglob("*")):
        if f.is_file() and f.name != MANIFEST:
            _fsync_file(f)
            files[f.relative_to(folder).as_posix()] = {"size": f.stat().st_size, "sha256": sha256_file(f)}
    with open(folder / MANIFEST, "w", encoding="utf-8") as out:
        json.dump({"format": 1, "files": files}, out, indent=1)
        out.flush()
        os.fsync(out.fileno())
    _fsync_dir(folder)


def checkpoint_problem(path: Path) -> str | None:
    """Why the checkpoint folder ``path`` cannot be used, or ``None`` when it is intact.

    Intact means: every file listed in its ``MANIFEST`` (written by :func:`save_checkpoint`)
    exists with the recorded size and SHA-256. A checkpoint without a manifest (saved before
    manifests existed) is intact when it holds model, optimizer and random-state files, none
    empty, and each of them can be read. Nothing is loaded into the running models."""
    if not path.is_dir():
        return "not a folder"
    manifest = path / MANIFEST
    if manifest.exists():
        try:
            files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
            expected = {name: (int(meta["size"]), str(meta["sha256"])) for name, meta in files.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            return f"{MANIFEST} is unreadable ({_one_line(exc, 120)})"
        for name, (size, sha) in expected.items():
            file = path / name
            if not file.is_file():
                return f"{name} is missing"
            found = file.stat().st_size
            if found != size:
                return f"{name} has {found} bytes, {size} were saved"
            if sha256_file(file) != sha:
                return f"{name} does not match the checksum recorded when it was saved"
        return None
    files = sorted(f for f in path.rglob("*") if f.is_file())
    if not files:
        return "the folder is empty"
    for file in files:
        if file.stat().st_size == 0:
            return f"{file.relative_to(path).as_posix()} is empty (0 bytes)"
    for kind, pattern in (("model", r"(model|pytorch_model)(_\d+)?\.(safetensors|bin)"),
                          ("optimizer", r"optimizer(_\d+)?\.bin"), ("random-state", r"random_states_\d+\.pkl")):
        if not any(re.fullmatch(pattern, f.name) for f in files):
            return f"no {kind} file"
    from accelerate.utils import load  # torch.load as load_state calls it (weights only)
    from safetensors.torch import load_file

    for file in files:
        name = file.relative_to(path).as_posix()
        try:
            if file.suffix == ".safetensors":
                load_file(file, device="cpu")
            elif file.suffix in (".bin", ".pkl", ".pt"):
                load(file, map_location="cpu")
        except Exception as exc:
            return f"{name} cannot be read ({type(exc).__name__}: {_one_line(exc, 160)})"
    return None


def _set_aside(path: Path) -> Path | None:
    """Rename a corrupt checkpoint to ``corrupt-checkpoint-STEP[-N]`` so that ``latest`` and the
    pruning of old checkpoints no longer count it. Returns the new path (None if it could not move)."""
    target = path.with_name(CORRUPT_PREFIX + path.name)
    n = 1
    while target.exists():
        target, n = path.with_name(f"{CORRUPT_PREFIX}{path.name}-{n}"), n + 1
    try:
        path.rename(target)
    except OSError:
        return None
    return target


def save_checkpoint(accelerator, output: Path, step: int, keep: int) -> Path:
    """``accelerator.save_state`` into a temporary folder renamed into place, so a crash while
    saving never leaves a half-written checkpoint; keeps the newest ``keep``. A ``MANIFEST`` of
    every file's size and SHA-256 lets :func:`checkpoint_problem` detect later damage."""
    root = output / CHECKPOINTS
    final, tmp = root / f"checkpoint-{step}", root / f".tmp-checkpoint-{step}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _write_manifest(tmp)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        _fsync_dir(root)
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
    """Upload the style in a training output and print its ``checkpoints.json`` entry.

    Only the style's files go up (config, weights, model card and the sample grid the card shows):
    never ``checkpoints/``, ``logs/`` or ``samples/``."""
    from portrait_stylize.sources.hub import publication_report, publish_style_folder

    print(publication_report(publish_style_folder(folder, repo_id, name=name, files=STYLE_FILES,
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
    g = parser.add_argument_group("validation: the metrics of 'portrait-stylize evaluate' during training")
    g.add_argument("--validation_photos", "--validation-photos", metavar="DIR",
                   help="score the style on these photos every --validation-steps: SSIM, LPIPS and identity, and "
                        "FID/KID against --validation-exemplars; logged with a picture grid (TensorBoard)")
    g.add_argument("--validation_exemplars", "--validation-exemplars", metavar="DIR",
                   help="style pictures for FID and KID (default: --styles)")
    g.add_argument("--validation_steps", "--validation-steps", type=int, default=500)
    g.add_argument("--validation_size", "--validation-size", type=int, default=256, help="square crop side scored")
    g.add_argument("--validation_limit", "--validation-limit", type=int, default=32,
                   help="photos scored (the first by name)")


def parse_run_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """:func:`parse_with_config`, then require ``--photos``, ``--styles`` and ``--output``.

    This is the scripts' command line: it also installs :func:`exit_on_user_errors`, and a
    ``--resume_from_checkpoint PATH`` that does not exist fails here, before any work."""
    exit_on_user_errors()
    args = parse_with_config(parser, argv)
    missing = [flag for flag in ("photos", "styles", "output") if not getattr(args, flag)]
    if missing:
        parser.error("missing " + ", ".join(f"--{m}" for m in missing))
    if args.resume_from_checkpoint and args.resume_from_checkpoint != "latest":
        resolve_resume(Path(args.output), args.resume_from_checkpoint)
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
    """Start the trackers and load ``--resume_from_checkpoint``; returns the step to start from.

    ``latest`` loads the newest intact checkpoint (:func:`checkpoint_problem`): each corrupt newer
    one is named on stderr with the reason and renamed ``corrupt-checkpoint-STEP``; when none is
    intact, training starts from step 0 (and says so). A corrupt checkpoint named by path, or an
    intact one that does not fit this run's models, raises :class:`CheckpointError`."""
    accelerator.init_trackers(tracker, config={k: str(v) for k, v in vars(args).items()})
    wanted, main = args.resume_from_checkpoint, accelerator.is_main_process
    if not wanted:
        return 0
    checkpoint, start = None, 0
    if wanted == "latest":
        skipped = []
        for candidate in reversed(checkpoint_dirs(output)):
            problem = checkpoint_problem(candidate)
            if problem is None:
                checkpoint, start = candidate, int(candidate.name.split("-")[1])
                break
            skipped.append((candidate, problem))
        accelerator.wait_for_everyone()  # every process has checked before one is renamed
        if main:
            for candidate, problem in skipped:
                moved = _set_aside(candidate)
                where = f"; renamed it {moved.name}" if moved else ""
                print(f"warning: skipped checkpoint {candidate}: {problem}{where}", file=sys.stderr, flush=True)
            if skipped and checkpoint is None:
                print(f"warning: no intact checkpoint left in {output / CHECKPOINTS}: starting from step 0",
                      file=sys.stderr, flush=True)
        accelerator.wait_for_everyone()
    else:
        checkpoint, start = resolve_resume(output, wanted)
        problem = checkpoint_problem(checkpoint)
        if problem is not None:
            raise CheckpointError(f"--resume_from_checkpoint {checkpoint}: corrupt checkpoint: {problem}")
    if checkpoint is not None:
        try:
            accelerator.load_state(str(checkpoint))
        except Exception as exc:
            raise CheckpointError(
                f"--resume_from_checkpoint {checkpoint}: cannot be loaded into this run "
                f"({type(exc).__name__}: {_one_line(exc, 200)}); was it saved with other model options?") from exc
        if main:
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
    image.save(output / SAMPLE)
    accelerator.get_tracker("tensorboard").log_images({"samples": np.asarray(image)}, step=step, dataformats="HWC")


def card_extra(args: argparse.Namespace, caption: str, data: str) -> str:
    """The model card's training section: the last sample grid, the data, every option, and the
    last validation's metrics table when the run had ``--validation_photos``."""
    from portrait_stylize.evaluation.evaluate import markdown_table

    options = "\n".join(f"| `{k}` | `{v}` |" for k, v in sorted(vars(args).items()) if k != "config")
    validation = Path(args.output) / VALIDATION
    metrics = ""
    if args.validation_photos and validation.is_file():
        report = json.loads(validation.read_text())
        metrics = (f"\n## Validation\n\nAt step {report['protocol']['step']}, scored as `portrait-stylize evaluate` "
                   f"scores styles (docs/evaluation.md):\n\n{markdown_table(report)}")
    return (f"\n## Training\n\n![{caption}]({SAMPLE})\n\n{data}\n\n"
            f"| option | value |\n|---|---|\n{options}\n{metrics}")


def start_validation(accelerator, args: argparse.Namespace):
    """With ``--validation_photos``, on the main process: the photos read and the metric networks
    loaded first, so that a bad folder or a network missing offline stops the run in seconds,
    before the training photos are read, rather than at the first validation. ``None`` otherwise."""
    if not args.validation_photos or not accelerator.is_main_process:
        return None
    from portrait_stylize.evaluation.evaluate import Validation

    return Validation(args.validation_photos, args.validation_exemplars or args.styles, size=args.validation_size,
                      limit=args.validation_limit)


def validation_due(args: argparse.Namespace, validation, done: int) -> bool:
    return validation is not None and (done % args.validation_steps == 0 or done == args.max_steps)


@torch.no_grad()
def validate(accelerator, validation, output: Path, step: int, forward, name: str) -> dict:
    """Score ``forward`` (``(1, 3, H, W)`` RGB in [-1, 1] -> the same, on the accelerator's device)
    on the validation photos: the metrics go to the tracker as ``validation/NAME``, the photo |
    result grid as the image ``validation``, the report to ``OUTPUT/validation.json``."""
    from portrait_stylize.evaluation.evaluate import grid as picture_grid

    def stylize(picture: Image.Image) -> Image.Image:
        x = pil_to_tensor(picture).to(accelerator.device) * 2 - 1
        return tensor_to_pil((forward(x).float().clamp(-1, 1) + 1) / 2)

    row, results = validation.score(stylize)
    accelerator.log({f"validation/{k}": v for k, v in row.items() if isinstance(v, float)}, step=step)
    image = np.asarray(picture_grid(validation.pictures, {name: results}))
    accelerator.get_tracker("tensorboard").log_images({"validation": image}, step=step, dataformats="HWC")
    report = {"protocol": {**validation.protocol, "step": step}, "styles": {name: row}}
    write_atomically(output / VALIDATION, lambda tmp: Path(tmp).write_text(json.dumps(report, indent=2)))
    return row


def finish(accelerator, args: argparse.Namespace, output: Path, write_style) -> None:
    """Write the style folder (main process), publish it when asked, close the trackers."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_style()
        if args.push_to_hub:
            publish(output, args.push_to_hub, args.name or output.name)
    accelerator.end_training()
