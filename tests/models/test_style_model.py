"""TTNStyle and style folders: save/load round trip, config, model card, conventions."""

from __future__ import annotations

import json

import torch

from portrait_stylize.models import TTNStyle
from portrait_stylize.models.serialization import load_style_folder, save_style

from helpers import lively_style_model


def test_round_trip_is_bit_exact(tmp_path):
    model = lively_style_model(seed=1, bg={"gf_eps": 5e-3}, channel_order="bgr", name="demo",
                               description="a test style", licence="cc-by-nc-sa-4.0", source="unit test")
    save_style(model, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    loaded = load_style_folder(tmp_path)
    assert loaded.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    x = torch.rand(1, 3, 36, 44)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
        assert torch.equal(model(x, part="face"), loaded(x, part="face"))
        assert not torch.equal(model(x, part="face"), model(x))  # the bg network serves whole images
    assert loaded.bg.gf_eps == 5e-3 and loaded.channel_order == "bgr"


def test_config_records_resolved_conventions(tmp_path):
    save_style(TTNStyle(), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["head"] == {"channels": 32, "num_blocks": 4, "padding": "tf_same", "upsample": "tf_legacy",
                              "gf_radius": 1, "gf_eps": 0.01, "negative_slope": 0.2}
    assert config["bg"] is None and config["input_range"] == [-1.0, 1.0] and config["channel_order"] == "rgb"
    assert config["format_version"] == 1


def test_model_card_has_provenance(tmp_path):
    save_style(TTNStyle(name="demo", licence="cc-by-nc-sa-4.0", source="https://example.org/w"), tmp_path)
    card = (tmp_path / "README.md").read_text()
    assert "license: cc-by-nc-sa-4.0" in card and "library_name: portrait-stylize" in card
    assert "1,467,075 parameters" in card and "https://example.org/w" in card and 'ps.load_style("demo")' in card


def test_bgr_style_flips_channels_around_the_network():
    rgb = lively_style_model(seed=2)
    bgr = TTNStyle(channel_order="bgr").eval()
    bgr.load_state_dict(rgb.state_dict())
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        assert torch.allclose(bgr(x), rgb(x.flip(1)).flip(1))
        assert not torch.allclose(bgr(x), rgb(x), atol=1e-3)


def test_forward_maps_unit_range_through_minus_one_one():
    model = lively_style_model(seed=3)
    x = torch.rand(1, 3, 20, 20)
    with torch.no_grad():
        expected = ((model.head(x * 2 - 1) + 1) / 2).clamp(0, 1)
        assert torch.allclose(model(x), expected, atol=1e-6)
