"""``portrait-stylize`` command line (also ``python -m portrait_stylize``).

Examples::

    portrait-stylize styles
    portrait-stylize run photo.jpg -o photo_toon.png
    portrait-stylize run photos/ more.jpg --style sketch --strength 0.8 -o out/
    accelerate launch --multi_gpu --num_processes 4 -m portrait_stylize batch photos/ -o out/
    portrait-stylize evaluate --style toon,sketch --photos photos/ --exemplars anime/ --out report/
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .batch import DEFAULT_NAME_PATTERN
from .errors import EXIT_FAILED, EXIT_USAGE, InvalidArgumentError, PortraitStylizeError, StyleNotFoundError
from .options import (
    BACKENDS,
    CHANNEL_ORDERS,
    DEFAULT_MAX_PIXELS,
    DEFAULT_TILE_SIZE,
    FACE_BACKENDS,
    IMAGE_SUFFIXES,
    PADDINGS,
    REGIONS,
    UPSAMPLINGS,
)
from .version import __version__

# Commands import torch, MediaPipe and the pipeline when they run, so --help answers at once.


def _check_name_pattern(pattern: str) -> str:
    """``--name-pattern``: must use ``{name}`` (else every result gets one name), may use
    ``{style}``, and must end in an image suffix (which chooses the format)."""
    try:
        example = pattern.format(name="photo", style="toon")
    except (KeyError, IndexError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"{pattern!r} may only use {{name}} and {{style}} ({exc})") from None
    if "{name}" not in pattern or "/" in pattern or Path(example).suffix.lower() not in IMAGE_SUFFIXES:
        raise argparse.ArgumentTypeError(f"{pattern!r} must contain {{name}}, no '/', and end in an image suffix "
                                         f"such as .png or .jpg, like {DEFAULT_NAME_PATTERN!r}")
    return pattern


def _output_kind(output: str, files: list[Path], inputs: list[str], batch: bool) -> bool:
    """True when ``-o`` is one output file, False for a folder. Where only a folder can hold the
    results (``batch``, several inputs, a folder or a list as input) ``-o`` is a folder without a
    trailing slash; for one input a name that is neither (no image suffix, no trailing slash, not
    an existing folder) is refused rather than guessed."""
    out = Path(output)
    is_file = out.suffix.lower() in IMAGE_SUFFIXES
    only_folder = batch or len(files) > 1 or len(inputs) > 1 or inputs[0].startswith("@") or Path(inputs[0]).is_dir()
    if is_file and only_folder:
        if batch:
            raise InvalidArgumentError(f"batch writes to a folder; use -o {out.with_suffix('')}/")
        raise InvalidArgumentError(f"{len(files)} inputs need an output folder, but -o {output} is a file name; "
                                   f"use a folder such as -o {out.with_suffix('')}/")
    if not is_file and out.exists() and not out.is_dir():
        raise InvalidArgumentError(f"-o {output} exists and is not a folder; name a folder for the results")
    if not is_file and not (only_folder or output.endswith(("/", "\\")) or out.is_dir()):
        raise InvalidArgumentError(f"-o {output}: not an image file name and not a folder; add a suffix for a file "
                                   f"(-o {output}.png) or a trailing slash for a folder (-o {output}/)")
    return is_file


def _save_masks(details, folder: Path, stem: str) -> None:
    """One 8-bit PNG per region mask, plus the final blend weight, as ``STEM_NAME.png``."""
    from PIL import Image

    from .imaging.io import save_image

    masks = dict(details.masks)
    if details.weight is not None:
        masks["weight"] = details.weight
    for name, mask in masks.items():
        save_image(Image.fromarray((mask * 255).round().astype("uint8"), "L"), folder / f"{stem}_{name}.png")


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated face numbers like 1,3 (1 = leftmost); got {text!r}") from None


def _unit_float(text: str) -> float:
    """A number in [0, 1]: out of range is a bad argument (exit 2), not a failure of every image."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def _name_list(text: str, example: str = "region names like hair,lips") -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated {example}")
    return names


def _style_list(text: str) -> list[str]:
    return _name_list(text, "style names like toon,sketch")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _cmd_styles(args: argparse.Namespace) -> int:
    from .loading import list_styles

    styles = list_styles(args.pattern)
    rows = [("name", "kind", "licence", "offline", "description")]
    rows += [(s.name, s.kind, s.licence, "yes" if s.available_offline else "no", s.description) for s in styles]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for i, row in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4])
        if i and styles[i - 1].source:
            print(" " * (widths[0] + 2) + f"source: {styles[i - 1].source}")
    return 0


