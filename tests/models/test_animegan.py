"""models.animegan and convert.checkpoints: the AnimeGANv2 generator against a reference run of the
published architecture, its conversion from the published checkpoint layout, and how a style of
it runs pictures (whole, bounded) and faces (at 512 px) on every backend.

The reference (``tests/animegan_reference.py``) is written independently of
``portrait_stylize.models.animegan``; its switches (``align_corners``, ``norm``) show the check
would fail if either convention were wrong.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

import portrait_stylize as ps
from portrait_stylize.convert.checkpoints import animegan_key, convert_checkpoint, read_state_dict
from portrait_stylize.errors import ConversionError
from portrait_stylize.models.animegan import MIN_SIDE, AnimeGANGenerator, AnimeGANStyle
from portrait_stylize.runtime.backends import cpu_candidates

from animegan_reference import published_state_dict, reference
from helpers import malicious_checkpoint, psnr


@pytest.fixture(scope="module")
def published():
    return published_state_dict()


@pytest.fixture(scope="module")
def generator(published):
    net = AnimeGANGenerator().eval()
    net.load_state_dict({animegan_key(k): v for k, v in published.items()})
    return net


@pytest.fixture(scope="module")
def style_folder(published, tmp_path_factory):
    folder = tmp_path_factory.mktemp("animegan")
    torch.save(published, folder / "face_paint_512_v2.pt")
    convert_checkpoint("animegan2", folder / "face_paint_512_v2.pt", folder / "style", name="anime-portrait",
                       licence="mit", source="test")
    return folder / "style"


def test_inputs(*shape, seed=1):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


test_inputs.__test__ = False  # a helper, not a test


class TestGenerator:
    def test_parameter_count_and_published_keys(self, published, generator):
        assert sum(p.numel() for p in generator.parameters()) == 2_143_552
        assert len(published) == 77 and sorted(animegan_key(k) for k in published) == sorted(generator.state_dict())

    @pytest.mark.parametrize("size", [(96, 128), (101, 77), (64, 64)])
    def test_matches_the_reference_run(self, published, generator, size):
        x = test_inputs(1, 3, *size)
        with torch.inference_mode():
            ours, expected = generator(x), reference(x, published)
        assert ours.shape == x.shape
        assert (ours - expected).abs().max() < 1e-4
        assert expected.std() > 0.1  # lively weights: the comparison means something

    @pytest.mark.parametrize("wrong", [{"align_corners": False}, {"norm": "instance"}])
    def test_the_reference_tells_a_wrong_convention_apart(self, published, generator, wrong):
        x = test_inputs(1, 3, 96, 128)
        with torch.inference_mode():
            assert (generator(x) - reference(x, published, **wrong)).abs().max() > 1e-2

    def test_norms_see_the_whole_picture(self, generator):
        # One-group statistics: the left half of a picture is not stylized as it is on its own.
        x = test_inputs(1, 3, 64, 128)
        with torch.inference_mode():
            assert (generator(x)[..., :64] - generator(x[..., :64])).abs().max() > 1e-2


class TestConversion:
    def test_the_converted_style_runs_like_the_reference(self, style_folder, published):
        st = ps.load_style(style_folder, backend="torch")
        assert st.model.arch == "animegan2" and st.model.meta["licence"] == "mit"
        x = torch.rand(1, 3, 80, 96, generator=torch.Generator().manual_seed(3))
        with torch.inference_mode():
            ours = st.model(x)
            expected = ((reference(x * 2 - 1, published) + 1) / 2).clamp(0, 1)
        assert (ours - expected).abs().max() < 1e-4

    def test_model_card_names_the_checkpoint_and_its_hash(self, style_folder):
        card = (style_folder / "README.md").read_text()
        digest = hashlib.sha256((style_folder.parent / "face_paint_512_v2.pt").read_bytes()).hexdigest()
        assert f"| `face_paint_512_v2.pt` | `{digest}` |" in card and "weights_only=True" in card

    def test_a_missing_tensor_is_refused(self, published, tmp_path):
        torch.save({k: v for k, v in published.items() if k != "block_c.3.layers.2.weight"}, tmp_path / "x.pt")
        with pytest.raises(ConversionError, match=r"missing: middle\.3\.project\.conv\.weight"):
            convert_checkpoint("animegan2", tmp_path / "x.pt", tmp_path / "out")
        assert not (tmp_path / "out").exists()

    def test_a_wrong_shape_is_refused(self, published, tmp_path):
        torch.save({**published, "block_a.0.1.weight": torch.zeros(16, 3, 7, 7)}, tmp_path / "x.pt")
        with pytest.raises(ConversionError, match=r"block_a\.0\.1\.weight has shape \(16, 3, 7, 7\)"):
            convert_checkpoint("animegan2", tmp_path / "x.pt", tmp_path / "out")

    def test_code_in_a_checkpoint_never_runs(self, tmp_path):
        marker = tmp_path / "pwned"
        with pytest.raises(ConversionError, match="not a PyTorch checkpoint of plain tensors"):
            read_state_dict(malicious_checkpoint(tmp_path / "evil.pt", marker))
        assert not marker.exists()

    def test_an_empty_file(self, tmp_path):
        (tmp_path / "x.pt").write_bytes(b"")
        with pytest.raises(ConversionError, match="x.pt: not a PyTorch checkpoint of plain tensors"):
            read_state_dict(tmp_path / "x.pt")

    def test_not_a_checkpoint(self, tmp_path):
        (tmp_path / "x.pt").write_bytes(b"<html>rate limited</html>")
        with pytest.raises(ConversionError, match="x.pt: not a PyTorch checkpoint"):
            read_state_dict(tmp_path / "x.pt")
        torch.save([torch.zeros(1)], tmp_path / "list.pt")
        with pytest.raises(ConversionError, match="holds a list, not a state dict"):
            read_state_dict(tmp_path / "list.pt")

    def test_unknown_architecture(self, tmp_path):
        with pytest.raises(ConversionError, match="no converter for architecture 'vgg'"):
            convert_checkpoint("vgg", tmp_path / "x.pt", tmp_path / "out")


class TestStyle:
    def test_pictures_up_to_the_bound_run_whole_even_above_the_tile_size(self, style_folder):
        st = ps.load_style(style_folder, backend="torch", tile_size=64, tile_overlap=16)
        img = (np.random.default_rng(0).random((120, 150, 3)) * 255).astype(np.uint8)
        out = np.asarray(st(img))
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
        with torch.inference_mode():
            whole = (st.model(x)[0].permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
        assert np.abs(out.astype(int) - whole).max() <= 1  # one run of the whole picture (no tiles)

    def test_larger_pictures_run_at_the_bound_and_stay_close_to_the_full_size_run(self, style_folder):
        model = ps.load_style(style_folder, backend="torch").model
        bounded = AnimeGANStyle(whole_pixels=96 * 96)
        bounded.load_state_dict(model.state_dict())
        x = torch.from_numpy(np.array(_smooth_photo(192, 256))).permute(2, 0, 1)[None].float() / 255
        seen = []

        def spy(t):
            seen.append(tuple(t.shape[-2:]))
            return model.generator(t)

        with torch.inference_mode():
            out = bounded(x, runners={"generator": spy})
            full = model(x)
        assert seen == [(83, 110)] and out.shape == x.shape  # 96² pixels at most, the picture's shape
        assert psnr(out.numpy(), full.numpy(), peak=1.0) > 20  # the stated bound (docs/styles.md)

    def test_faces_run_at_512(self, style_folder):
        model = ps.load_style(style_folder, backend="torch").model
        seen = []

        def spy(t):
            seen.append(tuple(t.shape[-2:]))
            return model.generator(t)

        with torch.inference_mode():
            out = model(torch.rand(2, 3, 288, 288), "face", runners={"generator": spy})
        assert seen == [(512, 512)] and out.shape == (2, 3, 288, 288)

    def test_faces_run_a_few_at_a_time_with_the_same_result(self, style_folder):
        model = AnimeGANStyle(face_size=64)  # small faces: the test is about the batches
        model.load_state_dict(ps.load_style(style_folder, backend="torch").model.state_dict())
        seen = []

        def spy(t):
            seen.append(len(t))
            return model.generator(t)

        crops = torch.rand(5, 3, 96, 96, generator=torch.Generator().manual_seed(4))
        with torch.inference_mode():
            out = model(crops, "face", runners={"generator": spy})
            one_by_one = torch.cat([model(crop[None], "face") for crop in crops])
        assert seen == [2, 2, 1] and (out - one_by_one).abs().max() < 1e-5

    @pytest.mark.parametrize("size", [(1, 50_000_000), (40_000_000, 3), (3000, 4000)])
    def test_every_shape_runs_within_the_pixel_bound(self, size):
        model = AnimeGANStyle()
        h, w = model.working_size(*size, "image")
        assert min(h, w) >= MIN_SIDE and h * w <= model.whole_pixels
        assert (h < w) == (size[0] < size[1])

    def test_tiny_pictures(self, style_folder):
        model = ps.load_style(style_folder, backend="torch").model
        with torch.inference_mode():
            assert model(torch.rand(1, 3, 5, 3)).shape == (1, 3, 5, 3)
        assert min(model.working_size(5, 3, "image")) == MIN_SIDE

    def test_int8_backends_are_not_candidates(self, generator):
        assert not {"onnx-int8", "openvino-int8", "openvino-bf16"} & set(cpu_candidates(generator))

    @pytest.mark.parametrize("backend, floor", [("onnx", 60), ("openvino", 60), ("torch-bf16", 25)])
    def test_every_backend_runs_it(self, style_folder, backend, floor):
        pytest.importorskip("onnxruntime" if backend == "onnx" else "openvino" if backend == "openvino" else "torch")
        reference_run = np.asarray(ps.load_style(style_folder, backend="torch")(_smooth_photo(100, 132)), np.float32)
        out = np.asarray(ps.load_style(style_folder, backend=backend)(_smooth_photo(100, 132)), np.float32)
        assert psnr(out, reference_run, peak=255.0) > floor


def _smooth_photo(height: int, width: int):
    from PIL import Image

    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    noise = np.random.default_rng(1).normal(0, 0.05, (height, width, 3))
    rgb = np.stack([xx, yy, 1 - xx * yy], -1) * 0.8 + 0.1 + noise
    return Image.fromarray((rgb.clip(0, 1) * 255).astype(np.uint8))


@pytest.mark.slow
@pytest.mark.parametrize("photo", ["10045.png", "00.jpg"])
def test_group_photos_every_face_gets_its_own_pass_at_512(style_folder, fixtures, photo):
    """How faces are handled: the whole picture once, then every face found, aligned, in one batch
    at 512 px (the face models' training size), pasted back over the whole-picture result."""
    count = json.loads((fixtures / "faces" / "whole" / "faces.json").read_text())[photo]
    st = ps.load_style(style_folder, backend="torch")
    seen = []

    def spy(x):
        seen.append(tuple(x.shape))
        return st.model.generator(x)

    st._runners["generator"] = spy
    out, details = st(fixtures / "faces" / "whole" / photo, return_details=True)
    assert details.stylized_faces == list(range(1, count + 1)) and len(details.crops) == count
    assert seen[1:] == [(min(2, count - i), 3, 512, 512) for i in range(0, count, 2)]  # whole, then faces
    rgb = np.asarray(Image.open(fixtures / "faces" / "whole" / photo).convert("RGB"))
    with torch.inference_mode():
        whole = st.model(torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255)[0].permute(1, 2, 0)
    whole, out = whole.numpy() * 255, np.asarray(out, np.float32)
    for face in details.faces:  # inside each face box the face pass replaced the whole-picture result
        x0, y0, x1, y1 = (round(v) for v in face.box)
        assert np.abs(out[y0:y1, x0:x1] - whole[y0:y1, x0:x1]).mean() > 5


def test_export_onnx_writes_the_generator(style_folder, tmp_path):
    pytest.importorskip("onnxruntime")
    from portrait_stylize.runtime.onnx_export import export_onnx, onnx_session

    written = export_onnx(ps.load_style(style_folder, backend="torch").model, tmp_path / "onnx")
    assert sorted(p.name for p in written) == ["config.json", "generator.onnx"]
    x = test_inputs(1, 3, 72, 52)
    model = ps.load_style(style_folder, backend="torch").model
    with torch.inference_mode():
        expected = model.generator(x).numpy()
    got = onnx_session(tmp_path / "onnx" / "generator.onnx").run(None, {"image": x.numpy()})[0]
    assert np.abs(got - expected).max() < 1e-4
