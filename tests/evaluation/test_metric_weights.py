"""Metric networks' weights: fetched from a local server that answers like the publishers'
(static files), checked, converted to safe formats, cached, and refused when wrong or offline."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import threading
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from portrait_stylize.errors import ChecksumMismatchError
from portrait_stylize.evaluation import metric_weights
from portrait_stylize.evaluation.metric_weights import MetricWeightsError, metric_weights_path
from portrait_stylize.evaluation.metrics import PerceptualDistance


@pytest.fixture
def publisher(tmp_path, monkeypatch):
    """A static file server (like download.pytorch.org or GitHub releases) over ``tmp_path/www``,
    a fresh ``HF_HOME``, and downloads allowed."""
    www = tmp_path / "www"
    www.mkdir()
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(www)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for name in ("HF_HUB_OFFLINE", "PORTRAIT_STYLIZE_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _publish(www: Path, base: str, name: str, data: bytes, monkeypatch, prefix: str | None = None) -> str:
    """Serve ``data`` and point the metric network ``name`` at it, with the hash prefix the
    publisher would state (default: the file's own)."""
    digest = hashlib.sha256(data).hexdigest()
    (www / f"{name}-{digest[:8]}.bin").write_bytes(data)
    spec = replace(metric_weights.METRIC_WEIGHTS[name], url=f"{base}/{name}-{digest[:8]}.bin",
                   sha256_prefix=digest[:8] if prefix is None else prefix)
    monkeypatch.setitem(metric_weights.METRIC_WEIGHTS, name, spec)
    return digest


def _pickled(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _random_alexnet_features() -> dict:
    from torchvision.models import alexnet

    torch.manual_seed(0)
    return {k: v for k, v in alexnet(weights=None).state_dict().items() if k.startswith("features.")}


class TestFetch:
    def test_lpips_is_converted_to_the_lpips_package_layout(self, publisher, monkeypatch):
        """The converted file, loaded into our LPIPS, scores exactly like the ``lpips`` package
        with the publisher's trunk and its own heads put in by hand."""
        import lpips

        www, base = publisher
        trunk = _random_alexnet_features()
        _publish(www, base, "lpips", _pickled(trunk), monkeypatch)
        path = metric_weights_path("lpips", progress=False)
        assert path.suffix == ".safetensors" and path.parent == metric_weights.metric_folder("lpips")
        ours = PerceptualDistance(load_file(str(path)))
        reference = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)  # the package's heads
        for index, slice_number in {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}.items():
            layer = getattr(reference.net, f"slice{slice_number}")._modules[str(index)]
            layer.weight.data, layer.bias.data = trunk[f"features.{index}.weight"], trunk[f"features.{index}.bias"]
        x, y = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
        assert torch.allclose(ours(x, y), reference(x, y, normalize=True).flatten(), atol=1e-6)
        record = json.loads((path.parent / "source.json").read_text())
        assert record["download_sha256"] == hashlib.sha256(_pickled(trunk)).hexdigest()
        assert not any(p.name.startswith("download") for p in path.parent.iterdir())  # the pickle is gone

    def test_inception_drops_the_auxiliary_head_and_arcface_comes_out_of_its_zip(self, publisher, monkeypatch):
        www, base = publisher
        _publish(www, base, "inception", _pickled({"Conv2d_1a_3x3.conv.weight": torch.ones(2, 3, 3, 3),
                                                    "AuxLogits.fc.weight": torch.ones(3, 3)}), monkeypatch)
        assert list(load_file(str(metric_weights_path("inception", progress=False)))) == ["Conv2d_1a_3x3.conv.weight"]
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as z:
            z.writestr("buffalo_l/det_10g.onnx", b"detector")
            z.writestr("buffalo_l/w600k_r50.onnx", b"onnx protobuf bytes")
        _publish(www, base, "arcface", archive.getvalue(), monkeypatch, prefix="")  # no checksum published
        assert metric_weights_path("arcface", progress=False).read_bytes() == b"onnx protobuf bytes"

    def test_cached_weights_are_used_offline_and_damage_is_found(self, publisher, monkeypatch):
        www, base = publisher
        _publish(www, base, "inception", _pickled({"w": torch.arange(4.0)}), monkeypatch)
        path = metric_weights_path("inception", progress=False)
        for file in www.iterdir():
            file.unlink()  # the publisher is gone: only the cache can answer now
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        assert metric_weights_path("inception") == path
        path.write_bytes(path.read_bytes()[:-3] + b"xyz")
        with pytest.raises(MetricWeightsError, match=r"inception .* is damaged .* \(HF_HUB_OFFLINE or .* is set\)"):
            metric_weights_path("inception")

    def test_a_download_that_is_not_the_publishers_file_is_refused_and_deleted(self, publisher, monkeypatch):
        www, base = publisher
        _publish(www, base, "inception", _pickled({"w": torch.ones(1)}), monkeypatch, prefix="00000000")
        with pytest.raises(ChecksumMismatchError, match="does not start with 00000000"):
            metric_weights_path("inception", progress=False)
        assert list(metric_weights.metric_folder("inception").iterdir()) == []

    def test_offline_without_a_cache_says_what_to_do(self, publisher, monkeypatch):
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        folder = metric_weights.metric_folder("lpips")
        with pytest.raises(MetricWeightsError) as caught:
            metric_weights_path("lpips")
        assert str(caught.value) == (
            f"the lpips network for the evaluation metrics is not cached at {folder / 'lpips_alex.safetensors'}, "
            "and downloading is off (HF_HUB_OFFLINE or PORTRAIT_STYLIZE_OFFLINE is set). Unset it and run once online "
            "to fetch https://download.pytorch.org/models/alexnet-owt-7be5be79.pth, or copy "
            f"{folder} from a machine that has it (there: $HF_HOME/portrait-stylize/metrics/lpips).")
        with pytest.raises(MetricWeightsError, match="unknown metric network 'fid'; known: lpips, inception, arcface"):
            metric_weights_path("fid")

    def test_unreachable_publisher(self, publisher, monkeypatch):
        """The network error is named with what to do about it, and nothing about styles (the advice
        that downloads of styles give)."""
        spec = replace(metric_weights.METRIC_WEIGHTS["arcface"], url="http://127.0.0.1:9/buffalo_l.zip")
        monkeypatch.setitem(metric_weights.METRIC_WEIGHTS, "arcface", spec)
        folder = metric_weights.metric_folder("arcface")
        with pytest.raises(MetricWeightsError) as caught:
            metric_weights_path("arcface", progress=False)
        message = str(caught.value)
        assert message.startswith(f"the arcface network for the evaluation metrics is not cached at "
                                  f"{folder / 'w600k_r50.onnx'} and http://127.0.0.1:9/buffalo_l.zip cannot be "
                                  "reached (ConnectError: ")
        assert message.endswith(f"Connect to the internet and run again, or copy {folder} from a machine that has "
                                "it (there: $HF_HOME/portrait-stylize/metrics/arcface).")
        assert "style" not in message and "toon" not in message


def test_a_file_that_cannot_be_converted_is_named_and_nothing_is_cached(publisher, monkeypatch):
    www, base = publisher
    _publish(www, base, "inception", b"not a pickle at all" * 10, monkeypatch)  # its own prefix: passes the check
    with pytest.raises(MetricWeightsError, match="cannot make inception_v3.safetensors from it"):
        metric_weights_path("inception", progress=False)
    assert list(metric_weights.metric_folder("inception").iterdir()) == []
