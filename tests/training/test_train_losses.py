"""Unit tests of the training pieces on known inputs: every loss term, the networks, data, checkpoints."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from PIL import Image

from train import losses
from train.common import checkpoint_dirs, parse_with_config, resolve_resume
from train.data import DataError, batch, load_set, step_rng
from train.nets import ContentNet, ExpressionRegressor, PatchDiscriminator


def test_lsgan_targets():
    ones, zeros = torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)
    assert losses.lsgan_d(ones, zeros) == 0 and losses.lsgan_d(zeros, ones) == 1.0
    assert losses.lsgan_g(ones) == 0 and losses.lsgan_g(zeros) == 0.5


def test_surface_removes_texture_and_keeps_edges():
    flat = torch.full((1, 3, 32, 32), 0.3)
    assert torch.allclose(losses.surface(flat), flat, atol=1e-6)
    step = torch.full((1, 3, 64, 64), -0.5)
    step[..., 32:] = 0.5
    noisy = step + torch.randn(step.shape, generator=torch.Generator().manual_seed(0)) * 0.1
    out = losses.surface(noisy)

    def texture_energy(x):  # squared differences along the (vertical) edge: texture only
        return float(((x[..., 1:, :] - x[..., :-1, :]) ** 2).mean())

    # Measured: the energy drops about 35-fold; the edge keeps a 0.53 jump from one column to the
    # next (a box blur of the same radius leaves 0.09, one of radius 1 leaves 0.34).
    assert texture_energy(noisy) > 20 * texture_energy(out)
    assert float(out[..., 32].mean() - out[..., 31].mean()) > 0.45
    assert (out[..., :24] - step[..., :24]).abs().max() < 0.1 and (out[..., 40:] - step[..., 40:]).abs().max() < 0.1


def test_texture_is_colour_blind_grayscale():
    gray = torch.full((2, 3, 8, 8), 0.25)
    w = losses.random_colour_weights(2, torch.Generator().manual_seed(0))
    assert w.shape == (2, 3) and (w > 0).all()
    assert torch.allclose(losses.texture(gray, w), torch.full((2, 1, 8, 8), 0.25))
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    manual = (x * w[..., None, None]).sum(1, keepdim=True) / w.sum(1)[:, None, None, None]
    assert torch.allclose(losses.texture(x, w), manual)


def test_tv_is_zero_for_a_constant_and_positive_otherwise():
    assert losses.tv_loss(torch.full((1, 3, 9, 9), 0.7)) == 0
    checker = (torch.arange(8)[:, None] + torch.arange(8)) % 2 * 2.0 - 1
    assert losses.tv_loss(checker.expand(1, 3, 8, 8)) == pytest.approx(8.0)


def test_superpixels_are_piecewise_constant_segment_means():
    clean = torch.full((2, 3, 64, 64), -0.5)
    clean[0, ..., 32:] = 0.5
    clean[1, ..., :32] = 0.5
    noisy = clean + torch.randn(clean.shape, generator=torch.Generator().manual_seed(0)) * 0.01
    segments = 16
    out = losses.superpixel_average(noisy, segments=segments)
    assert out.shape == noisy.shape and (out - clean).abs().max() < 0.1  # no segment straddles the edge
    for image, result in zip(noisy, out):
        pixels, averaged = image.reshape(3, -1).T.double().numpy(), result.reshape(3, -1).T.numpy()
        assert len(np.unique(pixels, axis=0)) == 64 * 64
        colours, segment = np.unique(averaged, axis=0, return_inverse=True)
        segment = segment.ravel()
        assert segments // 2 <= len(colours) <= 2 * segments
        for k, colour in enumerate(colours):
            np.testing.assert_allclose(colour, pixels[segment == k].mean(0), atol=1e-6)


def test_masked_gram_ignores_pixels_outside_the_mask():
    f = torch.randn(2, 8, 16, 16)
    mask = torch.zeros(2, 1, 16, 16)
    mask[..., :8, :] = 1
    g = torch.randn(2, 8, 16, 16)
    changed = f.clone()
    changed[..., 8:, :] = 100.0  # only outside the mask
    assert torch.allclose(losses.gram(f, mask), losses.gram(changed, mask))
    assert losses.masked_gram_loss(f, changed, mask, mask) == 0
    assert losses.masked_gram_loss(f, g, mask) > 0
    assert torch.allclose(losses.gram(f), f.reshape(2, 8, -1) @ f.reshape(2, 8, -1).transpose(1, 2) / (256 * 8),
                          atol=1e-6)


def test_expression_loss_uses_only_photos_with_a_face():
    pred, target = torch.tensor([[1.0, 1, 1], [5, 5, 5]]), torch.tensor([[1.0, 1, 1], [0, 0, 0]])
    assert losses.expression_loss(pred, target, torch.tensor([True, False])) == 0
    assert losses.expression_loss(pred, target, torch.tensor([False, True])) == 25
    assert losses.expression_loss(pred, target, torch.tensor([False, False])) == 0


def test_networks_shapes_and_frozen_content_net():
    assert PatchDiscriminator(3)(torch.randn(2, 3, 64, 48)).shape == (2, 1, 8, 6)
    assert PatchDiscriminator(1)(torch.randn(1, 1, 32, 32)).shape == (1, 1, 4, 4)
    assert ExpressionRegressor()(torch.randn(3, 3, 64, 64)).shape == (3, 3)
    a, b = ContentNet("random", seed=3), ContentNet("random", seed=3)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert torch.equal(a(x), b(x)) and a(x).shape == (1, 512, 4, 4)
    assert not any(p.requires_grad for p in a.parameters())
    with pytest.raises(ValueError, match="'vgg19' or 'random'"):
        ContentNet("resnet")


def test_data_errors_and_skips(tmp_path):
    with pytest.raises(DataError, match="--photos .*folder not found"):
        load_set([tmp_path / "nope"], "--photos", 32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="--styles .*no images"):
        load_set([tmp_path / "empty"], "--styles", 32)
    good = tmp_path / "mixed"
    good.mkdir()
    Image.new("RGB", (50, 40), (200, 10, 10)).save(good / "a.png")
    (good / "broken.jpg").write_bytes(b"not a jpeg")
    (good / "empty.png").write_bytes(b"")
    found = load_set([good], "--styles", 32, progress=False)
    assert len(found.samples) == 1 and found.skipped["unreadable"] == 2
    assert "1 images (skipped 2 unreadable)" in found.describe("styles")
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.png").write_text("text")
    with pytest.raises(DataError, match="none of the 1 files could be used"):
        load_set([only_bad], "--styles", 32, progress=False)


def test_batches_depend_only_on_seed_and_step(tmp_path):
    for i in range(3):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(
            tmp_path / f"{i}.png")
    samples = load_set([tmp_path], "--styles", 32, progress=False).samples
    a, b = batch(samples, step_rng(1, 5), 4, 32), batch(samples, step_rng(1, 5), 4, 32)
    c = batch(samples, step_rng(1, 6), 4, 32)
    assert torch.equal(a["image"], b["image"]) and not torch.equal(a["image"], c["image"])
    assert a["image"].shape == (4, 3, 32, 32) and a["image"].min() >= -1 and a["image"].max() <= 1


def test_config_file_sets_defaults_and_flags_win(tmp_path):
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    parser.add_argument("--lr", type=float, default=1.0)
    parser.add_argument("--max-steps", type=int, default=5)
    (tmp_path / "c.json").write_text(json.dumps({"lr": 0.5, "max-steps": 7}))
    args = parse_with_config(parser, ["--config", str(tmp_path / "c.json"), "--lr", "0.1"])
    assert args.lr == 0.1 and args.max_steps == 7
    (tmp_path / "bad.yaml").write_text("learning_rate: 3\n")
    with pytest.raises(SystemExit):
        parse_with_config(parser, ["--config", str(tmp_path / "bad.yaml")])


def test_resume_finds_the_latest_complete_checkpoint(tmp_path):
    for name in ("checkpoint-10", "checkpoint-30", ".tmp-checkpoint-40", "checkpoint-x"):
        (tmp_path / "checkpoints" / name).mkdir(parents=True)
    assert [p.name for p in checkpoint_dirs(tmp_path)] == ["checkpoint-10", "checkpoint-30"]
    assert resolve_resume(tmp_path, "latest") == (tmp_path / "checkpoints" / "checkpoint-30", 30)
    assert resolve_resume(tmp_path, None) == (None, 0)
    assert resolve_resume(tmp_path / "empty", "latest") == (None, 0)
    with pytest.raises(FileNotFoundError):
        resolve_resume(tmp_path, str(tmp_path / "checkpoints" / "checkpoint-x"))
