"""The facexlib face backend's weights: offline mode is honoured, failed downloads give clear errors."""

from __future__ import annotations

import inspect
import shutil
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
import torch.hub

from portrait_stylize.errors import PortraitStylizeError, StyleNotCachedError
from portrait_stylize.faces import facexlib_backend as fx
from portrait_stylize.faces import resolve_face_backend

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


@pytest.mark.parametrize("failure", [
    urllib.error.URLError(OSError(-3, "Temporary failure in name resolution")),
    urllib.error.HTTPError("https://github.com/x", 404, "Not Found", None, None),
    TimeoutError("The read operation timed out"),
    ConnectionResetError(104, "Connection reset by peer"),
], ids=["URLError", "HTTPError", "timeout", "reset"])
def test_failed_download_is_a_clear_error(tmp_path, monkeypatch, online, failure):
    calls = []

    def unreachable(url, dst, *args, **kwargs):
        calls.append((url, dst))
        raise failure

    monkeypatch.setattr(misc, "download_url_to_file", unreachable)
    with pytest.raises(StyleNotCachedError) as info:
        fx.FacexlibBackend(tmp_path)
    name = fx.WEIGHT_FILES[0]  # the first missing file is the first one tried
    assert calls == [(fx.WEIGHT_URLS[name], str((tmp_path / name).absolute()))]
    message = str(info.value)
    assert name in message and fx.WEIGHT_URLS[name] in message and str(tmp_path.absolute()) in message
    assert type(failure).__name__ in message
    other = fx.WEIGHT_FILES[1]  # still missing too: the by-hand instructions name it as well
    assert other in message and fx.WEIGHT_URLS[other] in message
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no chained traceback
    assert not (tmp_path / name).exists()


def test_online_downloads_only_what_is_missing(tmp_path, monkeypatch, online, random_weights):
    shutil.copy(random_weights / fx.WEIGHT_FILES[0], tmp_path)
    fetched = []

    def fake_download(url, dst, *args, **kwargs):
        fetched.append(url)
        shutil.copy(random_weights / url.rsplit("/", 1)[1], dst)

    monkeypatch.setattr(misc, "download_url_to_file", fake_download)
    backend = fx.FacexlibBackend(tmp_path)
    assert fetched == [fx.WEIGHT_URLS[fx.WEIGHT_FILES[1]]]
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