def _cmd_backends(args: argparse.Namespace) -> int:
    """``backends``: what ``auto`` chooses among here and the ranking it remembers; ``--measure`` times them now."""
    import torch

    from .runtime import cpu, ranking
    from .runtime.backends import cpu_candidates, ranking_probe

    net, side = None, ranking.PROBE_SIDE
    if args.style:
        from .pipeline import load_style

        stylizer = load_style(args.style, device="cpu", backend="torch")  # "torch": loading measures nothing
        if not stylizer.model.subnetworks():
            print(f"{args.style}: a built-in filter, not a network: it always runs on torch")
            return 0
        net, side = ranking_probe(stylizer.model.subnetworks(), stylizer.tile_size)
    candidates, threads = tuple(cpu_candidates(net)), torch.get_num_threads()
    print(f"CPU: {cpu.cpu_description()}\nthreads: {threads}\ncandidates: {', '.join(candidates)}\n"
          f"network: {ranking.network_key(net, side)}")
    entry = (ranking.measure_ranking(candidates, threads, net, side) if args.measure
             else ranking.remembered_ranking(candidates, threads, net, side))
    if entry is None:
        print("ranking: not measured yet on this machine (the first style loaded with backend auto measures it; "
              "or run: portrait-stylize backends --measure)")
        return 0
    share = entry.get("others_share")
    print(f"ranking (fastest first), measured {entry.get('measured', '?')}"
          + ("" if share is None else f", other processes using {100 * share:.0f}% of the CPU meanwhile") + ":")
    for backend in entry["ranking"]:
        seconds = entry["seconds"][backend]
        print(f"  {backend:<13} " + ("cannot run this network" if seconds is None else f"{1000 * seconds:8.1f} ms"))
    if args.measure:
        print(f"remembered in {ranking.choice_file()}" if entry["remembered"]
              else "not remembered: the machine was busy; measure again when it is quiet")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    """``run`` and ``batch``: the same work; ``batch`` splits it over launched processes, skips
    results that exist (resume) and needs a folder output."""
    from .batch import current_processes, expand_inputs, output_paths, run_pairs, shard

    batch = args.command == "batch"
    listed = [item[1:] if item.startswith("@") else item for item in args.images]
    missing = [item for item in listed if not Path(item).exists()]
    if missing:
        print(f"error: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return EXIT_USAGE
    files = expand_inputs(args.images)
    if not files:
        print(f"error: no images found in {' '.join(args.images)}", file=sys.stderr)
        return EXIT_USAGE
    single_file = _output_kind(args.output, files, args.images, batch)
    # PyTorch and the pipeline take seconds to import: only once the command line holds up.
    from .loading import resolve_spec

    resolve_spec(args.style)
    import torch
    from tqdm.auto import tqdm

    from .imaging.io import is_complete_image, save_image
    from .pipeline import load_style

    processes, wait_for_everyone = current_processes() if batch else (None, lambda: None)
    out = Path(args.output)
    if processes is not None and processes.device is None and "OMP_NUM_THREADS" not in os.environ:
        # Processes sharing a machine's CPU share its cores instead of each taking them all.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // processes.local_world))
    stylizer = load_style(args.style, device=args.device or (processes and processes.device),
                          tile_size=args.tile_size or None, max_pixels=args.max_pixels or None, backend=args.backend,
                          face_backend=args.face_backend, max_short_side=args.max_short_side or None)
    # Options the style or face backend cannot take are bad arguments: refused before any image.
    stylizer.check_inputs(args.regions, args.strength, args.harmonize, args.faces, args.style_image)
    targets = output_paths(files, out, single_file, stylizer.name, args.name_pattern)
    pairs = list(zip(files, targets))
    if processes is not None:
        pairs = shard(pairs, processes.rank, processes.world)
    for src, dst in pairs:
        if not single_file and dst.name != args.name_pattern.format(name=src.stem, style=stylizer.name) \
                and not args.quiet:
            tqdm.write(f"{src} -> {dst} (so that no input and no other result is overwritten)", file=sys.stderr)
    options = {"regions": args.regions, "strength": args.strength, "harmonize": args.harmonize, "faces": args.faces,
               # One progress display: the tiles of a lone image, or the batch bar over images.
               "style_image": args.style_image, "progress": not args.quiet and len(files) == 1}

    def stylize_one(src: Path, dst: Path) -> None:
        result, details = stylizer(src, return_details=True, **options)
        save_image(result, dst)
        if args.save_masks:
            _save_masks(details, Path(args.save_masks), src.stem)
        for _, reason in details.skipped:
            tqdm.write(f"{src}: {reason}", file=sys.stderr)

    where = f" [process {processes.rank + 1}/{processes.world}]" if processes and processes.world > 1 else ""
    with tqdm(total=len(pairs), desc=f"stylizing ({stylizer.name}){where}", unit="img",
              disable=len(files) < 2 or args.quiet) as bar:
        def show(src: Path, dst: Path, outcome: str) -> None:
            bar.update()
            if outcome == "redone" and not args.quiet:
                tqdm.write(f"{dst}: the earlier result was damaged (it does not decode); made again", file=sys.stderr)
            elif outcome not in ("written", "existing") and len(files) > 1 and not args.quiet:
                tqdm.write(f"skipped {outcome}", file=sys.stderr)  # said now; listed again at the end

        report = run_pairs(stylize_one, pairs, overwrite=not batch, progress=show, complete=is_complete_image)
    wait_for_everyone()
    if len(files) == 1 and report.failed:
        print(f"error: {report.failed[0][1]}", file=sys.stderr)
        return EXIT_FAILED
    if not args.quiet:
        resumed = f", {len(report.existing)} already there" if batch else ""
        if report.redone:
            resumed += f", {len(report.redone)} damaged earlier result(s) made again"
        per_file = f" ({report.seconds / len(report.written):.2f} s each)" if batch and report.written else ""
        print(f"wrote {len(report.written)} of {len(pairs)} image(s) to {out}{resumed}{per_file}{where}")
    if report.failed:
        print(f"error: {len(report.failed)} of {len(pairs)} image(s) failed{where}:", file=sys.stderr)
        for _, reason in report.failed:
            print(f"  {reason}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _cmd_video(args: argparse.Namespace) -> int:
    from .pipeline import load_style
    from .video import stylize_video

    stylizer = load_style(args.style, device=args.device, backend=args.backend, face_backend=args.face_backend)
    info = stylize_video(args.input, args.output, stylizer, regions=args.regions, strength=args.strength,
                         harmonize=args.harmonize, faces=args.faces, style_image=args.style_image,
                         max_seconds=args.max_seconds or None,
                         smoothing=args.smoothing, progress=not args.quiet)
    if not args.quiet:
        print(f"wrote {args.output}: {info.frames} frames at {info.fps:g} fps ({info.frames / info.fps:.2f} s), "
              f"{info.size[0]}x{info.size[1]}, audio {'kept' if info.audio else 'none in the input'}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation.evaluate import evaluate, markdown_table

    for option, folder in (("--photos", args.photos), ("--exemplars", args.exemplars)):
        if folder is not None and not Path(folder).is_dir():
            print(f"error: {option}: no such folder: {folder}", file=sys.stderr)
            return EXIT_USAGE
    report = evaluate(args.style, args.photos, args.out, exemplars=args.exemplars, size=args.size, limit=args.limit,
                      device=args.device, progress=not args.quiet)
    print(markdown_table(report), end="")
    print(f"wrote {Path(args.out) / 'metrics.json'}, metrics.md, grid.jpg and each style's results")
    return 0


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from .pipeline import load_style
    from .runtime.onnx_export import export_onnx

    stylizer = load_style(args.style, device="cpu", backend="torch")
    for path in export_onnx(stylizer.model, args.output):
        print(path)
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from .convert.ttn_releases import command_line, convert
    from .sources.hub import publication_report, publish_style_folder

    overrides = {key: getattr(args, key) for key in ("gf_eps", "gf_radius", "upsample", "padding", "negative_slope")
                 if getattr(args, key) is not None}
    output = Path(args.output)
    name = args.name or output.name
    model = convert(args.sources, output, name=name, description=args.description, licence=args.licence,
                    source=args.source, channel_order=args.channel_order, overwrite=args.overwrite,
                    command=command_line(args.argv), **overrides)
    networks = "head + bg" if model.bg is not None else "head"
    print(f"wrote {output} ({networks}; channel order {model.channel_order}; head {model.head.config})")
    if args.push_to_hub:
        print(publication_report(publish_style_folder(output, args.push_to_hub, name=name, private=args.private)))
    return 0


def _cmd_pin(args: argparse.Namespace) -> int:
    import json

    from .common.files import write_atomically
    from .loading import pin
    from .sources.registry import ENV_EXTRA_REGISTRY, builtin_registry_path, read_registry

    path = Path(args.registry or os.environ.get(ENV_EXTRA_REGISTRY) or builtin_registry_path())
    registry = read_registry(path)
    missing = [name for name in args.names if name not in registry.styles]
    if missing:
        raise StyleNotFoundError(f"{path}: no style named {', '.join(map(repr, missing))}; it has "
                                   f"{', '.join(registry.styles)}")
    document = json.loads(path.read_text(encoding="utf-8"))
    for name in args.names:
        pinned = pin(registry.styles[name])
        document["styles"][name] = pinned.to_entry()
        print(f"{name}: {pinned.model_id} at {pinned.revision}, "
              + ", ".join(f"{f} {h[:12]}…" for f, h in pinned.file_sha256.items()))
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    write_atomically(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), follow_umask=True)
    print(f"wrote {path}")
    return 0


def _add_style_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``run`` and ``video``: which style, how strongly, where, which regions."""
    p.add_argument("-s", "--style", default=None,
                   help="registry name, style folder or Hub 'org/name' (default: the registry's default)")
    p.add_argument("--strength", type=_unit_float, default=1.0, help="0..1, blend with the photo (default 1)")
    p.add_argument("--regions", type=_name_list, default=None,
                   help=f"only stylize these regions, e.g. hair,lips (of: {', '.join(REGIONS)}); default: everything")
    p.add_argument("--faces", type=_int_list, default=None,
                   help="only these faces, numbered from the left: 1 = leftmost, e.g. 1,3 (default: all)")
    p.add_argument("--harmonize", type=_unit_float, default=0.0,
                   help="0..1, match the untouched area's colours to the stylized ones (default 0)")
    p.add_argument("--face-backend", choices=FACE_BACKENDS, default=None,
                   help="face detector/parser (default: $PORTRAIT_STYLIZE_FACE_BACKEND, else auto)")
    p.add_argument("--style-image", metavar="IMAGE",
                   help="style reference for reference-based (u2lffm) styles (default: the one stored with the style)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best available)")
    p.add_argument("--backend", choices=("auto", *BACKENDS), default="auto",
                   help="how networks run: torch (float32), torch-bf16, onnx (ONNX Runtime), onnx-int8, openvino, "
                        "openvino-bf16, openvino-int8; default auto = fastest here (portrait-stylize backends)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="portrait-stylize", description="Turn portrait photos into artworks.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens (style resolution, downloads)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("styles", help="list registered styles (name, kind, licence, cached)")
    p.add_argument("pattern", nargs="?", default="*", help="glob on style names, e.g. '*toon*'")
    p.set_defaults(func=_cmd_styles)

    p = sub.add_parser("backends", help="show the CPU backends auto chooses among and their measured ranking")
    p.add_argument("--measure", action="store_true",
                   help="time the backends now (a few seconds) and remember the ranking if the machine was quiet")
    p.add_argument("--style", metavar="NAME",
                   help="the ranking for this style's network (default: a DCT-Net-shaped one, what most styles run)")
    p.set_defaults(func=_cmd_backends)

    for command, summary in (("run", "stylize images or folders of images"),
                             ("batch", "stylize many images, split across processes/GPUs under 'accelerate launch', "
                                       "resumable: results already written are skipped")):
        p = sub.add_parser(command, help=summary, description=summary)
        p.add_argument("images", nargs="+", help="image files, folders of images, and @LIST text files of image paths")
        p.add_argument("-o", "--output", required=True,
                       help="a folder for the results (named by --name-pattern)"
                            + ("; or, for one input, an output file with an image suffix (then a folder needs a "
                               "trailing '/' or must exist)" if command == "run" else ""))
        p.add_argument("--name-pattern", type=_check_name_pattern, default=DEFAULT_NAME_PATTERN,
                       help=f"result names in an output folder, from {{name}} (the input's) and {{style}}; the suffix "
                            f"chooses the format (default {DEFAULT_NAME_PATTERN!r}: photo.jpg -> photo.toon.png)")
        _add_style_options(p)
        p.add_argument("--save-masks", metavar="DIR", help="also write each region mask and the blend weight as PNGs")
        p.add_argument("--tile-size", type=int, default=DEFAULT_TILE_SIZE,
                       help=f"tile larger images at this size; 0 disables (default {DEFAULT_TILE_SIZE})")
        p.add_argument("--max-short-side", type=int, default=0,
                       help="work at most at this short side and scale back, like the official DCT-Net pipeline (720); "
                            "default 0 = full resolution, tiled")
        p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                       help=f"refuse larger images; 0 disables (default {DEFAULT_MAX_PIXELS:,})")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summary")
        p.set_defaults(func=_cmd_run)

    p = sub.add_parser("video", help="stylize a video clip frame by frame (audio kept, faces smoothed over time)")
    p.add_argument("input", help="video file (anything ffmpeg reads)")
    p.add_argument("-o", "--output", required=True, help="output .mp4")
    _add_style_options(p)
    p.add_argument("--max-seconds", type=float, default=60.0, help="refuse longer clips; 0 = no limit (default 60)")
    p.add_argument("--smoothing", type=float, default=0.6,
                   help="0..<1, how much landmarks and masks follow the previous frame (default 0.6)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=_cmd_video)

    p = sub.add_parser("convert", help="convert DCT-Net / White-box releases (.pb, checkpoint, .tflite) into a style")
    p.add_argument("sources", nargs="+", help="head network [background network]: frozen .pb, .tflite, or a "
                   "checkpoint (PREFIX, PREFIX.index); a file ending in _bg is the background network")
    p.add_argument("-o", "--output", required=True, help="style folder to write")
    p.add_argument("--name", default="", help="style name (default: the folder name)")
    p.add_argument("--description", default="", help="one line for list_styles() and the model card")
    p.add_argument("--licence", default="other", help="licence id of the weights, e.g. apache-2.0, cc-by-nc-sa-4.0")
    p.add_argument("--source", default="", help="where the weights come from (URL or model id)")
    p.add_argument("--channel-order", choices=CHANNEL_ORDERS, default="bgr",
                   help="colour order the weights were trained on (official releases: bgr)")
    p.add_argument("--gf-eps", type=float,
                   help="guided-filter eps (default: found in the graph, else 1e-2; White-box: 5e-3)")
    p.add_argument("--gf-radius", type=int, help="guided-filter radius, 0 = none (default: found in the graph, else 1)")
    p.add_argument("--upsample", choices=UPSAMPLINGS,
                   help="bilinear convention (default: found in the graph, else tf_legacy)")
    p.add_argument("--padding", choices=PADDINGS, help="stride-2 padding convention (default tf_same)")
    p.add_argument("--negative-slope", type=float, help="LeakyReLU slope (default: found in the graph, else 0.2)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--push-to-hub", metavar="ORG/REPO", help="upload the style and print its checkpoints.json entry")
    p.add_argument("--private", action="store_true", help="create the Hub repo as private")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("pin", help="maintainers: fill in the revision and file sha256 of ModelScope styles (online)")
    p.add_argument("names", nargs="+", help="style names in the registry file")
    p.add_argument("--registry", metavar="FILE",
                   help="registry file to update (default: $PORTRAIT_STYLIZE_CHECKPOINTS, "
                        "else the package's checkpoints.json)")
    p.set_defaults(func=_cmd_pin)

    p = sub.add_parser("evaluate", help="score styles on a folder of photos (SSIM, PSNR, LPIPS, FID/KID, identity, "
                                        "landmark error; metrics that cannot be had offline are skipped and named) "
                                        "and write a report with a picture grid")
    p.add_argument("-s", "--style", required=True, type=_style_list,
                   help="styles to score, comma-separated, e.g. toon,sketch")
    p.add_argument("--photos", required=True, metavar="DIR", help="folder of photos to stylize")
    p.add_argument("--exemplars", metavar="DIR", help="folder of style exemplars for FID and KID (default: not scored)")
    p.add_argument("--out", default="evaluation", metavar="DIR", help="report folder (default: evaluation)")
    p.add_argument("--size", type=_positive_int, default=256, help="side of the square crops scored (default 256)")
    p.add_argument("--limit", type=_positive_int, default=None, help="score at most this many photos")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: best available)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("export-onnx", help="export a style's networks to ONNX (dynamic size, checked against PyTorch)")
    p.add_argument("style", help="registry name, style folder or Hub 'org/name'")
    p.add_argument("-o", "--output", required=True, help="folder for head.onnx [+ bg.onnx] and config.json")
    p.set_defaults(func=_cmd_export_onnx)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except PortraitStylizeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # the disk is full, a folder is not writable, ...
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
