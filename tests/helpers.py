"""Plain helpers shared by the tests, imported by name (``from helpers import ...``): paths,
tiny random models, image measures, the command-line runner and the Hub test helpers. The
fixtures (``tiny``, ``env``, ``online``, ``portraits`` ...) are in ``conftest.py``."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fake_hub import seed_hub_cache

REPO = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"
IN_CI = os.environ.get("CI", "").lower() == "true"


def run_cli(*args: str, cwd: str | os.PathLike | None = None, env: dict[str, str] | None = None,
            exe: list[str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m portrait_stylize ARGS`` (or ``exe ARGS``, e.g. the installed ``portrait-stylize``)
    in a subprocess, offline (``HF_HUB_OFFLINE=1``) with ``env`` added to the environment, its
    output captured as text."""
    return subprocess.run([*(exe or [sys.executable, "-m", "portrait_stylize"]), *args], capture_output=True,
                          text=True, cwd=cwd, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
                          timeout=timeout)


def openvino_or_skip():
    """The ``openvino`` package imported as the package imports it (no telemetry sent); the
    calling test module is skipped where OpenVINO is not installed (it is an optional extra)."""
    import importlib.util

    import pytest

    from portrait_stylize.common.openvino_compiled import import_openvino

    if importlib.util.find_spec("openvino") is None:
        pytest.skip("openvino is not installed (pip install portrait-stylize[openvino])", allow_module_level=True)
    return import_openvino()


def lively_style_model(seed: int = 0, **kwargs):
    """A random TTNStyle whose activations neither vanish nor explode (Kaiming init, damped
    residual branches), so its output depends on a wide receptive field like a trained one."""
    from portrait_stylize.models import TTNStyle

    torch.manual_seed(seed)
    model = TTNStyle(**kwargs).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, a=0.2)
            torch.nn.init.zeros_(module.bias)
    for block in model.head.blocks:
        block.conv2.weight.data *= 0.3
    return model


def gray(img) -> np.ndarray:
    """PIL image -> float64 luma array in [0, 255]."""
    return np.asarray(img.convert("RGB"), dtype=np.float64) @ np.array([0.299, 0.587, 0.114])


def psnr(a, b, peak: float = 2.0) -> float:
    """PSNR in dB of two arrays whose values span ``peak`` (2 for the networks' [-1, 1])."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(peak**2 / mse))


def tiny_face_onnx(path, dim: int = 32) -> None:
    """A small random ArcFace stand-in as ONNX: (B, 3, 112, 112) in [-1, 1] -> (B, dim)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5, stride=4), torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 3, stride=2),
                              torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(16 * 13 * 13, dim)).eval()
    torch.onnx.export(net, torch.zeros(1, 3, 112, 112), str(path), input_names=["input"], output_names=["embedding"],
                      dynamic_axes={"input": {0: "batch"}}, dynamo=False)


def seed_metric_cache(home: Path) -> None:
    """Random metric networks where ``$HF_HOME`` = ``home`` keeps the real ones after their first
    download (with the records a download writes), so evaluation runs offline in tests."""
    import json

    from safetensors.torch import save_file
    from torchvision.models import inception_v3

    from portrait_stylize.common.files import sha256_file
    from portrait_stylize.evaluation.metric_weights import METRIC_WEIGHTS, SOURCE_FILE
    from portrait_stylize.evaluation.metrics import PerceptualDistance

    torch.manual_seed(0)
    lpips_state = {k: v for k, v in PerceptualDistance().net.state_dict().items()
                   if not k.startswith(("scaling_layer.", "lins."))}
    inception_state = inception_v3(weights=None, aux_logits=False, init_weights=False).state_dict()
    for name, write in (("lpips", lambda p: save_file(lpips_state, str(p))),
                        ("inception", lambda p: save_file(inception_state, str(p))),
                        ("arcface", tiny_face_onnx)):
        folder = home / "portrait-stylize" / "metrics" / name
        folder.mkdir(parents=True)
        path = folder / METRIC_WEIGHTS[name].filename
        write(path)
        (folder / SOURCE_FILE).write_text(json.dumps({"converted_sha256": sha256_file(path)}))


def compose_group(fixtures, seed: int = 0, grid=(6, 5), canvas=(1000, 800), crop_px=(48, 64)):
    """``(rgb, boxes)``: ``cols x rows`` fixture crops resized to ``crop_px`` pixels (random per
    crop), one per grid cell with jittered position, on smoothed grey noise. ``boxes`` are the
    placed crops' ``(x0, y0, x1, y1)``."""
    rng = np.random.default_rng(seed)
    (cols, rows), (width, height) = grid, canvas
    noise = rng.normal(128, 40, (height // 8, width // 8)).clip(0, 255).astype(np.uint8)
    picture = Image.fromarray(noise).resize((width, height), Image.BICUBIC).convert("RGB")
    crops = [Image.open(p).convert("RGB") for p in sorted((fixtures / "faces" / "cropped").glob("*.png"))]
    assert crops, "no fixture face crops"
    cell_w, cell_h = width / cols, height / rows
    boxes = []
    for row in range(rows):
        for col in range(cols):
            side = int(rng.integers(crop_px[0], crop_px[1] + 1))
            x = int(col * cell_w + (cell_w - side) / 2 + rng.uniform(-0.25, 0.25) * (cell_w - side))
            y = int(row * cell_h + (cell_h - side) / 2 + rng.uniform(-0.25, 0.25) * (cell_h - side))
            picture.paste(crops[(row * cols + col) % len(crops)].resize((side, side), Image.LANCZOS), (x, y))
            boxes.append((x, y, x + side, y + side))
    return np.asarray(picture), boxes


# --- registry, Hub and loading tests ---------------------------------------------------------------

#: The Hub repository of the tiny test style, and its commit.
HUB_REPO = "tiny-org/tiny-style"
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


def hub_entry(sha256: str, revision: str | None = COMMIT, repo_id: str = HUB_REPO,
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


def seed(env, tiny, files=None, commit=COMMIT, repo_id=HUB_REPO):
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
