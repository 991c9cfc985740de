"""Plain helpers shared by ``test_registry.py``, ``test_hub.py`` and ``test_loading.py``.

The fixtures they use (``tiny``, ``env``, ``online``) live in ``conftest.py``; this module holds the
constants and functions, imported by name (``from hub_helpers import ...``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from fake_hub import seed_hub_cache

REPO = "tiny-org/tiny-style"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
WRONG_SHA = hashlib.sha256(b"not the weights").hexdigest()
UNREACHABLE = "http://127.0.0.1:9"  # discard port: connection refused


def write_registry(env: dict, styles: dict | None = None, raw: str | None = None, **top) -> Path:
    """Write the extra registry (a styles dict, or ``raw`` text) and point $PORTRAIT_STYLIZE_CHECKPOINTS at it."""
    path = env["registry"]
    text = raw if raw is not None else json.dumps({"format_version": 1, "styles": styles, **top})
    path.write_text(text, encoding="utf-8")
    env["monkeypatch"].setenv("PORTRAIT_STYLIZE_CHECKPOINTS", str(path))
    return path


def hub_entry(sha256: str, revision: str | None = COMMIT, repo_id: str = REPO,
              filename: str = "model.safetensors", **extra) -> dict:
    entry = {"kind": "hub", "repo_id": repo_id, "filename": filename, "sha256": sha256,
             "licence": "apache-2.0", "description": "tiny", **extra}
    if revision is not None:
        entry["revision"] = revision
    return entry


def assert_head_equal(model, expected: dict) -> None:
    got = model.head.state_dict()
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert got[key].dtype == value.dtype, key
        assert torch.equal(got[key].detach().cpu(), value), key


def seed(env, tiny, files=None, commit=COMMIT, repo_id=REPO):
    return seed_hub_cache(env["cache"], repo_id, files or tiny["files"], commit)


class Payload:
    """Unpickling this calls ``open(marker, "w")``: proof of code execution if the marker appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def malicious_checkpoint(path: Path, marker: Path, zipfile: bool = True) -> Path:
    torch.save({"head.x0.weight": Payload(marker)}, path, _use_new_zipfile_serialization=zipfile)
    return path
