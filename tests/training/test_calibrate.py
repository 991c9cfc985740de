"""train/calibrate.py on a tiny random Stable Diffusion pipeline built here (no downloads)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from train.calibrate import calibrate, keep_face

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")


def _tiny_pipeline(img2img: bool):
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionImg2ImgPipeline,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )

    torch.manual_seed(0)
    unet = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32)
    vae = AutoencoderKL(block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2)
    cls = StableDiffusionImg2ImgPipeline if img2img else StableDiffusionPipeline
    return cls(vae=vae, unet=unet, scheduler=DDIMScheduler(), text_encoder=None, tokenizer=None, safety_checker=None,
               feature_extractor=None, requires_safety_checker=False)


def _digests(folder) -> list[str]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.png"))]


@pytest.mark.parametrize("img2img", [True, False])
def test_tiny_pipeline_runs_reproducibly_and_filters(tmp_path, img2img, fixtures):
    pipe = _tiny_pipeline(img2img)
    embeds = torch.randn(1, 77, 32, generator=torch.Generator().manual_seed(0))
    photo = Image.open(fixtures / "faces" / "selfies" / "d.jpg").convert("RGB").resize((64, 64))
    jobs = [{"image": photo} if img2img else {"height": 64, "width": 64}] * 2
    call = {"prompt_embeds": embeds, "negative_prompt_embeds": torch.zeros_like(embeds), "num_inference_steps": 2,
            "guidance_scale": 2.0, **({"strength": 0.5} if img2img else {})}
    runs = []
    for run, seed in (("a", 0), ("b", 0), ("c", 1)):
        counts = calibrate(pipe, jobs, tmp_path / run / "kept", seed=seed, min_face=16,
                           rejected=tmp_path / run / "rejected", progress=False, **call)
        runs.append(_digests(tmp_path / run / "rejected"))
        # A random network paints noise, so no face survives the filter.
        assert counts == {"kept": 0, "no face": 2, "several faces": 0, "face too small": 0}
    assert runs[0] == runs[1] and runs[0] != runs[2] and len(runs[0]) == 2


def test_filter_keeps_exactly_one_big_face_aligned(fixtures):
    face, verdict = keep_face(Image.open(fixtures / "faces" / "selfies" / "d.jpg"), 128, 256)
    assert verdict == "kept" and face.size == (256, 256)
    assert keep_face(Image.open(fixtures / "faces" / "whole" / "00.jpg"), 16, 256)[1] == "several faces"
    assert keep_face(Image.open(fixtures / "faces" / "selfies" / "d.jpg"), 10_000, 256)[1] == "face too small"
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8))
    assert keep_face(noise, 16, 256) == (None, "no face")
