"""Converted weights reproduce the original runtimes: TFLite references, and TensorFlow itself for
frozen graphs and checkpoints built with random weights in the DCT-Net structure."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from huggingface_hub import HfApi

import portrait_stylize as ps
from portrait_stylize.cli import main
from portrait_stylize.common.files import sha256_file
from portrait_stylize.convert.ttn_releases import (
    ConversionError,
    ConvLayer,
    TTNWeights,
    convert,
    read_checkpoint,
    read_tflite,
    read_weights,
    ttn_from_weights,
)
from portrait_stylize.models.ttn import TTN

from helpers import psnr

SIZES = ["64x64", "96x160", "75x53"]  # square, non-square, odd


def _nhwc(net: TTN, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return net(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("model,reference,min_psnr", [
    ("whitebox_cartoon_gan_fp16.tflite", "whitebox_fp16_224", 60.0),
    ("whitebox_cartoon_gan_dr.tflite", "whitebox_dr_512", 42.0),
])
def test_tflite_matches_reference_runtime(fixtures, model, reference, min_psnr):
    weights = read_tflite(fixtures / "weights" / model)
    assert len(weights.convs) == 18 and [c.stride for c in weights.convs[:4]] == [1, 2, 1, 2]
    found = dict(weights.conventions)
    assert found.pop("gf_eps") == pytest.approx(5e-3, rel=1e-3)  # stored in fp16 in the fp16 model
    assert found == {"padding": "tf_same", "negative_slope": 0.2, "gf_radius": 1, "upsample": "tf_legacy"}
    net = ttn_from_weights(weights, model)
    ref = fixtures / "reference" / reference
    cases = json.loads((ref / "index.json").read_text())["cases"]
    scores = [psnr(_nhwc(net, np.load(ref / c["input"])), np.load(ref / c["output"])) for c in cases]
    assert min(scores) >= min_psnr, scores


@pytest.mark.slow
def test_float32_tflite_matches_its_runtime_and_the_graph(tf_fixtures):
    """A plain float32 TFLite file (TFLite's converter, no optimisation) reads to the frozen
    graph's exact weights and reproduces the TFLite interpreter's output."""
    import tflite

    path = tf_fixtures / "head_f32.tflite"
    model = tflite.Model.GetRootAsModel(path.read_bytes(), 0)
    graph = model.Subgraphs(0)
    types = {graph.Tensors(i).Type() for i in range(graph.TensorsLength())}
    assert tflite.TensorType.FLOAT32 in types and not types & {tflite.TensorType.FLOAT16, tflite.TensorType.INT8}
    weights, graph_weights = read_tflite(path), read_weights(tf_fixtures / "head.pb")
    assert len(weights.convs) == len(graph_weights.convs) == 18
    for ours, frozen in zip(weights.convs, graph_weights.convs):
        assert ours.stride == frozen.stride and np.array_equal(ours.bias, frozen.bias)
        assert np.array_equal(ours.weight, frozen.weight)
    assert dict(weights.conventions)["gf_eps"] == pytest.approx(5e-3)
    cases = np.load(tf_fixtures / "cases.npz")
    ours = _nhwc(ttn_from_weights(weights, path.name), cases["tflite_input"])
    assert psnr(ours, cases["tflite_output"]) >= 60.0


@pytest.fixture(scope="module")
def converted(tf_fixtures, tmp_path_factory):
    """head.pb + bg.pb converted through the CLI, as a user would."""
    out = tmp_path_factory.mktemp("styles") / "anime"
    argv = ["convert", str(tf_fixtures / "head.pb"), str(tf_fixtures / "bg.pb"), "-o", str(out),
            "--licence", "apache-2.0", "--source", "modelscope:damo/cv_unet_person-image-cartoon_compound-models"]
    assert main(argv) == 0
    return out, argv


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("part", ["head", "bg"])
def test_frozen_graph_matches_tensorflow(tf_fixtures, converted, part, size):
    cases = np.load(tf_fixtures / "cases.npz")
    h, w = map(int, size.split("x"))
    x = cases[f"{size}_input"][:, :h, :w]  # TF saw the edge-padded input; our TTN pads the same way
    net = getattr(ps.load_style(converted[0]).model, part)  # raw access: [-1, 1] in, guided filter included
    assert psnr(_nhwc(net, x), cases[f"{size}_{part}"][:, :h, :w]) >= 60.0


def test_conventions_come_from_the_graphs(converted):
    config = json.loads((converted[0] / "config.json").read_text())
    assert config["head"]["gf_eps"] == 5e-3 and config["bg"]["gf_eps"] == 1e-2
    assert config["head"]["upsample"] == "tf_legacy" and config["head"]["negative_slope"] == 0.2
    assert config["channel_order"] == "bgr" and config["licence"] == "apache-2.0"


def test_overrides_replace_the_detected_conventions(tf_fixtures, converted, tmp_path):
    """``--gf-eps/--gf-radius/--upsample/--padding/--negative-slope`` win over what the graphs say,
    are recorded in config.json and change the network's output (so they are really used)."""
    out = tmp_path / "overridden"
    overrides = {"gf_eps": 0.05, "gf_radius": 2, "upsample": "half_pixel", "padding": "symmetric",
                 "negative_slope": 0.1}
    argv = ["convert", str(tf_fixtures / "head.pb"), str(tf_fixtures / "bg.pb"), "-o", str(out), "--licence", "mit",
            "--source", "test", "--gf-eps", "0.05", "--gf-radius", "2", "--upsample", "half_pixel",
            "--padding", "symmetric", "--negative-slope", "0.1"]
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    for part in ("head", "bg"):
        assert {key: config[part][key] for key in overrides} == overrides, config[part]
    # Each override alone changes the output: the network really honours every one.
    x = torch.from_numpy(np.load(tf_fixtures / "cases.npz")["96x160_input"]).permute(0, 3, 1, 2).float()
    found = json.loads((converted[0] / "config.json").read_text())["head"]
    weights = ps.load_style(str(converted[0]), device="cpu").model.head.state_dict()
    with torch.inference_mode():
        reference = _configured_ttn(found, weights)(x)
        for key, value in overrides.items():
            changed = _configured_ttn({**found, key: value}, weights)(x)
            assert (changed - reference).abs().max() > 1e-3, key


def _configured_ttn(config: dict, state: dict) -> TTN:
    net = TTN(**config).eval()
    net.load_state_dict(state)
    return net


def test_model_card_records_command_and_checksums(tf_fixtures, converted):
    out, argv = converted
    card = (out / "README.md").read_text()
    assert "portrait-stylize " + " ".join(argv) in card
    for name in ("head.pb", "bg.pb"):
        assert f"`{name}` | `{sha256_file(tf_fixtures / name)}`" in card
    assert "modelscope:damo/cv_unet_person-image-cartoon_compound-models" in card


@pytest.mark.parametrize("size", SIZES)
def test_checkpoint_matches_tensorflow(tf_fixtures, size):
    """The checkpoint also holds a discriminator and Adam slots; only the generator is a TTN."""
    weights = read_checkpoint(tf_fixtures / "ckpt" / "model-0.index")
    assert [c.name for c in weights.convs[4:7]] == ["generator/Conv_4", "generator/block_0/conv1",
                                                    "generator/block_0/conv2"]
    net = ttn_from_weights(weights, "ckpt", gf_eps=5e-3)
    cases = np.load(tf_fixtures / "cases.npz")
    h, w = map(int, size.split("x"))
    assert psnr(_nhwc(net, cases[f"{size}_input"][:, :h, :w]), cases[f"{size}_head"][:, :h, :w]) >= 60.0


def test_pipeline_feeds_bgr_styles_in_bgr(converted):
    """Stylizer input is RGB; a BGR style sees the channels flipped and its output is flipped back."""
    st = ps.load_style(converted[0], backend="torch", tile_size=None)
    rgb = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    out = np.asarray(st(rgb), dtype=np.float64)
    x = torch.from_numpy(rgb[..., ::-1].copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.inference_mode():
        y = ((st.model.bg(x).clamp(-1, 1) + 1) * 127.5)[0].permute(1, 2, 0).numpy()[..., ::-1]
    assert np.abs(out - y).max() <= 1.0


def test_push_to_hub_uploads_and_prints_the_registry_entry(tf_fixtures, tmp_path, monkeypatch, capsys):
    calls = []

    class Commit:
        oid = "0123456789abcdef0123456789abcdef01234567"

    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("create", repo_id, kw)))
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kw: calls.append(("upload", kw)) or Commit())
    out = tmp_path / "anime"
    assert main(["convert", str(tf_fixtures / "head.pb"), "-o", str(out), "--name", "anime",
                 "--licence", "apache-2.0", "--source", "modelscope:x", "--push-to-hub", "me/anime"]) == 0
    assert calls[0] == ("create", "me/anime", {"repo_type": "model", "private": False, "exist_ok": True})
    assert calls[1][1]["repo_id"] == "me/anime" and calls[1][1]["folder_path"] == str(out)
    entry = json.loads(capsys.readouterr().out.split("checkpoints.json entry:\n", 1)[1])["anime"]
    assert entry == {"kind": "hub", "repo_id": "me/anime", "revision": Commit.oid, "filename": "model.safetensors",
                     "sha256": sha256_file(out / "model.safetensors"), "licence": "apache-2.0",
                     "source": "modelscope:x", "description": ""}


