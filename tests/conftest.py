"""Shared test helpers: the real fixtures in ../shared (skipped when absent, except in CI) and tiny models."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"
IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI (``CI=true``) a skip is a failure: a missing fixture folder, TensorFlow venv or browser
    must not hide the tests that need it. Locally such tests skip, and ``-rs`` lists why."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where everything must run: {reason}"


#: The package's settings from the environment: a user's own must not steer the tests.
AMBIENT_SETTINGS = ("PORTRAIT_STYLIZE_CHECKPOINTS", "PORTRAIT_STYLIZE_CACHE", "PORTRAIT_STYLIZE_OFFLINE",
                    "PORTRAIT_STYLIZE_FACE_BACKEND", "PORTRAIT_STYLIZE_FACEXLIB_DIR")


@pytest.fixture(autouse=True)
def no_ambient_state(monkeypatch):
    """Every test starts without the user's ``PORTRAIT_STYLIZE_*`` settings, and fails if it
    leaves torch's thread count changed for the tests after it (timings would depend on order)."""
    for name in AMBIENT_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    threads = torch.get_num_threads()
    yield
    assert torch.get_num_threads() == threads, "this test changed torch's thread count for the tests after it"


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """``../shared/fixtures`` (real portraits, references); tests using it skip when it is absent."""
    if not SHARED_FIXTURES.is_dir():
        pytest.skip("../shared/fixtures is not available")
    return SHARED_FIXTURES


@pytest.fixture(scope="session")
def portraits(fixtures: Path) -> list[Path]:
    return [fixtures / "faces" / "cropped" / "Adele_crop.png", fixtures / "faces" / "whole" / "Blake_Lively.jpg",
            fixtures / "faces" / "selfies" / "a.jpg"]


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


@pytest.fixture(scope="session")
def tf_fixtures(tmp_path_factory) -> Path:
    """Frozen graphs, a checkpoint and TensorFlow's outputs built by ``tests/tf_make_fixtures.py``.

    Needs ``PORTRAIT_STYLIZE_TF_PYTHON``: a Python with ``tensorflow-cpu`` (``.ci/run`` builds
    ``.venv-tf`` for it). TensorFlow never enters the main environment.
    """
    import os
    import subprocess

    python = os.environ.get("PORTRAIT_STYLIZE_TF_PYTHON")
    if not python:
        pytest.skip("PORTRAIT_STYLIZE_TF_PYTHON (a Python with tensorflow-cpu) is not set")
    out = tmp_path_factory.mktemp("tf")
    result = subprocess.run([python, str(REPO / "tests" / "tf_make_fixtures.py"), str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


# --- registry, Hub and loading tests (test_registry.py, test_hub.py, test_loading.py) -----------
# Their constants and plain helpers are in hub_helpers.py.


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A real saved style: its two files' bytes and the saved model's ``head`` state dict."""
    from fake_hub import sha256_hex
    from portrait_stylize.models import TTNStyle
    from portrait_stylize.models.serialization import save_style

    folder = tmp_path_factory.mktemp("tiny_style")
    torch.manual_seed(1234)
    model = TTNStyle(name="tiny", description="tiny test style")
    save_style(model, folder)
    files = {name: (folder / name).read_bytes() for name in ("config.json", "model.safetensors")}
    head = {k: v.detach().clone() for k, v in model.head.state_dict().items()}
    return {"files": files, "head": head, "sha256": sha256_hex(files["model.safetensors"]), "folder": folder}


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Private cache, offline, cwd in tmp, and a :class:`FakeHub` as ``HF_ENDPOINT``.

    Offline tests add the repo they look for to ``env["hub"]``: if the package ignored
    ``HF_HUB_OFFLINE`` the download would succeed there, and the teardown check below fails any
    test that sent a request while ``HF_HUB_OFFLINE=1``. huggingface_hub's own import-time
    offline flag is forced off, so only the package's handling of ``HF_HUB_OFFLINE`` is tested.
    """
    import os

    from fake_hub import FakeHub
    from huggingface_hub import constants as hf_constants

    cache = tmp_path / "hf_cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("PORTRAIT_STYLIZE_CHECKPOINTS", raising=False)  # set by write_registry
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.chdir(tmp_path)
    with FakeHub() as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.endpoint)
        yield {"cache": cache, "registry": tmp_path / "registry.json", "tmp": tmp_path,
               "monkeypatch": monkeypatch, "hub": fake}
        if os.environ.get("HF_HUB_OFFLINE") == "1":
            assert fake.requests == [], "HF_HUB_OFFLINE=1 but the Hub was contacted"


@pytest.fixture
def online(env, monkeypatch):
    """``env`` with offline mode off: downloads go to ``env["hub"]``."""
    monkeypatch.delenv("HF_HUB_OFFLINE")
    return env


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
