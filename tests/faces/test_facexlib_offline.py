"""The facexlib face backend's weights: offline mode is honoured, failed downloads give clear errors."""

from __future__ import annotations

import inspect
import shutil
import urllib.request

import numpy as np
import pytest
import torch
import torch.hub

from portrait_stylize.common import downloads
from portrait_stylize.errors import PortraitStylizeError, StyleNotCachedError
from portrait_stylize.faces import facexlib_backend as fx
from portrait_stylize.faces import resolve_face_backend

from fake_github import FakeGitHub
from fake_hub import SilentServer, outcome_within

misc = pytest.importorskip("facexlib.utils.misc")


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt at the network (facexlib's download, torch.hub's, urllib's) fails the test."""
    def forbidden(*args, **kwargs):
        pytest.fail(f"network access attempted: {args!r}")

    monkeypatch.setattr(misc, "download_url_to_file", forbidden)
    monkeypatch.setattr(torch.hub, "download_url_to_file", forbidden)
    monkeypatch.setattr(torch.hub, "urlopen", forbidden)
    monkeypatch.setattr(urllib.request, "urlopen", forbidden)


@pytest.fixture
def online(monkeypatch):
    for variable in ("HF_HUB_OFFLINE", "PORTRAIT_STYLIZE_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    """Both facexlib networks with random weights, saved once under their real file names."""
    from facexlib.detection.retinaface import RetinaFace
    from facexlib.parsing.bisenet import BiSeNet

    folder = tmp_path_factory.mktemp("facexlib-random")
    torch.manual_seed(0)
    torch.save(RetinaFace(network_name="resnet50", device="cpu").state_dict(), folder / fx.WEIGHT_FILES[0])
    torch.save(BiSeNet(num_class=19).state_dict(), folder / fx.WEIGHT_FILES[1])
    return folder


def test_weight_urls_are_the_ones_facexlib_uses():
    from facexlib.detection import init_detection_model
    from facexlib.parsing import init_parsing_model

    assert set(fx.WEIGHT_URLS) == set(fx.WEIGHT_FILES)
    assert fx.WEIGHT_URLS["detection_Resnet50_Final.pth"] in inspect.getsource(init_detection_model)
    assert fx.WEIGHT_URLS["parsing_bisenet.pth"] in inspect.getsource(init_parsing_model)
    assert all(url.endswith("/" + name) for name, url in fx.WEIGHT_URLS.items())


@pytest.mark.parametrize("variable, value", [("PORTRAIT_STYLIZE_OFFLINE", "1"), ("HF_HUB_OFFLINE", "true"),
                                             ("PORTRAIT_STYLIZE_OFFLINE", "on")])
def test_offline_empty_folder_is_a_clear_error_without_network(tmp_path, monkeypatch, no_network, online,
                                                               variable, value):
    folder = tmp_path / "facexlib"  # does not even exist yet
    monkeypatch.setenv("PORTRAIT_STYLIZE_FACEXLIB_DIR", str(folder))
    monkeypatch.setenv(variable, value)
    with pytest.raises(StyleNotCachedError) as info:
        fx.FacexlibBackend()  # the default folder: $PORTRAIT_STYLIZE_FACEXLIB_DIR
    message = str(info.value)
    for name in fx.WEIGHT_FILES:
        assert name in message and fx.WEIGHT_URLS[name] in message
    assert str(folder.absolute()) in message and "offline" in message
    assert isinstance(info.value, PortraitStylizeError)
    assert not folder.exists()  # nothing was created either


def test_offline_names_only_the_missing_file(tmp_path, monkeypatch, no_network, random_weights):
    shutil.copy(random_weights / "parsing_bisenet.pth", tmp_path)
    monkeypatch.setenv("PORTRAIT_STYLIZE_OFFLINE", "yes")
    with pytest.raises(StyleNotCachedError) as info:
        fx.FacexlibBackend(tmp_path)
    message = str(info.value)
    assert "detection_Resnet50_Final.pth" in message and fx.WEIGHT_URLS["detection_Resnet50_Final.pth"] in message
    assert "parsing_bisenet.pth" not in message and str(tmp_path.absolute()) in message


def test_auto_backend_offline_without_weights_is_mediapipe_without_network(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("PORTRAIT_STYLIZE_FACEXLIB_DIR", str(tmp_path))
    monkeypatch.setenv("PORTRAIT_STYLIZE_OFFLINE", "1")
    monkeypatch.delenv("PORTRAIT_STYLIZE_FACE_BACKEND", raising=False)
    assert resolve_face_backend("auto") == "mediapipe"


@pytest.fixture
def github(monkeypatch):
    """facexlib's release URLs pointed at a local stand-in for GitHub (nothing is served yet)."""
    with FakeGitHub() as fake:
        for name, url in fx.WEIGHT_URLS.items():
            monkeypatch.setitem(fx.WEIGHT_URLS, name, fake.url + "/" + url.split("github.com/", 1)[1])
        yield fake


def release_path(name: str) -> str:
    return fx.WEIGHT_URLS[name].split("/", 3)[3]


@pytest.mark.parametrize("status", [404, 503])
def test_failed_download_is_a_clear_error(tmp_path, online, github, status):
    name, other = fx.WEIGHT_FILES  # the first missing file is the first one tried
    github.status[release_path(name)] = status
    with pytest.raises(StyleNotCachedError) as info:
        fx.FacexlibBackend(tmp_path)
    assert github.requests == [release_path(name)]
    message = str(info.value)
    assert name in message and fx.WEIGHT_URLS[name] in message and str(tmp_path.absolute()) in message
    assert f"HTTP {status}" in message
    assert other in message and fx.WEIGHT_URLS[other] in message  # still missing: the by-hand advice names it
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no chained traceback
    assert list(tmp_path.iterdir()) == []  # nothing partial left


def test_unreachable_server_is_a_clear_error(tmp_path, monkeypatch, online):
    for name in fx.WEIGHT_FILES:
        monkeypatch.setitem(fx.WEIGHT_URLS, name, f"http://127.0.0.1:9/{name}")  # nothing listens on port 9
    with pytest.raises(StyleNotCachedError) as info:
        fx.FacexlibBackend(tmp_path)
    message = str(info.value)
    assert "cannot reach http://127.0.0.1:9/detection_Resnet50_Final.pth" in message
    assert "put them in the folder" in message and "'toon'" not in message  # the advice is facexlib's, not a style's
    assert list(tmp_path.iterdir()) == []


def test_a_silent_server_ends_at_the_stall_limit(tmp_path, monkeypatch, online):
    monkeypatch.setattr(downloads, "STALL_S", 1.0)
    with SilentServer() as silent:
        for name in fx.WEIGHT_FILES:
            monkeypatch.setitem(fx.WEIGHT_URLS, name, f"{silent.url}/{name}")
        error, elapsed = outcome_within(30, lambda: fx.FacexlibBackend(tmp_path))
    assert isinstance(error, StyleNotCachedError), repr(error)
    assert "did not answer within 1 s" in str(error) and 1.0 <= elapsed < 6, elapsed
    assert list(tmp_path.iterdir()) == []


def test_online_downloads_only_what_is_missing(tmp_path, online, github, random_weights):
    shutil.copy(random_weights / fx.WEIGHT_FILES[0], tmp_path)
    for name in fx.WEIGHT_FILES:
        github.releases[release_path(name)] = (random_weights / name).read_bytes()
    backend = fx.FacexlibBackend(tmp_path)
    wanted = fx.WEIGHT_FILES[1]
    assert github.requests[0] == release_path(wanted) and len(github.requests) == 2  # the release, then its asset
    assert (tmp_path / wanted).read_bytes() == (random_weights / wanted).read_bytes()
    assert fx.weights_present(tmp_path) and backend.name == "facexlib"


def test_offline_with_weights_in_place_works(tmp_path, monkeypatch, no_network, random_weights):
    for name in fx.WEIGHT_FILES:
        shutil.copy(random_weights / name, tmp_path)
    monkeypatch.setenv("PORTRAIT_STYLIZE_FACEXLIB_DIR", str(tmp_path))
    monkeypatch.setenv("PORTRAIT_STYLIZE_OFFLINE", "1")
    monkeypatch.delenv("PORTRAIT_STYLIZE_FACE_BACKEND", raising=False)
    assert resolve_face_backend("auto") == "facexlib"
    backend = fx.FacexlibBackend()
    image = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    found = backend.detect(image)  # random weights: any number of boxes, but well-formed ones
    assert all(f.landmarks.shape == (5, 2) and 0 <= f.score <= 1 for f in found)


def test_a_builtin_style_runs_when_the_chosen_face_backend_cannot_load(tmp_path, monkeypatch, no_network, caplog):
    """Built-in styles only ask faces for their scale: with facexlib chosen but its weights missing
    offline, toon still stylizes the whole picture (at the picture's scale) and says why."""
    from PIL import Image

    import portrait_stylize as ps
    from portrait_stylize.imaging.io import pil_to_tensor

    from helpers import REPO

    monkeypatch.setenv("PORTRAIT_STYLIZE_FACEXLIB_DIR", str(tmp_path / "facexlib"))
    monkeypatch.setenv("PORTRAIT_STYLIZE_OFFLINE", "1")
    photo = Image.open(REPO / "examples" / "hopper.jpg").convert("RGB").resize((256, 300))
    st = ps.load_style("toon", face_backend="facexlib")
    with caplog.at_level("WARNING"):
        result = np.asarray(st(photo), dtype=float)
    expected = st.model.adapted_to(pil_to_tensor(photo))(pil_to_tensor(photo))[0].permute(1, 2, 0).numpy() * 255
    assert np.abs(result - expected).max() <= 1.0
    assert "faces not measured for the style's scale" in caplog.text
    with pytest.raises(StyleNotCachedError):  # asking for faces themselves still fails, clearly
        st(photo, regions=["hair"])
