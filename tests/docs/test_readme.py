"""The README's set-up commands are exactly what CI runs, and it and docs/*.md name real things."""

from __future__ import annotations

import argparse
import ast
import functools
import itertools
import re
import shlex
from pathlib import Path

import pytest

from portrait_stylize.cli import build_parser

from helpers import REPO

MAX_README_LINES = 250


def _doc_files() -> list[Path]:
    """README.md and every page under docs/ (the README links to them)."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _quick_start_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


def test_readme_has_exactly_two_setup_commands_and_ci_runs_them():
    commands = _quick_start_commands()
    assert len(commands) == 2 and all("\n" not in c for c in commands), commands
    assert "pip install -r requirements.txt" in commands[0] and commands[0].endswith("python app.py")
    assert "pytest" in commands[1]
    # The demo command runs in the background in CI (until the server answers): "COMMAND &".
    ci_lines = [line.strip().removesuffix(" &") for line in (REPO / ".ci" / "run").read_text().splitlines()]
    for command in commands:
        assert command in ci_lines, f"CI does not run the README command: {command}"


def test_readme_is_short():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines (at most {MAX_README_LINES}); move reference material into docs/*.md")


def _relative_links(text: str) -> list[str]:
    """Targets of markdown links and images that are not web addresses, without their #anchor."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # fenced code
    text = re.sub(r"`[^`]*`", "", text)  # inline code
    targets = []
    for target in re.findall(r"!?\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)", text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, flags=re.I):  # http:, https:, mailto:, ...
            continue
        path = target.split("#", 1)[0]
        if path:
            targets.append(path)
    return targets


def test_docs_relative_links_point_to_existing_files():
    checked = 0
    for page in _doc_files():
        for target in _relative_links(page.read_text()):
            assert (page.parent / target).exists(), f"{page.relative_to(REPO)} links to missing {target}"
            checked += 1
    assert checked, "no relative links found; is the link pattern broken?"


# --- command-line options in README.md and docs/*.md --------------------------------------------
# Each `--option` is checked against the parser of the command it is written with: in a command
# line (fenced or inline code), the program and `portrait-stylize` subcommand on that line; in
# prose, the nearest command named before it in the same paragraph (a command line, a subcommand
# such as `run`, or a script such as `train/tttn.py`; a paragraph ending in ":" starts with the
# first command of the fenced block that follows it), else the last command of a fenced block
# earlier in the same section, else the section's entry in PROSE_COMMANDS.

CLI = "portrait-stylize"
TRAIN_SCRIPTS = ("train/tttn.py", "train/local.py", "train/calibrate.py")
# Programs whose options are not ours to check (a line of any other program with options fails).
EXTERNAL = {"pip", "tensorboard", "python -m pytest", "python -m venv", "python3 -m venv"}
# Sections whose prose names options without naming their command: (page, heading) -> commands.
PROSE_COMMANDS = {
    ("docs/training.md", "Train your own style"): ("train/tttn.py",),
    ("docs/reliability.md", "Training runs"): ("train/tttn.py", "train/local.py"),
    ("docs/convert.md", "Official DCT-Net styles"): (f"{CLI} run",),  # `--max-short-side 720`
}
SHELL_BLOCKS = ("", "bash", "sh", "shell", "console")
OPTION = re.compile(r"--?[A-Za-z][\w-]*")


@functools.cache
def _parsers() -> dict[str, argparse.ArgumentParser]:
    """The real parsers by command: `portrait-stylize`, `portrait-stylize SUB`, `train/*.py`."""
    from train import calibrate, local, tttn

    cli = build_parser()
    subcommands = next(a for a in cli._actions if isinstance(a, argparse._SubParsersAction)).choices
    return {CLI: cli, **{f"{CLI} {name}": sub for name, sub in subcommands.items()},
            **dict(zip(TRAIN_SCRIPTS, (tttn.build_parser(), local.build_parser(), calibrate.build_parser())))}