def test_existing_output_is_kept_unless_overwrite(tf_fixtures, tmp_path):
    out = tmp_path / "style"
    convert([tf_fixtures / "head.pb"], out)
    before = sha256_file(out / "model.safetensors")
    with pytest.raises(ConversionError, match="already exists"):
        convert([tf_fixtures / "bg.pb"], out)
    assert sha256_file(out / "model.safetensors") == before
    convert([tf_fixtures / "bg.pb"], out, overwrite=True)
    assert sha256_file(out / "model.safetensors") != before and sorted(p.name for p in tmp_path.iterdir()) == ["style"]


@pytest.mark.parametrize("name,content,message", [
    ("broken.pb", b"\x0a\xff\xff\xff\x0f garbage", "not a readable frozen TensorFlow graph"),
    ("model.index", b"not a table" * 10, "bad table magic"),
    ("model.tflite", b"\x00" * 64, "not a TFLite model"),
    ("weights.h5", b"x", "not a .tflite, .pb or TensorFlow checkpoint"),
])
def test_unreadable_sources_name_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ConversionError, match=message) as info:
        read_weights(path)
    assert name in str(info.value) or name.split(".")[0] in str(info.value)


def _zero_weights(n: int) -> TTNWeights:
    """``n`` zero convolutions shaped like the TTN's layers in order (cycling past the last)."""
    layers = [conv for _, conv in TTN().conv_layers()]
    return TTNWeights([ConvLayer(np.zeros((c.out_channels, *c.kernel_size, c.in_channels), np.float32),
                                 np.zeros(c.out_channels, np.float32), c.stride[0])
                       for c in (layers[i % len(layers)] for i in range(n))])


def test_structure_errors_name_the_layer():
    with pytest.raises(ConversionError, match=r"missing layer 17 \(conv_out"):
        ttn_from_weights(_zero_weights(17), "g.pb")
    with pytest.raises(ConversionError, match="extra convolution"):
        ttn_from_weights(_zero_weights(19), "g.pb")
    bad = _zero_weights(18)
    bad.convs[4] = ConvLayer(np.zeros((64, 3, 3, 64), np.float32), np.zeros(64, np.float32), 1, "generator/Conv_4")
    with pytest.raises(ConversionError, match=r"layer 4 \(conv2, generator/Conv_4\) has weight \(64, 64, 3, 3\)"):
        ttn_from_weights(bad, "g.pb")
    strided = _zero_weights(18)
    strided.convs[2].stride = 2
    with pytest.raises(ConversionError, match=r"layer 2 \(conv1\) has stride 2"):
        ttn_from_weights(strided, "g.pb")
