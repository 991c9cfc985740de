"""The README's set-up commands are exactly what CI runs, and its examples name real things."""

from __future__ import annotations

import re

from portrait_stylize.cli import build_parser

from conftest import REPO


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


def test_readme_cli_options_exist():
    readme = (REPO / "README.md").read_text()
    from train import calibrate, local, tttn

    commands = build_parser()._subparsers._group_actions[0].choices
    parsers = [*commands.values(), tttn.build_parser(), local.build_parser(), calibrate.build_parser()]
    helps = "".join(parser.format_help() for parser in parsers)
    for option in set(re.findall(r"`(--[a-z-]+)", readme)):
        assert re.search(rf"{option}\b", helps), option