def _script_options(script: str) -> dict[str, tuple | None]:
    """Option strings -> choices of a repository script without a build_parser (e.g. benchmarks/),
    read from its ``add_argument(...)`` calls."""
    path = REPO / script
    if not path.is_file():
        raise ValueError(f"no such script: {script}")
    options = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
            literal = [k.value for k in node.keywords
                       if k.arg == "choices" and isinstance(k.value, ast.Tuple | ast.List)]
            choices = ast.literal_eval(literal[0]) if literal else None  # choices=NAME: values unchecked
            options.update({a.value: choices for a in node.args if isinstance(a, ast.Constant)})
    return options


def _options(command: str) -> dict[str, tuple | None]:
    """Option strings of ``command`` -> their choices (``None``: any value)."""
    if command in _parsers():
        return {o: a.choices for o, a in _parsers()[command]._option_string_actions.items()}
    return _script_options(command)


def _program(words: list[str]) -> tuple[str, list[str]]:
    """What a shell command runs, and its arguments: `portrait-stylize` (also as `python -m
    portrait_stylize`), a script run by `python` or `accelerate launch`, `python -m MODULE`, or a
    program's name; ``""`` for a bare file name."""
    program, rest = Path(words[0]).name, words[1:]
    if program == "accelerate" and rest[:1] == ["launch"]:
        program, rest = "python", list(itertools.dropwhile(lambda w: not w.endswith(".py"), rest))
    if program.startswith("python") and rest[:1] == ["-m"] and len(rest) > 1:
        return (CLI, rest[2:]) if rest[1] == "portrait_stylize" else (f"python -m {rest[1]}", rest[2:])
    if program.startswith("python") and rest[:1] and rest[0].endswith(".py"):
        return rest[0], rest[1:]
    return ("" if program.endswith(".py") else program), rest


#: Scripts that run the command written after their ``--``.
WRAPPERS = ("benchmarks/isa_cap.py",)


def _split_command_line(line: str) -> list[tuple[str, list[str]]]:
    """``(command, arguments)`` of each of our commands in a shell line, `portrait-stylize SUB`
    after `portrait-stylize` (its options before SUB); other programs in EXTERNAL and lines without
    options give nothing. ``ValueError`` for an unknown program or subcommand, or unbalanced quotes."""
    commands, words = [], []
    for token in [*shlex.split(line, comments=True), "&&"]:
        # A wrapper script runs the command after its "--" (benchmarks/isa_cap.py -- python ...).
        wrapped = token == "--" and bool(words) and _program(words)[0] in WRAPPERS
        if token not in ("&&", "||", "|", ";") and not wrapped:
            if token != "...":  # an elided part
                words.append(token)
            continue
        words = list(itertools.dropwhile(lambda w: re.fullmatch(r"\w+=\S*", w), words))  # VAR=value prefixes
        program, rest = _program(words) if words else ("", [])
        words = []
        if program == CLI:
            global_options = list(itertools.takewhile(lambda w: w.startswith("-"), rest))
            commands.append((CLI, global_options))
            if rest := rest[len(global_options):]:
                if f"{CLI} {rest[0]}" not in _parsers():
                    raise ValueError(f"unknown subcommand {CLI} {rest[0]}")
                commands.append((f"{CLI} {rest[0]}", rest[1:]))
        elif program.endswith(".py"):
            commands.append((program, rest))
        elif program not in EXTERNAL and any(OPTION.fullmatch(w.split("=")[0]) for w in rest):
            raise ValueError(f"options of an unknown program: {line}")
    return commands


def _check_command_line(line: str) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """The commands of a shell line (the last one last), what is wrong with their options, and
    each ``(command, option)`` checked."""
    commands, errors, checked = _split_command_line(line), [], []
    for command, words in commands:
        options = _options(command)
        for i, word in enumerate(words):
            option = word.split("=", 1)[0]
            if not OPTION.fullmatch(option):
                continue
            checked.append((command, option))
            value = word.split("=", 1)[1] if "=" in word else words[i + 1] if i + 1 < len(words) else None
            if option not in options:
                errors.append(f"{option} is not an option of {command}")
            elif options[option] and value is not None and value not in options[option]:
                errors.append(f"{command} {option} takes {'|'.join(map(str, options[option]))}, not {value}")
    return [c for c, _ in commands], errors, checked


