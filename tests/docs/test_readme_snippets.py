"""Every README code block runs as pasted, from the repository root, with the example photos.

The Quick start blocks (install, demo, test suite) are what CI itself runs (``tests/docs/test_readme.py``
checks they are identical); the ``gradio_client`` block needs the live demo and runs in
``tests/front_ends/test_app.py``. Everything else runs here, in a scratch folder that sees ``examples/``.
"""

from __future__ import annotations

import re
import shlex

import numpy as np
import pytest
from PIL import Image

from helpers import REPO, run_cli

QUICK_START = ("python3 -m venv", ".venv/bin/python -m pytest")
BLOCK = re.compile(r"```(\w*)\n(.*?)```", re.S)


def readme_blocks(*kinds: str) -> list[str]:
    """Fenced README blocks tagged one of ``kinds`` (``""`` for untagged)."""
    return [body for tag, body in BLOCK.findall((REPO / "README.md").read_text()) if tag in kinds]


def command_lines() -> list[str]:
    lines = [line.split("  #")[0].strip() for body in readme_blocks("bash", "") for line in body.splitlines()]
    return [line for line in lines if line and not line.startswith(QUICK_START)]


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    (tmp_path / "examples").symlink_to(REPO / "examples")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_readme_has_the_blocks_this_file_runs():
    lines = command_lines()
    assert len(lines) >= 6 and all("portrait-stylize" in line for line in lines), lines
    assert len([b for b in readme_blocks("python") if "gradio_client" not in b]) == 1


@pytest.mark.parametrize("line", command_lines())
def test_command_line_runs_as_pasted(scratch, line):
    words = shlex.split(line)
    program = words.index(next(w for w in words if w.endswith("portrait-stylize")))
    result = run_cli(*words[program + 1:], cwd=scratch)
    assert result.returncode == 0, result.stderr[-2000:]
    if "-o" not in words:  # styles lists the built-in ones; backends names the candidates here
        assert ("candidates: torch" if words[program + 1] == "backends" else "toon") in result.stdout
        return
    out = scratch / words[words.index("-o") + 1]
    inputs = [scratch / w for w in words[program + 2:words.index("-o")] if not w.startswith("-")]
    results = sorted(out.glob("*.png")) if out.is_dir() else [out]
    assert results and all(p.stat().st_size > 0 for p in results), results
    if out.suffix == ".png":
        photo, art = (np.asarray(Image.open(p).convert("RGB"), float) for p in (inputs[0], out))
        assert photo.shape == art.shape and (np.abs(photo - art).max(-1) > 8).mean() > 0.02  # really stylized


def test_python_block_runs_as_pasted(scratch):
    (code,) = [b for b in readme_blocks("python") if "gradio_client" not in b]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    photo = np.asarray(Image.open(scratch / "examples" / "astronaut.jpg").convert("RGB"), float)
    art = np.asarray(Image.open(scratch / "astronaut_toon.png").convert("RGB"), float)
    assert art.shape == photo.shape and np.abs(art - photo).mean() > 1.0
