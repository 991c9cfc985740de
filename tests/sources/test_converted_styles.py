"""Styles converted on first use (registry kinds ``modelscope`` and ``url``), end to end and offline.

Covers :func:`portrait_stylize.loading._load_converted` with its two makers, the converted-style
cache (:mod:`portrait_stylize.sources.converted_cache`), the downloader (:mod:`portrait_stylize.common.downloads`)
and the ModelScope client (:mod:`portrait_stylize.sources.modelscope`), against :class:`fake_modelscope.FakeModelScope`
(and, for ``url`` styles, a tiny local file server). Nothing here touches the network or ``~/.cache``:
every test gets private ``PORTRAIT_STYLIZE_CACHE`` / ``HF_HOME`` / ``HF_HUB_CACHE`` folders, an extra
registry named by ``PORTRAIT_STYLIZE_CHECKPOINTS`` and ``MODELSCOPE_ENDPOINT`` pointing at the fake.

The served model is made of the frozen graphs of the ``tf_fixtures`` fixture (exported like the
official DCT-Net ``cartoon_h.pb`` / ``cartoon_bg.pb``) and a synthetic ``alpha.jpg``; the parity
tests run those graphs in TensorFlow itself through ``tests/tf_run_graph.py`` (in the Python named by
``PORTRAIT_STYLIZE_TF_PYTHON``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter

import portrait_stylize as ps
from portrait_stylize.common import downloads
from portrait_stylize.convert.ttn_releases import read_tflite, ttn_from_weights
from portrait_stylize.errors import (
    ChecksumMismatchError,
    StyleDownloadError,
    StyleNotCachedError,
)
from portrait_stylize.sources import converted_cache as converted
from portrait_stylize.sources import modelscope
from portrait_stylize.sources.registry import builtin_registry_path, read_registry

import fake_modelscope
from fake_modelscope import FakeModelScope, sha256_hex
from helpers import REPO, SHARED_FIXTURES, psnr

MODEL = "iic/cv_test"
STYLE = "test-anime"
LABEL = f"'{STYLE}'"  # how messages name the style
#: The files every official DCT-Net model's pipeline loads (the SDK's ImageCartoonPipeline), per role.
FILES = {"head": ["cartoon_h.pb"], "bg": ["cartoon_bg.pb"], "alpha": ["alpha.jpg"]}
USED = ("cartoon_h.pb", "cartoon_bg.pb", "alpha.jpg")  # the files the style is made of, in role order
CONVERSION = {"channel_order": "bgr", "image_pad_multiple": 16, "image_pad_value": 1.0}
WRONG_SHA = hashlib.sha256(b"not the served file").hexdigest()
WHITEBOX_FILE = "whitebox_cartoon_gan_dr.tflite"
WHITEBOX_SHA = "eea087546bfe1dd951c01713af5fbc527c5a351ccf2db3a166e202db5eb5c90b"
TF_RUN_GRAPH = REPO / "tests" / "tf_run_graph.py"


def modelscope_entry(model_id: str = MODEL, revision: str | None = "v1.0.0", **extra) -> dict:
    """A registry entry like the real DCT-Net ones in checkpoints.json, for the fake model."""
    entry = {"kind": "modelscope", "model_id": model_id, "files": FILES, "conversion": CONVERSION,
             "licence": "apache-2.0", "description": "test", **extra}
    if revision is not None:
        entry["revision"] = revision
    return entry


def alpha_jpg(size: int = 288) -> bytes:
    """A DCT-Net-like paste mask: a soft white ellipse on black, as JPEG."""
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).ellipse([size * 0.12, size * 0.06, size * 0.88, size * 0.98], fill=255)
    buf = io.BytesIO()
    mask.filter(ImageFilter.GaussianBlur(size / 24)).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def photo(max_side: int = 360) -> Image.Image:
    """A real portrait from ../shared/fixtures when present, else a synthetic picture."""
    path = SHARED_FIXTURES / "faces" / "whole" / "Blake_Lively.jpg"
    if path.is_file():
        img = Image.open(path).convert("RGB")
    else:
        yy, xx = np.mgrid[0:240, 0:320]
        arr = np.stack([xx * 255 / 320, yy * 255 / 240, (xx + yy) * 255 / 560], -1).astype(np.uint8)
        img = Image.fromarray(arr)
        ImageDraw.Draw(img).ellipse([110, 40, 210, 180], fill=(224, 180, 150))
    img.thumbnail((max_side, max_side))
    return img


def cache_contents(root: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """``(style folders, temporary entries, files that are not locks)`` under the cache ``root``."""
    if not root.exists():
        return [], [], []
    entries = list(root.rglob("*"))
    styles = sorted({p.parent for p in entries if p.name in ("config.json", converted.PROVENANCE_NAME)})
    temporary = [p for p in entries if ".tmp-" in p.name]
    others = [p for p in entries if p.is_file() and not p.name.endswith(".lock")]
    return styles, temporary, others


def assert_cache_empty(root: Path) -> None:
    styles, temporary, others = cache_contents(root)
    assert styles == [] and temporary == [] and others == [], (styles, temporary, others)


def describe(request: fake_modelscope.Request, names: dict[str, str]) -> str:
    """A request to the fake as a short word: listing, revisions, file NAME, blob NAME."""
    if request.path.startswith("/blobs/"):
        return f"blob {names.get(request.path.rsplit('/', 1)[-1], '?')}"
    if request.path.endswith("/repo/files"):
        return "listing"
    if request.path.endswith("/revisions"):
        return "revisions"
    if request.path.endswith("/repo"):
        return f"file {request.query.get('FilePath')}"
    return request.path


def has_range(request) -> bool:
    return any(key.lower() == "range" for key in request.headers)


def isolate(mp: pytest.MonkeyPatch, tmp: Path, endpoint: str) -> Path:
    """Private caches, online (CI sets HF_HUB_OFFLINE=1 globally), the fake as ModelScope, whose
    busy answers are retried with a short backoff."""
    cache = tmp / "converted"
    mp.setenv("PORTRAIT_STYLIZE_CACHE", str(cache))
    mp.setenv("HF_HOME", str(tmp / "hf_home"))
    mp.setenv("HF_HUB_CACHE", str(tmp / "hf_cache"))
    mp.setenv("MODELSCOPE_ENDPOINT", endpoint)
    mp.delenv("MODELSCOPE_DOMAIN", raising=False)
    mp.setattr(modelscope, "BACKOFF_S", 0.01)
    for variable in downloads.OFFLINE_VARIABLES:
        mp.delenv(variable, raising=False)
    mp.delenv("PORTRAIT_STYLIZE_CHECKPOINTS", raising=False)
    return cache


def write_registry(mp: pytest.MonkeyPatch, path: Path, styles: dict) -> Path:
    path.write_text(json.dumps({"format_version": 1, "styles": styles}), encoding="utf-8")
    mp.setenv("PORTRAIT_STYLIZE_CHECKPOINTS", str(path))
    return path


def load(name: str = STYLE, **kwargs) -> ps.Stylizer:
    return ps.load_style(name, **{"device": "cpu", "backend": "torch", **kwargs})


@pytest.fixture(scope="module")
def served(tf_fixtures) -> dict[str, bytes]:
    """The fake model's files: the fixture graphs under DCT-Net's names, a paste mask, extras."""
    return {"cartoon_h.pb": (tf_fixtures / "head.pb").read_bytes(),
            "cartoon_bg.pb": (tf_fixtures / "bg.pb").read_bytes(),
            "alpha.jpg": alpha_jpg(),
            "configuration.json": b'{"framework": "tensorflow", "task": "image-portrait-stylization"}',
            "README.md": b"# test model\n"}


@dataclass
class Env:
    tmp: Path
    cache: Path
    ms: FakeModelScope | None
    mp: pytest.MonkeyPatch
    served: dict[str, bytes]
    names: dict[str, str] = field(default_factory=dict)  # sha256 -> file name, for describe()

    def registry(self, styles: dict) -> Path:
        return write_registry(self.mp, self.tmp / "registry.json", styles)

    def requests(self, start: int = 0) -> list[str]:
        return [describe(r, self.names) for r in self.ms.requests[start:]]

    def folder(self, revision: str = "v1.0.0", model_id: str = MODEL) -> Path:
        return converted.style_folder("modelscope", model_id, revision)


@pytest.fixture
def msenv(tmp_path, monkeypatch, served):
    """Isolated caches, online, a fake ModelScope serving ``MODEL`` at tag v1.0.0, and the extra
    registry holding ``STYLE`` (pinned to v1.0.0)."""
    monkeypatch.chdir(tmp_path)
    with FakeModelScope() as ms:
        cache = isolate(monkeypatch, tmp_path, ms.endpoint)
        ms.add_model(MODEL, served, tags=["v1.0.0"])
        env = Env(tmp_path, cache, ms, monkeypatch, served, {sha256_hex(v): k for k, v in served.items()})
        env.registry({STYLE: modelscope_entry()})
        yield env


@pytest.fixture
def urlenv(tmp_path, monkeypatch):
    """Isolated caches and online, with no ModelScope (``url`` styles need no TensorFlow fixtures)."""
    monkeypatch.chdir(tmp_path)
    cache = isolate(monkeypatch, tmp_path, "http://127.0.0.1:9")  # discard port: nothing answers
    return Env(tmp_path, cache, None, monkeypatch, {})


@pytest.fixture(scope="module")
def shared_style(served, tmp_path_factory) -> Path:
    """One style converted through the real first-use path, for tests that only read it."""
    tmp = tmp_path_factory.mktemp("shared_style")
    with pytest.MonkeyPatch.context() as mp, FakeModelScope() as ms:
        isolate(mp, tmp, ms.endpoint)
        ms.add_model(MODEL, served, tags=["v1.0.0"])
        write_registry(mp, tmp / "registry.json", {STYLE: modelscope_entry()})
        load()
        folder = converted.style_folder("modelscope", MODEL, "v1.0.0")
    assert (folder / "model.safetensors").is_file()
    return folder


# --- 1. the whole first-use flow, then the cache alone ------------------------------------------


def test_first_use_downloads_verifies_converts_caches_then_works_offline(msenv, served):
    img = photo()
    st = load(face_backend="mediapipe")
    assert st.spec.kind == "modelscope" and st.model.arch == "ttn" and st.model.bg is not None

    # listing, then the three files the roles name (nothing else), each redirected to its blob
    assert msenv.requests() == ["listing", "file cartoon_h.pb", "blob cartoon_h.pb", "file cartoon_bg.pb",
                                "blob cartoon_bg.pb", "file alpha.jpg", "blob alpha.jpg"]
    assert msenv.ms.requests[0].query["Revision"] == "v1.0.0"
    assert all(r.query["Revision"] == "v1.0.0" for r in msenv.ms.requests if r.path.endswith("/repo"))

    folder = msenv.folder()
    assert folder.is_relative_to(msenv.cache)
    assert {"config.json", "model.safetensors", "provenance.json"} <= {p.name for p in folder.iterdir()}
    provenance = json.loads((folder / "provenance.json").read_text())
    assert provenance == {"kind": "modelscope", "source": MODEL, "revision": "v1.0.0",
                          "files": {name: sha256_hex(served[name]) for name in USED},
                          "converter_version": converted.CONVERTER_VERSION}
    config = json.loads((folder / "config.json").read_text())
    assert config["channel_order"] == "bgr" and config["image_pad_multiple"] == 16
    assert config["image_pad_value"] == 1.0 and config["face_mask_size"] == 288
    assert config["licence"] == "apache-2.0" and config["name"] == STYLE
    assert config["head"]["gf_eps"] == 5e-3 and config["bg"]["gf_eps"] == 1e-2
    styles, temporary, _ = cache_contents(msenv.cache)
    assert styles == [folder] and temporary == []

    result, details = st(img, return_details=True)
    first = np.asarray(result)
    assert first.shape == (img.height, img.width, 3)
    assert not np.array_equal(first, np.asarray(img))
    if SHARED_FIXTURES.is_dir():  # a real portrait: the head network ran on the face, pasted with alpha.jpg
        assert details.stylized_faces and details.face_backend == "mediapipe" and details.crops

    # the cache alone: no request while the server runs, none possible once it is gone
    count = len(msenv.ms.requests)
    assert np.array_equal(np.asarray(load(face_backend="mediapipe")(img)), first)
    assert len(msenv.ms.requests) == count
    msenv.ms.stop()
    assert np.array_equal(np.asarray(load(face_backend="mediapipe")(img)), first)
    msenv.mp.setenv("HF_HUB_OFFLINE", "1")
    assert np.array_equal(np.asarray(load(face_backend="mediapipe")(img)), first)
    assert {s.name: s.available_offline for s in ps.list_styles(STYLE)} == {STYLE: True}
    assert len(msenv.ms.requests) == count


# --- 2. parity with TensorFlow --------------------------------------------------------------------


def run_tensorflow(graph: Path, bgr: np.ndarray, tmp: Path) -> np.ndarray:
    python = os.environ.get("PORTRAIT_STYLIZE_TF_PYTHON")
    if not python:
        pytest.skip("PORTRAIT_STYLIZE_TF_PYTHON (a Python with tensorflow-cpu) is not set")
    np.save(tmp / "in.npy", bgr.astype(np.float32))
    result = subprocess.run([python, str(TF_RUN_GRAPH), str(graph), str(tmp / "in.npy"), str(tmp / "out.npy")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = np.load(tmp / "out.npy")
    assert out.dtype == np.uint8 and out.shape == bgr.shape
    return out


def ours(style_folder: Path, rgb: np.ndarray, part: str) -> np.ndarray:
    """The converted style's network on an RGB uint8 picture (``(1, 3, H, W)`` in [0, 1], no face
    pass), quantized to uint8 by the graph's own last step: ``clip(x, -0.999999, 0.999999)``,
    ``(x + 1) * 127.5``, ``tf.cast`` (truncation), so that only the networks are compared."""
    model = load(str(style_folder)).model
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255.0
    with torch.inference_mode():
        y = model(x, part)[0].permute(1, 2, 0).double().numpy()
    return ((np.clip(y * 2.0 - 1.0, -0.999999, 0.999999) + 1.0) * 127.5).astype(np.uint8)


def test_background_network_matches_tensorflow(shared_style, tf_fixtures, tmp_path):
    """Whole image: the official pipeline pads bottom/right to a multiple of 16 with white."""
    img = photo(max_side=10_000).resize((250, 183))  # neither side a multiple of 16
    rgb = np.asarray(img)
    h, w = rgb.shape[:2]
    assert h % 16 and w % 16
    padded = np.pad(rgb[..., ::-1].astype(np.float32), ((0, -h % 16), (0, -w % 16), (0, 0)), constant_values=255)
    expected = run_tensorflow(tf_fixtures / "bg.pb", padded, tmp_path)[:h, :w, ::-1]
    got = ours(shared_style, rgb, "image")
    assert psnr(got, expected, peak=255.0) >= 60.0


def test_head_network_matches_tensorflow(shared_style, tf_fixtures, tmp_path):
    img = photo(max_side=10_000)
    side = min(img.size)
    crop = img.crop(((img.width - side) // 2, 0, (img.width + side) // 2, side)).resize((288, 288))
    rgb = np.asarray(crop)
    expected = run_tensorflow(tf_fixtures / "head.pb", rgb[..., ::-1].astype(np.float32), tmp_path)[..., ::-1]
    got = ours(shared_style, rgb, "face")
    assert psnr(got, expected, peak=255.0) >= 60.0


# --- 3. faults: a clear error, nothing cached, and the next call works ----------------------------


FAULTS = [
    ("listing", "404", StyleDownloadError),
    ("listing", "500", StyleDownloadError),
    ("listing", "html", StyleDownloadError),
    ("cartoon_h.pb", "404", StyleDownloadError),
    ("cartoon_bg.pb", "500", StyleDownloadError),
    ("alpha.jpg", "html", StyleDownloadError),
    ("cartoon_bg.pb", "wrong-bytes", ChecksumMismatchError),
    ("cartoon_bg.pb", "truncate", StyleDownloadError),
    ("cartoon_h.pb", "stall", (StyleNotCachedError, StyleDownloadError)),
]


@pytest.mark.parametrize("where,fault,error", FAULTS, ids=[f"{w}-{f}" for w, f, _ in FAULTS])
def test_fault_raises_leaves_nothing_and_next_call_works(msenv, where, fault, error):
    if fault == "stall":
        msenv.mp.setattr(downloads, "STALL_S", 2.0)
    msenv.ms.faults[where] = fault
    start = time.monotonic()
    with pytest.raises(ps.PortraitStylizeError) as exc:
        load()
    assert isinstance(exc.value, error), repr(exc.value)
    assert LABEL in str(exc.value)
    assert time.monotonic() - start < 20
    assert_cache_empty(msenv.cache)
    assert {s.name: s.available_offline for s in ps.list_styles(STYLE)} == {STYLE: False}

    if fault == "truncate":  # resumed with Range, RETRIES times, then given up
        blobs = [r for r in msenv.ms.requests if r.path.startswith("/blobs/")
                 and msenv.names.get(r.path.rsplit("/", 1)[-1]) == where]
        assert len(blobs) == 1 + downloads.RETRIES
        assert not has_range(blobs[0]) and all(has_range(r) for r in blobs[1:])
        assert "broke off" in str(exc.value)
    if fault == "wrong-bytes":
        assert sha256_hex(msenv.served[where]) in str(exc.value)
    if where == "listing" and fault == "500":  # a busy service: retried, then said so
        assert msenv.requests() == ["listing"] * modelscope.ATTEMPTS
        assert f"HTTP 500 after {modelscope.ATTEMPTS} attempts" in str(exc.value)

    msenv.ms.faults.clear()
    st = load()
    assert st.spec.kind == "modelscope"
    styles, temporary, _ = cache_contents(msenv.cache)
    assert styles == [msenv.folder()] and temporary == []


def test_unknown_model_id(msenv, served):
    msenv.registry({STYLE: modelscope_entry("iic/cv_missing")})
    with pytest.raises(StyleDownloadError) as exc:
        load()
    assert LABEL in str(exc.value) and "iic/cv_missing" in str(exc.value)
    assert msenv.requests() == ["listing", "listing"]  # iic/..., then its damo/ spelling
    assert_cache_empty(msenv.cache)

    msenv.ms.add_model("iic/cv_missing", served)
    load()
    assert cache_contents(msenv.cache)[0] == [msenv.folder(model_id="iic/cv_missing")]


def test_unknown_revision(msenv):
    msenv.registry({STYLE: modelscope_entry(revision="v9.9.9")})
    with pytest.raises(StyleDownloadError) as exc:
        load()
    assert LABEL in str(exc.value) and "v9.9.9" in str(exc.value)
    assert_cache_empty(msenv.cache)

    msenv.ms.add_tag(MODEL, "v9.9.9")
    load()
    assert cache_contents(msenv.cache)[0] == [msenv.folder("v9.9.9")]


def test_damo_model_id_answers_via_iic(msenv):
    """DAMO's models moved to ``iic/``: an old ``damo/`` id in a registry still loads. The fake
    answers both spellings itself, so that is switched off to see the client fall back."""
    msenv.mp.setattr(fake_modelscope, "_ALIASES", {})
    msenv.registry({STYLE: modelscope_entry("damo/cv_test")})
    st = load()
    assert st.spec.model_id == "damo/cv_test"
    listings = [r.path for r in msenv.ms.requests if r.path.endswith("/repo/files")]
    assert listings == ["/api/v1/models/damo/cv_test/repo/files", "/api/v1/models/iic/cv_test/repo/files"]
    files = [r.path for r in msenv.ms.requests if r.path.endswith("/repo")]
    assert files == ["/api/v1/models/iic/cv_test/repo"] * 3
    folder = msenv.folder(model_id="damo/cv_test")
    assert json.loads((folder / "provenance.json").read_text())["revision"] == "v1.0.0"
    assert "modelscope:iic/cv_test@v1.0.0" in json.loads((folder / "config.json").read_text())["source"]


def test_a_busy_listing_is_retried(msenv):
    msenv.ms.queue_statuses("listing", [503, 429])
    load()
    assert msenv.requests()[:4] == ["listing", "listing", "listing", "file cartoon_h.pb"]
    assert cache_contents(msenv.cache)[0] == [msenv.folder()]


# --- 4. an unpinned entry follows the newest tag (else master), once -------------------------------


def test_unpinned_entry_uses_newest_tag_then_the_cache(msenv, served):
    newer = {**served, "alpha.jpg": alpha_jpg(256)}
    msenv.names[sha256_hex(newer["alpha.jpg"])] = "alpha.jpg"
    msenv.ms.add_tag(MODEL, "v1.1.0")
    msenv.ms.add_tag(MODEL, "v2.0.0", files=newer)
    msenv.registry({STYLE: modelscope_entry(revision=None)})
    assert {s.name: s.available_offline for s in ps.list_styles(STYLE)} == {STYLE: False}

    load()
    assert msenv.requests()[:2] == ["revisions", "listing"]
    assert msenv.ms.requests[1].query["Revision"] == "v2.0.0"
    provenance = json.loads((msenv.folder("v2.0.0") / "provenance.json").read_text())
    assert provenance["revision"] == "v2.0.0"
    assert provenance["files"]["alpha.jpg"] == sha256_hex(newer["alpha.jpg"])
    assert cache_contents(msenv.cache)[0] == [msenv.folder("v2.0.0")]

    count = len(msenv.ms.requests)
    msenv.ms.add_tag(MODEL, "v3.0.0")  # not looked up: the cached conversion is used
    load()
    assert {s.name: s.available_offline for s in ps.list_styles(STYLE)} == {STYLE: True}
    msenv.ms.stop()
    load()
    assert len(msenv.ms.requests) == count


def test_unpinned_entry_of_a_repository_without_tags_uses_master(msenv, served):
    msenv.ms.add_model("iic/cv_untagged", served, tags=())
    msenv.registry({STYLE: modelscope_entry("iic/cv_untagged", revision=None)})
    load()
    assert msenv.requests()[:2] == ["revisions", "listing"]
    assert {r.query["Revision"] for r in msenv.ms.requests[1:] if r.path.startswith("/api/")} == {"master"}
    folder = msenv.folder("master", "iic/cv_untagged")
    assert json.loads((folder / "provenance.json").read_text())["revision"] == "master"
    assert cache_contents(msenv.cache)[0] == [folder]


# --- 5. sha256 pinned in the registry ---------------------------------------------------------------


def test_pinned_file_sha256_mismatch_raises_and_caches_nothing(msenv, served):
    msenv.registry({STYLE: modelscope_entry(file_sha256={"cartoon_bg.pb": WRONG_SHA})})
    with pytest.raises(ChecksumMismatchError) as exc:
        load()
    message = str(exc.value)
    assert LABEL in message and WRONG_SHA in message and sha256_hex(served["cartoon_bg.pb"]) in message
    assert_cache_empty(msenv.cache)

    pins = {name: sha256_hex(served[name]) for name in USED}
    msenv.registry({STYLE: modelscope_entry(file_sha256=pins)})
    load()
    assert json.loads((msenv.folder() / "provenance.json").read_text())["files"] == pins


# --- 6. offline and not cached -----------------------------------------------------------------------


@pytest.mark.parametrize("variable", downloads.OFFLINE_VARIABLES)
def test_offline_and_not_cached(msenv, variable):
    msenv.mp.setenv(variable, "1")
    assert {s.name: s.available_offline for s in ps.list_styles(STYLE)} == {STYLE: False}
    with pytest.raises(StyleNotCachedError) as exc:
        load()
    message = str(exc.value)
    assert LABEL in message and MODEL in message
    assert variable in message and "Unset it once to download it" in message
    assert msenv.ms.requests == []
    assert_cache_empty(msenv.cache)

    msenv.mp.delenv(variable)
    load()
    msenv.mp.setenv(variable, "1")
    count = len(msenv.ms.requests)
    assert {s.name: s.available_offline for s in ps.list_styles(STYLE)} == {STYLE: True}
    load()
    assert len(msenv.ms.requests) == count


# --- 7. two processes at once ------------------------------------------------------------------------

_RACER = """
import sys, time
from pathlib import Path
import portrait_stylize as ps
ready, go = Path(sys.argv[1]), Path(sys.argv[2])
ready.touch()
deadline = time.monotonic() + 120
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.01)
st = ps.load_style(sys.argv[3], device="cpu", backend="torch")
print(st.spec.kind, st.model.arch)
"""


@pytest.mark.slow
def test_two_processes_converting_at_once(msenv):
    python = REPO / ".venv" / "bin" / "python"
    python = str(python) if python.is_file() else sys.executable
    go = msenv.tmp / "go"
    procs = [subprocess.Popen([python, "-c", _RACER, str(msenv.tmp / f"ready{i}"), str(go), STYLE],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    try:
        deadline = time.monotonic() + 120
        while not all((msenv.tmp / f"ready{i}").exists() for i in range(2)) and time.monotonic() < deadline:
            time.sleep(0.01)
        go.touch()  # both have imported the package: they ask for the style together
        results = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err[-3000:]
        assert out.split() == ["modelscope", "ttn"]
    styles, temporary, _ = cache_contents(msenv.cache)
    assert styles == [msenv.folder()] and temporary == []
    # built once: one listing and one download of each file, whoever won the lock
    assert sorted(msenv.requests()) == sorted(["listing"] + [f"{kind} {name}" for name in USED
                                                             for kind in ("file", "blob")])


# --- 8. a `url` style: White-box Cartoonization's TFLite release --------------------------------------


class _FileServer:
    """Serves a folder over HTTP on 127.0.0.1 and records the requested paths."""

    def __init__(self, root: Path) -> None:
        paths = self.paths = []

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                paths.append(self.path)
                super().do_GET()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> _FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def whitebox_file() -> Path:
    path = SHARED_FIXTURES / "weights" / WHITEBOX_FILE
    if not path.is_file():
        pytest.skip(f"../shared/fixtures/weights/{WHITEBOX_FILE} is not available")
    return path


def test_url_style_whitebox(urlenv, whitebox_file):
    env = urlenv
    data = whitebox_file.read_bytes()
    assert sha256_hex(data) == WHITEBOX_SHA
    real = read_registry(builtin_registry_path()).styles["whitebox"].to_entry()
    assert real["sha256"] == WHITEBOX_SHA
    www = env.tmp / "www"
    remote = "margaretmz/Cartoonizer-with-TFLite/raw/8e275dd/android/app/src/main/ml/" + WHITEBOX_FILE
    (www / remote).parent.mkdir(parents=True)
    (www / remote).write_bytes(data)

    with _FileServer(www) as server:
        url = f"{server.endpoint}/{remote}"
        env.registry({"whitebox": {**real, "url": url, "sha256": WRONG_SHA}})
        with pytest.raises(ChecksumMismatchError) as exc:
            load("whitebox")
        assert "'whitebox'" in str(exc.value) and WHITEBOX_SHA in str(exc.value)
        assert_cache_empty(env.cache)

        env.registry({"whitebox": {**real, "url": url}})
        st = load("whitebox", face_backend="mediapipe")
        assert server.paths == [f"/{remote}"] * 2
        img = photo(max_side=256)
        out = np.asarray(st(img))
        assert out.shape == (img.height, img.width, 3) and not np.array_equal(out, np.asarray(img))

    assert st.spec.licence == "cc-by-nc-sa-4.0" and st.model.bg is None
    folder = converted.style_folder("url", url, WHITEBOX_SHA[:16])
    assert cache_contents(env.cache)[0] == [folder]
    provenance = json.loads((folder / "provenance.json").read_text())
    assert provenance == {"kind": "url", "source": url, "revision": WHITEBOX_SHA[:16],
                          "files": {WHITEBOX_FILE: WHITEBOX_SHA}, "converter_version": converted.CONVERTER_VERSION}
    expected = ttn_from_weights(read_tflite(whitebox_file), WHITEBOX_FILE).state_dict()
    got = st.model.head.state_dict()
    assert sorted(got) == sorted(expected)
    assert all(torch.equal(got[k], expected[k]) for k in expected)

    # cached: the server is gone and offline mode is on
    env.mp.setenv("PORTRAIT_STYLIZE_OFFLINE", "1")
    again = load("whitebox").model.head.state_dict()
    assert all(torch.equal(again[k], expected[k]) for k in expected)


# --- 9. the real registry ----------------------------------------------------------------------------


def test_real_registry_entries():
    registry = read_registry(builtin_registry_path())
    styles = {name: spec for name, spec in registry.styles.items() if spec.kind == "modelscope"}
    assert {"anime", "3d", "handdrawn", "dct-sketch", "artstyle", "sd-design", "sd-illustration"} <= set(styles)
    for name, spec in styles.items():
        assert spec.files == FILES, name  # the names the official pipeline loads, for all seven
        assert spec.conversion["channel_order"] == "bgr", name
        assert spec.conversion["image_pad_multiple"] == 16, name
        assert spec.model_id.startswith("iic/cv_unet_person-image-cartoon") and spec.licence == "apache-2.0", name
        assert spec.model_id.endswith("_compound-models"), name
        rule = f"tag {spec.revision};" if spec.revision else "the newest tag, else master;"
        assert rule in spec.description and "newest tag;" not in spec.description, name
    assert styles["sd-design"].model_id == "iic/cv_unet_person-image-cartoon-sd-design_compound-models"
    assert styles["sd-illustration"].model_id == "iic/cv_unet_person-image-cartoon-sd-illustration_compound-models"
    assert styles["sd-design"].revision == "v1.0.0"
    assert styles["sd-illustration"].revision == "v1.0.0"
    whitebox = registry.styles["whitebox"]
    assert whitebox.kind == "url" and whitebox.sha256 == WHITEBOX_SHA
    assert whitebox.url.startswith("https://") and whitebox.url.endswith(WHITEBOX_FILE)
    assert whitebox.licence == "cc-by-nc-sa-4.0"
    assert "non-commercial" in whitebox.description.lower()
