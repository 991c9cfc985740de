"""The training options that docs/training.md documents, each checked on what it produces.

``--push-to-hub`` (against the fake Hub, which here also accepts uploads), ``--calibrated``,
``--align-faces``, ``--checkpoints-total-limit`` and the flag table's defaults of
``train/tttn.py``; resuming ``train/local.py``; the ``train/calibrate.py`` command lines; and the
U²-Net + LFFM generator's parameter table.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import subprocess
import sys
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file
from test_train_hostile import TINY, _images, _one_line_error, _script

import portrait_stylize as ps
from portrait_stylize.common.files import sha256_file
from portrait_stylize.faces import align, get_face_backend
from train import calibrate, common, local, tttn
from train.data import batch, load_set, step_rng

import fake_hub
from helpers import REPO, write_registry

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
DOCS = (REPO / "docs" / "training.md").read_text(encoding="utf-8")


def _tttn(tmp_path, *args: str, photos=None) -> subprocess.CompletedProcess:
    """``train/tttn.py`` at tiny settings into ``tmp_path/OUT``, with ``photos`` (default: 3 noise
    images) and 3 noise style images, then ``args``."""
    photos = photos or _images(tmp_path / "photos")
    return _script("--photos", str(photos), "--styles", str(_images(tmp_path / "styles", seed=10)),
                   "--output", str(tmp_path / "OUT"), *TINY, *args)


# ---------------------------------------------------------------------------- --push-to-hub


def _accepting_uploads(make_handler):
    """Wrap :mod:`fake_hub`'s handler factory with the requests ``HfApi.create_repo`` and
    ``HfApi.upload_folder`` send: ``POST /api/repos/create``, ``/api/validate-yaml`` (the model
    card's front matter must be YAML), ``/api/models/REPO/preupload/REV`` and
    ``/api/models/REPO/commit/REV`` (NDJSON). The preupload answer asks for every file inline
    ("regular"), as the Hub may, so no LFS or Xet storage is needed; a commit becomes a new commit
    of :class:`fake_hub.FakeHub` (earlier files kept), downloadable like any other."""

    def factory(hub, role):
        base = make_handler(hub, role)

        class Handler(base):
            def do_POST(self) -> None:
                hub.record(fake_hub.Request(self.command, self.path, dict(self.headers.items()), role))
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                path = urlsplit(self.path).path
                if path == "/api/repos/create":
                    request = json.loads(body)
                    repo_id = f"{request['organization']}/{request['name']}"
                    hub.repos.setdefault(repo_id, fake_hub.FakeRepo())
                    return self._json(200, {"url": f"{hub.endpoint}/{repo_id}"})
                if path == "/api/validate-yaml":
                    card = json.loads(body)["content"]
                    match = re.match(r"---\n(.*?)\n---\n", card, re.S)
                    if not match or not isinstance(yaml.safe_load(match[1]), dict):
                        return self._json(400, {"errors": [{"message": "no YAML metadata block"}]})
                    return self._json(200, {"errors": [], "warnings": []})
                match = re.match(r"^/api/models/([^/]+/[^/]+)/(preupload|commit)/([^/]+)$", path)
                if not match or unquote(match[1]) not in hub.repos:
                    return self._error(404, "RepoNotFound", f"no repository for {path}", True)
                repo_id, action, branch = unquote(match[1]), match[2], unquote(match[3])
                if action == "preupload":
                    files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                             for f in json.loads(body)["files"]]
                    return self._json(200, {"files": files})
                repo = hub.repos[repo_id]
                files = dict(repo.commits.get(repo.refs.get(branch, ""), {}))
                for line in body.splitlines():
                    item = json.loads(line)
                    if item["key"] == "file" and item["value"]["encoding"] == "base64":
                        files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    elif item["key"] != "header":
                        return self._json(400, {"error": f"the fake Hub does not take {item['key']}"})
                commit = hub.add_repo(repo_id, files, branch=branch)
                self._json(200, {"commitUrl": f"{hub.endpoint}/{repo_id}/commit/{commit}", "commitOid": commit})

            def _json(self, status: int, payload: dict) -> None:
                self._send(status, {"Content-Type": "application/json"}, json.dumps(payload).encode(), True)

        return Handler

    return factory


@pytest.fixture
def hub(monkeypatch, request):
    """conftest's ``online`` environment, its fake Hub also taking uploads; a token is set."""
    monkeypatch.setattr(fake_hub, "_handler", _accepting_uploads(fake_hub._handler))
    monkeypatch.setenv("HF_TOKEN", "hf_fake_token")
    return request.getfixturevalue("online")


@pytest.mark.slow
def test_push_to_hub_uploads_the_style_and_prints_an_entry_pinned_to_the_new_commit(hub, tmp_path):
    out = tmp_path / "OUT"
    result = _tttn(tmp_path, "--max-steps", "2", "--name", "my-style", "--licence", "cc-by-4.0",
                   "--push-to-hub", "my-org/my-style")
    assert result.returncode == 0, result.stderr[-3000:]
    repo = hub["hub"].repos["my-org/my-style"]
    assert len(repo.commits) == 1
    commit = repo.refs["main"]
    # the repository holds the style folder (the card shows sample.png), not checkpoints or logs
    pushed = repo.commits[commit]
    assert sorted(pushed) == ["README.md", "config.json", "model.safetensors", "sample.png"], sorted(pushed)
    assert all(pushed[name] == (out / name).read_bytes() for name in pushed)
    assert "## Training" in pushed["README.md"].decode() and "license: cc-by-4.0" in pushed["README.md"].decode()

    assert f"published to https://huggingface.co/my-org/my-style at {commit}\n" in result.stdout
    entry = json.loads(result.stdout.split("checkpoints.json entry:\n", 1)[1])
    assert entry == {"my-style": {"kind": "hub", "repo_id": "my-org/my-style", "revision": commit,
                                  "filename": "model.safetensors", "sha256": sha256_file(out / "model.safetensors"),
                                  "licence": "cc-by-4.0", "source": "train/tttn.py",
                                  "description": "Trained with train/tttn.py"}}
    # the printed entry, added to a registry, loads the pushed weights from the Hub by name
    write_registry(hub, entry)
    from_hub, local_folder = ps.load_style("my-style", device="cpu"), ps.load_style(out, device="cpu")
    weights = local_folder.model.state_dict()
    assert all(torch.equal(v, weights[k]) for k, v in from_hub.model.state_dict().items())
    assert any(r.path.startswith(f"/my-org/my-style/resolve/{commit}/") for r in hub["hub"].requests)


# ---------------------------------------------------------------------------- --calibrated


@pytest.mark.slow
def test_calibrated_folders_add_their_images_to_the_style_set(tmp_path):
    result = _tttn(tmp_path, "--calibrated", str(_images(tmp_path / "calibrated_a", 2, seed=20)),
                   "--calibrated", str(_images(tmp_path / "calibrated_b", 4, seed=30)), "--max-steps", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "photos: 3 images | style images: 9 images" in result.stdout.splitlines(), result.stdout
    assert "Data: photos: 3 images; style images: 9 images." in (tmp_path / "OUT" / "README.md").read_text()


# ---------------------------------------------------------------------------- --align-faces


@pytest.fixture
def portrait(fixtures, tmp_path):
    """A folder with one real 700×464 photo of two people (a link to the fixture, not a copy); the
    larger face is right of centre."""
    folder = tmp_path / "portrait"
    folder.mkdir()
    (folder / "photo.jpg").symlink_to(fixtures / "faces" / "whole" / "Blake_Lively.jpg")
    return folder


def test_align_faces_makes_training_crops_of_the_aligned_face(portrait):
    """The photo is kept as the aligned crop of its larger face (DCT-Net's template), 1.25 × the
    resolution square, and an unexpanded training crop shows that face where the template puts
    it: the eyes' midpoint within 3 % of the side, their distance within 5 %, every landmark
    within 6 % (MediaPipe's points are not exactly the template's)."""
    side, kept = 128, 160
    found = load_set([portrait], "--photos", side, align_faces=True, progress=False)
    assert [s.image.shape for s in found.samples] == [(kept, kept, 3)]
    crop = batch(found.samples, step_rng(0, 0), 1, side, expand=False)["image"][0]
    crop = ((crop.permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
    faces = get_face_backend("mediapipe").detect(crop)
    assert len(faces) == 1
    found_points = faces[0].landmarks
    template = align.template(kept) - (kept - side) / 2  # the crop is the kept image's centre
    midpoint = np.abs(found_points[:2].mean(0) - template[:2].mean(0)).max() / side
    eyes = np.linalg.norm(found_points[1] - found_points[0]) / np.linalg.norm(template[1] - template[0])
    every = np.abs(found_points - template).max() / side
    assert midpoint < 0.03 and abs(eyes - 1) < 0.05 and every < 0.06, (midpoint, eyes, every)
    # without the flag the whole photo is kept (short side 1.25 × the resolution)
    assert load_set([portrait], "--photos", side, progress=False).samples[0].image.shape == (kept, 241, 3)


@pytest.mark.slow
def test_align_faces_skips_photos_without_a_face_and_says_so(portrait, tmp_path):
    _images(portrait, 2)  # noise: no face
    result = _tttn(tmp_path, "--align-faces", "--max-steps", "1", photos=portrait)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "photos: 1 images (skipped 2 without a face) | style images: 3 images" in result.stdout.splitlines()
    faceless = _images(tmp_path / "faceless", 2)
    line = _one_line_error(_tttn(tmp_path, "--align-faces", "--max-steps", "1", photos=faceless))
    assert line == f"error: --photos {faceless}: none of the 2 files could be used (2 without a face)", line


# ---------------------------------------------------------------------------- checkpoints, flag table


@pytest.mark.slow
def test_checkpoints_total_limit_keeps_only_the_newest(tmp_path):
    out = tmp_path / "OUT"
    result = _tttn(tmp_path, "--max-steps", "4", "--checkpointing-steps", "1", "--checkpoints-total-limit", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-3", "checkpoint-4"]
    assert [common.checkpoint_problem(p) for p in common.checkpoint_dirs(out)] == [None, None]
    # the newest is the final state: its generator is the style's head
    last = load_file(out / "checkpoints" / "checkpoint-4" / "model.safetensors")
    style = load_file(out / "model.safetensors")
    assert sorted(style) == sorted(f"head.{k}" for k in last)
    assert all(torch.equal(v, style[f"head.{k}"]) for k, v in last.items())


def _documented_defaults() -> dict[str, str]:
    """``{flag: default as written}`` from the flag table of docs/training.md ("a / b" and "a, b"
    cells give one default per flag)."""
    table = DOCS.split("| flag | default | what it does |", 1)[1].split("\n\n", 1)[0]
    found = {}
    for row in table.strip().splitlines()[1:]:
        flags_cell, default_cell = (cell.strip() for cell in row.strip("|").split("|")[:2])
        flags = re.findall(r"`(--[\w-]+)", flags_cell)
        defaults = re.split(r" / |, ", default_cell) if len(flags) > 1 else [default_cell]
        if len(defaults) == 1:
            defaults *= len(flags)
        assert len(defaults) == len(flags), row
        found.update(zip(flags, defaults))
    return found


def _same(default, written: str) -> bool:
    """Whether the parser's ``default`` is what the table writes (numbers compared as numbers)."""
    if default is None:
        return written in ("", "accelerate config")
    if default is False:
        return written == "off"
    if isinstance(default, (tuple, list)):
        return [float(x) for x in written.split()] == list(default)
    if isinstance(default, (int, float)):
        return float(written) == default
    return written == default


def test_flag_table_defaults_are_tttn_defaults():
    documented = _documented_defaults()
    actions = {flag: action for action in tttn.build_parser()._actions for flag in action.option_strings}
    assert len(documented) == 26 and set(documented) <= set(actions), sorted(set(documented) - set(actions))
    wrong = {flag: (written, actions[flag].default) for flag, written in documented.items()
             if not _same(actions[flag].default, written)}
    assert wrong == {}


# ---------------------------------------------------------------------------- train/local.py resume


def _local(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(REPO / "train" / "local.py"), *args], capture_output=True, text=True,
                            cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_local_resume_continues_from_the_checkpoint_and_matches_an_uninterrupted_run(tmp_path):
    data = ["--photos", str(_images(tmp_path / "photos")), "--styles", str(_images(tmp_path / "styles", seed=10)),
            "--resolution", "32", "--content-net", "random"]
    _local(*data, "--max-steps", "2", "--output", str(tmp_path / "straight"))
    _local(*data, "--max-steps", "1", "--output", str(tmp_path / "resumed"))
    second = _local(*data, "--max-steps", "2", "--output", str(tmp_path / "resumed"),
                    "--resume_from_checkpoint", "latest")
    assert f"resumed from {tmp_path / 'resumed' / 'checkpoints' / 'checkpoint-1'} (step 1)" in second.stdout
    a, b = load_file(tmp_path / "straight" / "model.safetensors"), load_file(tmp_path / "resumed" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------- calibrate.py command line


def _documented_calibrate_commands() -> list[list[str]]:
    block = DOCS.split("```bash\npython train/calibrate.py", 1)[1].split("```", 1)[0]
    lines = ("python train/calibrate.py" + block).replace("\\\n", " ").strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("python train/calibrate.py ") for line in lines), lines
    return [shlex.split(line)[2:] for line in lines]


def test_calibrate_accepts_the_documented_command_lines(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the commands' photos/ and prompts.txt exist
    _images(tmp_path / "photos", 1)
    (tmp_path / "prompts.txt").write_text("anime portrait\n")
    img2img, text2img = (calibrate.parse_args(argv) for argv in _documented_calibrate_commands())
    assert (img2img.mode, img2img.model, img2img.lora, img2img.photos, img2img.prompt, img2img.strength,
            img2img.output) == ("img2img", "runwayml/stable-diffusion-v1-5", "my-style-lora", "photos/",
                                "anime portrait, cel shading", 0.6, "calibrated/")
    assert (text2img.mode, text2img.model, text2img.prompts, text2img.num_images, text2img.output) == (
        "text2img", "MODEL", "prompts.txt", 5, "calibrated/")
    assert (img2img.min_face, img2img.seed, img2img.save_rejected) == (128, 0, None)  # documented: --min-face 128


@pytest.mark.parametrize("argv,message", [
    ([], "the following arguments are required: mode, --model, --output"),
    (["paint", "--model", "M", "--output", "o/"], "argument mode: invalid choice: 'paint'"),
    (["img2img", "--model", "M", "--prompt", "p", "--output", "o/"], "img2img needs --photos"),
    (["text2img", "--model", "M", "--output", "o/"], "text2img needs --prompt or --prompts"),
    (["text2img", "--prompt", "p", "--output", "o/"], "the following arguments are required: --model"),
    (["img2img", "--model", "M", "--photos", "{tmp}/nope", "--output", "o/"], "--photos {tmp}/nope: folder not found"),
    (["text2img", "--model", "M", "--prompts", "{tmp}/nope.txt", "--output", "o/"],
     "--prompts {tmp}/nope.txt: file not found"),
    (["img2img", "--model", "M", "--photos", "{tmp}", "--strength", "half", "--output", "o/"],
     "argument --strength: invalid float value: 'half'"),
], ids=["nothing", "bad-mode", "no-photos", "no-prompt", "no-model", "missing-photos", "missing-prompts",
        "bad-strength"])
def test_calibrate_refuses_a_bad_command_line_with_one_error_line(tmp_path, capsys, argv, message):
    _images(tmp_path, 1)
    with pytest.raises(SystemExit) as exit_:
        calibrate.parse_args([arg.replace("{tmp}", str(tmp_path)) for arg in argv])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert errors == [err.rstrip().splitlines()[-1]], err
    assert errors[0].split(": error: ", 1)[1].startswith(message.replace("{tmp}", str(tmp_path))), err


def _tiny_text_pipeline(folder) -> None:
    """Save a tiny random Stable Diffusion pipeline with a real (tiny) CLIP tokenizer and text
    encoder to ``folder``, so that ``calibrate.py --model folder`` loads it like a Hub model."""
    import string

    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    symbols = string.ascii_lowercase + string.digits + ",.-'"
    vocab = {t: i for i, t in enumerate(["<|startoftext|>", "<|endoftext|>", *symbols, *(c + "</w>" for c in symbols)])}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    torch.manual_seed(0)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=37,
                                        num_attention_heads=4, num_hidden_layers=2, max_position_embeddings=77,
                                        bos_token_id=0, eos_token_id=1, pad_token_id=1))
    unet = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32)
    vae = AutoencoderKL(block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2)
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)
    StableDiffusionPipeline(vae=vae, unet=unet, scheduler=DDIMScheduler(), text_encoder=text, tokenizer=tokenizer,
                            safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(folder / "model")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["img2img", "text2img"])
def test_calibrate_command_runs_end_to_end_on_a_tiny_pipeline(tmp_path, fixtures, mode):
    """The documented command (no LoRA: that needs ``peft``), with a tiny random model, 2 steps at
    64²: a random network paints no face, so every image is rejected and kept for inspection."""
    _tiny_text_pipeline(tmp_path)
    documented = dict(zip(("img2img", "text2img"), _documented_calibrate_commands()))[mode]
    argv = [arg for arg in documented if arg not in ("--lora", "my-style-lora")]
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.jpg", "d.jpg"):
        Image.open(fixtures / "faces" / "selfies" / name).save(photos / name)
    (tmp_path / "prompts.txt").write_text("anime portrait\n\ncel shading, a face\n")
    swap = {"runwayml/stable-diffusion-v1-5": str(tmp_path / "model"), "MODEL": str(tmp_path / "model"),
            "photos/": str(photos), "prompts.txt": str(tmp_path / "prompts.txt"), "calibrated/": str(tmp_path / "out"),
            "5": "1"}
    argv = [swap.get(arg, arg) for arg in argv] + ["--steps", "2", "--resolution", "64", "--min-face", "16",
                                                   "--save-rejected", str(tmp_path / "rejected")]
    result = subprocess.run([sys.executable, str(REPO / "train" / "calibrate.py"), *argv], capture_output=True,
                            text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    n = 2  # two photos, or two non-empty prompt lines, one image each
    assert result.stdout.splitlines()[-1] == (f"0 of {n} images kept in {tmp_path / 'out'}; rejected: "
                                              f"{n} no face, 0 several faces, 0 face too small")
    rejected = sorted(p.name for p in (tmp_path / "rejected").iterdir())
    assert rejected == [f"{i:05d}-no-face.png" for i in range(n)]
    assert all(Image.open(tmp_path / "rejected" / name).size == (64, 64) for name in rejected)


# ---------------------------------------------------------------------------- the documented parameter table


def test_u2lffm_parameter_table_matches_the_generator_train_local_builds():
    from portrait_stylize.models.u2lffm import U2LFFMGenerator, stage_table

    defaults = local.build_parser().parse_args([])
    generator = U2LFFMGenerator(attn_tokens=defaults.attn_tokens)
    total = int(re.search(r"Generator: \*\*([\d,]+) parameters\*\*", DOCS)[1].replace(",", ""))
    assert sum(p.numel() for p in generator.parameters()) == total
    rows = dict(re.findall(r"^\| (U²E_[cs] \| [^|]+?) \| ([\d,]+) \|$", DOCS, re.M))
    assert {f"{enc} | {stage}": f"{n:,}" for enc, stage, n in stage_table(generator)} == rows
    fusion = re.search(r"^\| LFFM \((\d+) channels\) \| \| ([\d,]+) \|$", DOCS, re.M)
    decoders = re.search(r"^\| decoder / reconstruction decoder \| \| ([\d,]+) each \|$", DOCS, re.M)
    assert generator.fusion.value.in_channels == int(fusion[1]) and _count(generator.fusion) == fusion[2]
    assert _count(generator.decoder) == _count(generator.reconstruction_decoder) == decoders[1]


def _count(module: torch.nn.Module) -> str:
    return f"{sum(p.numel() for p in module.parameters()):,}"
