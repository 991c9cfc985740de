"""The README's set-up commands are exactly what CI runs, and it and docs/*.md name real things."""

from __future__ import annotations

import re
from pathlib import Path

from portrait_stylize.cli import build_parser

from conftest import REPO

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


def test_readme_cli_options_exist():
    """Every `--option` named in README.md or docs/*.md exists in the CLI or a training script."""
    from train import calibrate, local, tttn

    commands = build_parser()._subparsers._group_actions[0].choices
    parsers = [*commands.values(), tttn.build_parser(), local.build_parser(), calibrate.build_parser()]
    helps = "".join(parser.format_help() for parser in parsers)
    for page in _doc_files():
        for option in sorted(set(re.findall(r"`(--[a-z-]+)", page.read_text()))):
            assert re.search(rf"{option}\b", helps), f"{page.relative_to(REPO)}: {option}"