def _mentioned_command(span: str) -> str | None:
    """The command an inline code span names: a subcommand such as `run`, a training script, or a
    command line; ``None`` for anything else."""
    if f"{CLI} {span}" in _parsers():
        return f"{CLI} {span}"
    if span in TRAIN_SCRIPTS:
        return span
    try:
        commands = _split_command_line(span)
    except ValueError:  # not a command line
        return None
    return commands[-1][0] if commands else None


def _blocks(text: str):
    """``(kind, section, first line number, text)`` of each paragraph (``"prose"``) and fenced
    block of a markdown page: ``"shell"`` for untagged and bash blocks, ``"other"`` for the rest."""
    section, kind, start, lines = "", None, 0, []
    for number, line in enumerate([*text.splitlines(), ""], 1):
        if kind in ("shell", "other"):
            if line.startswith("```"):
                yield kind, section, start, "\n".join(lines)
                kind, lines = None, []
            else:
                lines.append(line)
        elif line.startswith(("```", "#")) or not line.strip():
            if lines:
                yield kind, section, start, "\n".join(lines)
            kind, lines = None, []
            if line.startswith("```"):
                kind, start = ("shell" if line[3:].strip() in SHELL_BLOCKS else "other"), number + 1
            elif line.startswith("#"):
                section = line.lstrip("#").strip()
        else:
            if kind is None:
                kind, start = "prose", number
            lines.append(line)


def _logical_lines(block: str, start: int):
    """``(line number, line)`` of a fenced block, lines continued with a backslash joined."""
    joined, first = "", start
    for number, line in enumerate(block.splitlines(), start):
        first = first if joined else number
        joined += line
        if joined.endswith("\\"):
            joined = joined[:-1] + " "
            continue
        yield first, joined
        joined = ""


def _shell_block(page: str, start: int, block: str) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """The commands of a fenced shell block (one per line, its subcommand for `portrait-stylize`),
    what is wrong with their options, and each ``(command, option)`` checked."""
    commands, errors, checked = [], [], []
    for number, line in _logical_lines(block, start):
        try:
            line_commands, problems, seen = _check_command_line(line)
        except ValueError as exc:
            line_commands, problems, seen = [], [str(exc)], []
        commands += line_commands[-1:]
        errors += [f"{page}:{number}: {p}" for p in problems]
        checked += seen
    return commands, errors, checked


def _option_errors(page: str, text: str) -> tuple[list[str], list[tuple[str, str]]]:
    """What is wrong with the command-line options named on a markdown page, and every
    ``(command, option)`` checked."""
    errors, checked, fenced = [], [], {}
    blocks = list(_blocks(text))
    for i, (kind, section, start, block) in enumerate(blocks):
        if kind == "shell":
            commands, problems, seen = _shell_block(page, start, block)
            errors, checked = errors + problems, checked + seen
            if commands:
                fenced[section] = commands[-1]
        if kind != "prose":
            continue
        # The command named last in this paragraph; a paragraph ending in ":" starts with the
        # first command of the fenced block it introduces.
        following = blocks[i + 1] if i + 1 < len(blocks) else None
        introduced = block.rstrip().endswith(":") and following and following[0] == "shell"
        named = next(iter(_shell_block(page, following[2], following[3])[0]), None) if introduced else None
        for match in re.finditer(r"`([^`]+)`", block):
            span, where = " ".join(match.group(1).split()), f"{page}:{start + block[:match.start()].count(chr(10))}"
            if (mention := _mentioned_command(span)) is not None:
                _, problems, seen = _check_command_line(span)
                errors += [f"{where}: {p}" for p in problems]
                checked += seen
                named = mention
                continue
            for option in re.findall(r"(?<![\w-])--[A-Za-z][\w-]*", span if span.startswith("-") else ""):
                owners = ((named,) if named else (fenced[section],) if section in fenced
                          else PROSE_COMMANDS.get((page, section), ()))
                if not owners:
                    errors.append(f"{where}: {option} in prose names no command; name it nearby or add "
                                  f"({page!r}, {section!r}) to PROSE_COMMANDS")
                for owner in owners:
                    checked.append((owner, option))
                    choices = _options(owner).get(option)
                    values = re.fullmatch(rf"{option} (\S+\|\S+)", span)  # `--backend auto|torch|...`
                    if option not in _options(owner):
                        errors.append(f"{where}: {option} is not an option of {owner}")
                    elif choices and values and set(values.group(1).split("|")) != set(choices):
                        errors.append(f"{where}: {owner} {option} takes {'|'.join(choices)}, not {values.group(1)}")
    return errors, checked


