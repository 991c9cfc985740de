"""``portrait-stylize`` command line (also ``python -m portrait_stylize``).

Examples::

    portrait-stylize styles
    portrait-stylize run photo.jpg -o photo_toon.png
    portrait-stylize run photos/ more.jpg --style sketch --strength 0.8 -o out/
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tqdm.auto import tqdm

from . import __version__
from .errors import PortraitStylizeError
from .backends import BACKENDS
from .io import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, save_image
from .models.style import StyleModel
from .pipeline import DEFAULT_TILE_SIZE, list_styles, load_style


def _expand_inputs(inputs: list[str]) -> list[Path]:
    """Files as given; folders replaced by the images directly inside them (sorted)."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()))
        else:
            files.append(path)
    return files


def _output_paths(files: list[Path], out: Path, single_file: bool) -> list[Path]:
    if single_file:
        return [out]
    taken: set[str] = set()
    paths = []
    for f in files:
        stem, n = f.stem, 1
        while stem in taken:
            stem, n = f"{f.stem}_{n}", n + 1
        taken.add(stem)
        paths.append(out / f"{stem}.png")
    return paths


def _cmd_styles(args: argparse.Namespace) -> int:
    styles = list_styles(args.pattern)
    rows = [("name", "kind", "licence", "offline", "description")]
    rows += [(s.name, s.kind, s.licence, "yes" if s.available_offline else "no", s.description) for s in styles]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4])
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    files = _expand_inputs(args.images)
    if not files:
        print(f"error: no images found in {' '.join(args.images)}", file=sys.stderr)
        return 2
    out = Path(args.output)
    single_file = len(files) == 1 and not Path(args.images[0]).is_dir() and out.suffix.lower() in IMAGE_SUFFIXES
    if not single_file and out.suffix.lower() in IMAGE_SUFFIXES:
        print(f"error: {len(files)} inputs need an output folder, but -o {out} looks like a file", file=sys.stderr)
        return 2
    stylizer = load_style(args.style, device=args.device, tile_size=args.tile_size or None,
                          max_pixels=args.max_pixels or None, backend=args.backend)
    failures: list[tuple[Path, str]] = []
    targets = _output_paths(files, out, single_file)
    for src, dst in tqdm(list(zip(files, targets)), desc=f"stylizing ({stylizer.name})", unit="img",
                         disable=len(files) < 2 or args.quiet):
        try:
            save_image(stylizer(src, strength=args.strength, progress=not args.quiet), dst)
        except (PortraitStylizeError, ValueError, OSError, RuntimeError) as exc:  # RuntimeError: e.g. out of memory
            failures.append((src, str(exc)))
            tqdm.write(f"skipped {src}: {exc}", file=sys.stderr)
    done = len(files) - len(failures)
    if not args.quiet:
        print(f"wrote {done} of {len(files)} image(s) to {out}")
    if failures:
        print(f"error: {len(failures)} of {len(files)} image(s) failed:", file=sys.stderr)
        for src, reason in failures:
            print(f"  {src}: {reason}", file=sys.stderr)
        return 1
    return 0


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    from .export import export_onnx

    stylizer = load_style(args.style, device="cpu", backend="torch")
    if not isinstance(stylizer.model, StyleModel):
        raise PortraitStylizeError(f"style {args.style!r} is a built-in image filter, not a network; nothing to export")
    for path in export_onnx(stylizer.model, args.output):
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="portrait-stylize", description="Turn portrait photos into artworks.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens (style resolution, downloads)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("styles", help="list registered styles (name, kind, licence, cached)")
    p.add_argument("pattern", nargs="?", default="*", help="glob on style names, e.g. '*toon*'")
    p.set_defaults(func=_cmd_styles)

    p = sub.add_parser("run", help="stylize images or folders of images")
    p.add_argument("images", nargs="+", help="image files and/or folders of images")
    p.add_argument("-o", "--output", required=True, help="output file (one input) or folder (written as NAME.png)")
    p.add_argument("-s", "--style", default=None, help="registry name, style folder or Hub 'org/name' (default: the registry's default)")
    p.add_argument("--strength", type=float, default=1.0, help="0..1, blend with the photo (default 1)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best available)")
    p.add_argument("--backend", choices=("auto", *BACKENDS), default="auto",
                   help="how networks run: torch (float32), torch-bf16, onnx (ONNX Runtime); default auto = fastest here")
    p.add_argument("--tile-size", type=int, default=DEFAULT_TILE_SIZE,
                   help=f"tile larger images at this size; 0 disables (default {DEFAULT_TILE_SIZE})")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help=f"refuse larger images; 0 disables (default {DEFAULT_MAX_PIXELS:,})")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summary")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("export-onnx", help="export a style's networks to ONNX (dynamic size, checked against PyTorch)")
    p.add_argument("style", help="registry name, style folder or Hub 'org/name'")
    p.add_argument("-o", "--output", required=True, help="folder for head.onnx [+ bg.onnx] and config.json")
    p.set_defaults(func=_cmd_export_onnx)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (PortraitStylizeError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
