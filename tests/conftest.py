"""Fixtures and hooks shared by every test: the real fixtures in ../shared (skipped when absent,
except in CI), a private Hub and cache, tiny saved styles. Plain helpers (constants, functions,
the command-line runner) are in ``helpers.py``, imported by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import IN_CI, REPO, SHARED_FIXTURES


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
                    "PORTRAIT_STYLIZE_GITHUB_RAW", "PORTRAIT_STYLIZE_FACE_BACKEND", "PORTRAIT_STYLIZE_FACEXLIB_DIR",
                    "MODELSCOPE_ENDPOINT", "MODELSCOPE_DOMAIN")


@pytest.fixture(autouse=True)
def no_ambient_state(monkeypatch):
    """Every test starts without the user's ``PORTRAIT_STYLIZE_*`` settings, and fails if it
    leaves torch's thread count changed for the tests after it (timings would depend on order)."""
    for name in AMBIENT_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    threads = torch.get_num_threads()
    yield
    assert torch.get_num_threads() == threads, "this test changed torch's thread count for the tests after it"


@pytest.fixture
def one_torch_thread():
    """Torch on one thread for the test: small graphs (the face models) run faster so than with two
    threads fighting a busy 2-core machine; the thread count is restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


# --- registry, Hub and loading tests (the helpers they share are in helpers.py) ----------------


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A real saved style: its two files' bytes and the saved model's ``head`` state dict."""
    from portrait_stylize.models import TTNStyle
    from portrait_stylize.models.serialization import save_style

    from fake_hub import sha256_hex

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

    from huggingface_hub import constants as hf_constants

    from fake_hub import FakeHub

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