def test_docs_options_belong_to_the_command_they_are_written_with():
    """Every option in README.md and docs/*.md, in command lines and in prose, is an option of
    its command's real parser (a `portrait-stylize` subcommand or a train/ or benchmarks/ script)."""
    errors, checked = [], set()
    for page in _doc_files():
        page_errors, page_checked = _option_errors(str(page.relative_to(REPO)), page.read_text())
        errors += page_errors
        checked |= set(page_checked)
    assert errors == []
    # The collector sees fenced command lines, `run`/`video` prose lists and training tables.
    assert {(f"{CLI} run", "--strength"), (f"{CLI} video", "--max-seconds"), (f"{CLI} run", "--tile-size"),
            (f"{CLI} convert", "--gf-eps"), ("train/tttn.py", "--max-steps"), ("train/local.py", "--regions"),
            ("train/calibrate.py", "--min-face"), ("benchmarks/bench_inference.py", "--repeats")} <= checked


@pytest.mark.parametrize("markdown,error", [
    ("```bash\nportrait-stylize video x.mp4 -o y.mp4 --tile-size 3\n```",
     "page.md:2: --tile-size is not an option of portrait-stylize video"),
    ("```\nportrait-stylize run a.jpg \\\n    --strenght 0.8 -o out/\n```",
     "page.md:2: --strenght is not an option of portrait-stylize run"),
    ("```bash\npython -m portrait_stylize run -v a.jpg -o b.png\n```", "-v is not an option of portrait-stylize run"),
    ("```bash\naccelerate launch train/local.py --photos p/ --align-faces\n```",
     "--align-faces is not an option of train/local.py"),
    ("```bash\npython train/calibrate.py img2img --model m --max-steps 5\n```",
     "--max-steps is not an option of train/calibrate.py"),
    ("```bash\nportrait-stylize run a.jpg -o b.png --backend tensorrt\n```",
     "portrait-stylize run --backend takes auto|torch|torch-bf16|onnx|onnx-int8|openvino|openvino-bf16|"
     "openvino-int8, not tensorrt"),
    ("```bash\nportrait-stylize -v transmogrify a.jpg\n```", "unknown subcommand portrait-stylize transmogrify"),
    ("```bash\nmagick a.jpg --resize 50%\n```", "options of an unknown program"),
    ("Use `portrait-stylize video IN -o OUT.mp4 --tile-size 3`.",
     "--tile-size is not an option of portrait-stylize video"),
    ("`video` takes `--smoothing` and\n`--max-short-side N`.",
     "page.md:2: --max-short-side is not an option of portrait-stylize video"),
    ("`run` options: `--face-backend auto|dlib`", "portrait-stylize run --face-backend takes auto|mediapipe|facexlib"),
    ("```bash\naccelerate launch train/local.py --photos p/\n```\n\nAdd `--align-faces`.",
     "page.md:5: --align-faces is not an option of train/local.py"),
    ("```bash\naccelerate launch train/local.py\n```\n\nThat is, `train/tttn.py` with `--reference`.",
     "--reference is not an option of train/tttn.py"),
    ("With `--align-faces`:\n\n```bash\npython train/calibrate.py img2img --model m\n```",
     "page.md:1: --align-faces is not an option of train/calibrate.py"),
    ("```bash\nportrait-stylize run a.jpg\n```\n\n## Other\n\nPass `--tile-size 0`.",
     "page.md:7: --tile-size in prose names no command"),
])
def test_option_check_catches_a_misplaced_option(markdown, error):
    errors, _ = _option_errors("page.md", markdown)
    assert len(errors) == 1 and error in errors[0], errors
