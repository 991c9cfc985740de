"""The Stylizer, step by step, with tiny fake styles and a fake face backend (no real photos).

Each step of ``Stylizer.__call__`` gets its own test class: check inputs, faces, whole image,
face pass, regions, composite, output; then the style interface (a third architecture added in
this file alone), export, and the caches.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import portrait_stylize as ps
from portrait_stylize import pipeline
from portrait_stylize.cli import main
from portrait_stylize.errors import InvalidImageError
from portrait_stylize.faces import Face, FaceParse, Parsing
from portrait_stylize.models import ARCHITECTURES, StyleNetwork, register_architecture
from portrait_stylize.models.serialization import load_style_folder, save_style
from portrait_stylize.runtime.onnx_export import export_onnx

IMAGE_VALUE, FACE_VALUE = 0.25, 0.75
H, W = 120, 160
BOX = (40.0, 30.0, 100.0, 90.0)  # the fake face: 60 px, centre (70, 60)


def photo(value: int | None = None) -> np.ndarray:
    """``(H, W, 3)`` uint8: a smooth gradient (or a flat ``value``)."""
    if value is not None:
        return np.full((H, W, 3), value, np.uint8)
    yy, xx = np.mgrid[0:H, 0:W]
    return np.stack([xx * 255 // W, yy * 255 // H, (xx + yy) % 256], -1).astype(np.uint8)


class Flat(StyleNetwork):
    """A fake style: every pixel becomes :data:`IMAGE_VALUE` (whole image) or :data:`FACE_VALUE`
    (face pass); records what it was asked."""

    arch = "test-flat"
    has_face_pass = True

    def __init__(self, **conventions: Any) -> None:
        super().__init__(**conventions)
        self.calls: list[tuple[str, tuple[int, ...], torch.Tensor | None]] = []

    def architecture_config(self) -> dict[str, Any]:
        return {}

    def forward(self, image, part="image", reference=None, runners=None):
        self.check_call(part, reference)
        self.calls.append((part, tuple(image.shape), reference))
        return torch.full_like(image, FACE_VALUE if part == "face" else IMAGE_VALUE)


class FlatNoFaces(Flat):
    arch = "test-flat-nofaces"
    has_face_pass = False


class FlatReference(Flat):
    """Returns the mean colour of the reference (default: mid grey)."""

    arch = "test-flat-reference"
    has_face_pass = False
    takes_reference = True

    def forward(self, image, part="image", reference=None, runners=None):
        self.calls.append((part, tuple(image.shape), reference))
        colour = torch.full((3,), 0.5) if reference is None else reference.mean((0, 2, 3))
        return colour.view(1, 3, 1, 1).expand_as(image).to(image.dtype).clone()


def face_at(box=BOX) -> Face:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    landmarks = np.array([[x0 + 0.3 * w, y0 + 0.4 * h], [x0 + 0.7 * w, y0 + 0.4 * h], [x0 + 0.5 * w, y0 + 0.6 * h],
                          [x0 + 0.35 * w, y0 + 0.8 * h], [x0 + 0.65 * w, y0 + 0.8 * h]], np.float32)
    return Face(box=box, landmarks=landmarks, score=0.99)


class FakeFaces:
    """A face backend that 'finds' fixed faces and parses each box as skin."""

    name = "fake"
    regions = ("skin", "hair", "background")

    def __init__(self, faces: list[Face]) -> None:
        self.faces = faces
        self.detect_calls = 0

    def detect(self, rgb):
        self.detect_calls += 1
        return list(self.faces)

    def parse(self, rgb, faces):
        parses = []
        for face in faces:
            x0, y0, x1, y1 = (int(v) for v in face.box)
            parses.append(FaceParse(window=(x0, y0, x1, y1), masks={"skin": np.ones((y1 - y0, x1 - x0), bool)}))
        background = np.ones(rgb.shape[:2], bool)
        for p in parses:
            x0, y0, x1, y1 = p.window
            background[y0:y1, x0:x1] = False
        return Parsing(faces=parses, image_masks={"background": background})


@pytest.fixture
def faces(monkeypatch) -> FakeFaces:
    backend = FakeFaces([face_at()])
    monkeypatch.setattr(pipeline, "get_face_backend", lambda name=None, device=None: backend)
    return backend


def stylizer(model: StyleNetwork | None = None, **kwargs) -> ps.Stylizer:
    return ps.Stylizer(model or Flat(), ps.StyleSpec(name="flat", kind="builtin"), device="cpu", **kwargs)


def level(value: float) -> int:
    return round(value * 255)


class TestCheckInputs:
    @pytest.mark.parametrize("kwargs,message", [
        ({"strength": 1.5}, "strength must be a finite number in"),
        ({"strength": True}, "strength must be a finite number in"),
        ({"strength": "1"}, "strength must be a finite number in"),
        ({"harmonize": -0.1}, "harmonize must be a finite number in"),
        ({"strength": {"skin": 0.5}}, "needs regions"),
        ({"regions": ["skin"], "strength": {"hair": 0.5}}, "not selected"),
        ({"regions": ["skin"], "strength": {"skin": 2}}, "strength for 'skin'"),
        ({"regions": []}, "regions is empty"),
        ({"regions": ["hat"]}, "unknown region"),
        ({"regions": ["ears"]}, "cannot see 'ears'"),
        ({"faces": ["0"]}, "faces must be a list of face numbers \\(1 = leftmost\\)"),
        ({"faces": [True]}, "faces must be a list of face numbers \\(1 = leftmost\\)"),
        ({"faces": 1}, "faces must be a list of face numbers \\(1 = leftmost\\)"),
        ({"regions": 3}, "regions must be a region name or a list"),
        ({"style_image": np.zeros((8, 8, 3), np.uint8)}, "does not take a style image"),
    ])
    def test_errors_name_the_option(self, faces, kwargs, message):
        model = Flat()
        with pytest.raises(ps.InvalidArgumentError, match=message):
            stylizer(model)(photo(), **kwargs)
        assert model.calls == [] and faces.detect_calls == 0

    def test_options_are_checked_before_the_image_is_read(self, faces, tmp_path):
        missing = tmp_path / "missing.jpg"
        with pytest.raises(ValueError, match="strength") as err:
            stylizer()(missing, strength=2)
        assert not isinstance(err.value, InvalidImageError)
        with pytest.raises(InvalidImageError, match="missing.jpg"):
            stylizer()(missing)

    def test_request_holds_the_checked_values(self, faces):
        request = stylizer().check_inputs("skin", {"skin": 0.5}, 1, (1,), None)
        assert request == pipeline.Request(["skin"], {"skin": 0.5}, 1.0, [1], None)
        assert stylizer().check_inputs(None, 0.3, 0.0, None, None).strengths == {"all": 0.3}


class TestFaces:
    def test_face_pass_style_detects_and_chooses(self, faces):
        out, details = stylizer()(photo(), return_details=True)
        assert faces.detect_calls == 1 and details.face_backend == "fake"
        assert details.stylized_faces == [1] and len(details.faces) == 1 and details.skipped == []

    def test_no_faces_chosen_means_no_detection_no_network_and_no_change(self, faces):
        model = Flat()
        out, details = stylizer(model)(photo(), faces=[], return_details=True)
        assert faces.detect_calls == 0 and model.calls == [] and details.faces == []
        assert out.mode == "RGB" and np.array_equal(np.asarray(out), np.asarray(photo()))
        # With harmonize the untouched picture moves towards the style's colours: the network runs.
        stylizer(model)(photo(), faces=[], harmonize=0.5)
        assert faces.detect_calls == 0 and [c[0] for c in model.calls] == ["image"]

    @pytest.mark.parametrize("model", [Flat(), FlatNoFaces()], ids=["face pass", "no face pass"])
    def test_faces_alone_change_only_those_heads(self, faces, model):
        """faces=[2] without regions: face 2's head changes (to the head result, or the whole-image
        result for a style without a face pass); face 1 and everything else stay the photo."""
        left, right = (4.0, 40.0, 40.0, 76.0), (120.0, 40.0, 156.0, 76.0)
        faces.faces = [face_at(left), face_at(right)]
        out, details = stylizer(model)(photo(), faces=[2], return_details=True)
        out, original = np.asarray(out).astype(int), photo().astype(int)
        changed = np.abs(out - original).max(-1) > 0
        head = details.masks["head"]
        assert details.stylized_faces == [2] and list(details.masks) == ["head"]
        assert not (changed & (head == 0)).any() and changed[head >= 0.5].mean() > 0.95  # the head, nothing else
        assert changed[:, :60].sum() == 0 and changed[40:76, 120:156].mean() > 0.9  # face 1 untouched
        value = FACE_VALUE if model.has_face_pass else IMAGE_VALUE
        assert np.all(np.abs(out[head >= 1] - level(value)) <= 1)

    def test_a_face_number_not_in_the_picture_names_the_faces_found(self, faces):
        faces.faces = [face_at((10.0, 30.0, 60.0, 80.0)), face_at((100.0, 30.0, 150.0, 80.0))]
        with pytest.raises(ps.InvalidArgumentError, match=r"no face 5: 2 face\(s\) found \(1-2, 1 = leftmost\)$"):
            stylizer()(photo(), faces=[5])
        with pytest.raises(ps.InvalidArgumentError, match=r"no face 0: .*; faces are numbered from 1, the leftmost$"):
            stylizer()(photo(), faces=[0])

    def test_style_without_face_pass_never_loads_a_face_backend(self, monkeypatch):
        def refuse(name=None, device=None):
            raise AssertionError("the face backend was asked for")

        monkeypatch.setattr(pipeline, "get_face_backend", refuse)
        assert np.all(np.asarray(stylizer(FlatNoFaces())(photo())) == level(IMAGE_VALUE))

    def test_face_index_out_of_range_names_the_faces_found(self, faces):
        with pytest.raises(ValueError, match=r"there is no face 5: 1 face\(s\) found \(face 1\)$"):
            stylizer()(photo(), faces=[5])

    def test_small_faces_are_skipped_and_reported(self, faces):
        model = Flat()
        out, details = stylizer(model, min_face_size=61)(photo(), return_details=True)
        number, reason = details.skipped[0]
        assert details.stylized_faces == [] and number == 1
        assert reason.startswith("face 1 is ") and "below min_face_size=61" in reason
        assert "face" not in [c[0] for c in model.calls] and np.all(np.asarray(out) == level(IMAGE_VALUE))

    def test_temporal_smoother_sees_faces_and_coverage(self, faces):
        class Recorder:
            def __init__(self):
                self.seen = []

            def track_faces(self, detect):
                self.seen.append("faces")
                return detect()

            def smooth_coverage(self, coverage):
                self.seen.append(coverage.shape)
                return coverage

            def adapted_model(self, model, picture, face_sizes):
                self.seen.append("adapt")
                return model.adapted_to(picture, face_sizes())

        recorder = Recorder()
        stylizer()(photo(), regions=["skin"], temporal=recorder)
        assert recorder.seen == ["faces", "adapt", (H, W)]


class TestWholeImage:
    @pytest.mark.parametrize("strength", [1.0, 0.5, 0.0])
    def test_strength_blends_towards_the_style(self, strength):
        src = photo()
        out = np.asarray(stylizer(FlatNoFaces())(src, strength=strength), dtype=float)
        expected = src + (level(IMAGE_VALUE) - src.astype(float)) * strength
        assert np.abs(out - expected).max() <= 0.5 + 1e-9
        if strength == 0.0:
            assert np.array_equal(out, src)

    def test_large_images_run_in_tiles(self):
        model = FlatNoFaces()
        out = np.asarray(stylizer(model, tile_size=64, tile_overlap=8)(photo()))
        assert len(model.calls) > 1 and all(max(shape[-2:]) <= 64 for _, shape, _ in model.calls)
        assert np.all(out == level(IMAGE_VALUE))

    def test_reference_image_reaches_the_style(self):
        model = FlatReference()
        st = stylizer(model)
        assert st.reference_based and st.backend == "torch"
        red = np.zeros((16, 16, 3), np.uint8)
        red[..., 0] = 255
        out = np.asarray(st(photo(), style_image=red))
        assert np.all(out == [255, 0, 0])
        assert np.all(np.asarray(st(photo())) == level(0.5))  # the style's default reference


class TestFacePass:
    def test_face_crops_are_batched_and_pasted_over_the_face(self, faces):
        faces.faces = [face_at(), face_at((110.0, 40.0, 150.0, 80.0))]
        model = Flat()
        out, details = stylizer(model)(photo(), return_details=True)
        out = np.asarray(out)
        parts = [(part, shape) for part, shape, _ in model.calls]
        assert parts == [("image", (1, 3, H, W)), ("face", (2, 3, 288, 288))]
        assert out[60, 70].tolist() == [level(FACE_VALUE)] * 3  # face centre: the face network
        assert out[2, 2].tolist() == [level(IMAGE_VALUE)] * 3  # far corner: the whole-image pass
        assert len(details.crops) == 2 and details.crops[0][1].size == (288, 288)

    def test_only_the_chosen_face_is_pasted(self, faces):
        faces.faces = [face_at(), face_at((110.0, 40.0, 150.0, 80.0))]
        out = np.asarray(stylizer()(photo(), faces=[2]))
        assert out[60, 70].tolist() == photo()[60, 70].tolist()  # face 1 stays the photo
        assert out[60, 130].tolist() == [level(FACE_VALUE)] * 3


class TestRegions:
    def test_only_the_region_changes(self, faces):
        src = photo()
        out, details = stylizer(FlatNoFaces())(src, regions=["skin"], return_details=True)
        out = np.asarray(out)
        assert set(details.masks) == {"skin"} and details.masks["skin"].shape == (H, W)
        weight = details.weight
        assert weight.max() == 1.0 and np.array_equal(out[weight == 0], src[weight == 0])
        assert out[60, 70].tolist() == [level(IMAGE_VALUE)] * 3
        x0, y0, x1, y1 = (int(v) for v in BOX)
        assert np.array_equal(out[:y0 - 10], src[:y0 - 10]) and np.array_equal(out[:, x1 + 10:], src[:, x1 + 10:])

    def test_per_region_strength(self, faces):
        src = photo(200)
        out, details = stylizer(FlatNoFaces())(src, regions=["skin", "background"],
                                              strength={"skin": 0.5, "background": 0.0}, return_details=True)
        out = np.asarray(out, dtype=float)
        assert abs(out[60, 70, 0] - (200 + (level(IMAGE_VALUE) - 200) * 0.5)) <= 1
        assert np.array_equal(out[2, 2], src[2, 2]) and details.weight[2, 2] == 0.0


class TestComposite:
    def test_harmonize_moves_the_untouched_area_only_when_asked(self, faces):
        src = photo()
        st = stylizer(FlatNoFaces())
        plain, details = st(src, regions=["skin"], return_details=True)
        outside = details.weight == 0
        assert np.array_equal(np.asarray(plain)[outside], src[outside])
        harmonized = np.asarray(st(src, regions=["skin"], harmonize=1.0), dtype=float)
        assert np.abs(harmonized[outside] - src[outside]).mean() > 10


class TestOutput:
    def test_rgba_keeps_alpha_and_size(self, tmp_path):
        rgba = np.dstack([photo(), np.tile(np.arange(W, dtype=np.uint8), (H, 1))])
        path = tmp_path / "alpha.png"
        Image.fromarray(rgba, "RGBA").save(path)
        out = stylizer(FlatNoFaces())(path)
        assert out.mode == "RGBA" and out.size == (W, H)
        assert np.array_equal(np.asarray(out)[..., 3], rgba[..., 3])

    def test_details_time_every_step_that_ran(self, faces):
        _, details = stylizer()(photo(), regions=["skin"], return_details=True)
        assert list(details.timings) == ["detect faces", "whole image", "face network", "parse regions", "composite"]
        assert all(t >= 0 for t in details.timings.values())

    def test_the_face_pass_is_skipped_when_only_the_background_changes(self, faces):
        """Its work would be thrown away: no pixel of a head changes."""
        out, details = stylizer()(photo(), regions=["background"], return_details=True)
        assert "face network" not in details.timings and details.faces
        assert np.array_equal(np.asarray(out)[details.weight == 0], photo()[details.weight == 0])


class TestDevices:
    def test_device_errors_are_clear(self, monkeypatch):
        from portrait_stylize.runtime.devices import resolve_device

        assert resolve_device("cpu") == torch.device("cpu")
        with pytest.raises(ValueError, match="invalid device 'gpu0'"):
            ps.load_style("toon", device="gpu0")
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        with pytest.raises(ValueError, match="device 'cuda' is not available on this machine"):
            resolve_device("cuda")

    @pytest.mark.parametrize("cuda,mps,expected", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
    def test_default_order_is_cuda_then_mps_then_cpu(self, monkeypatch, cuda, mps, expected):
        from portrait_stylize.runtime.devices import resolve_device

        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
        assert resolve_device(None).type == expected
        if expected == "cpu":  # and what a style gets by default
            assert ps.load_style("toon").device.type == "cpu"


class Doubler(nn.Module):
    """A runnable sub-network: a 1x1 convolution, exportable like a TTN."""

    size_multiple = 2

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward_aligned(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_aligned(x)


@register_architecture
class ThirdArchitecture(StyleNetwork):
    """A third architecture, defined here and nowhere else: registering it is all it takes."""

    arch = "test-third"

    def __init__(self, gain: float = 0.5, **conventions: Any) -> None:
        super().__init__(**conventions)
        self.gain = gain
        self.net = Doubler()
        with torch.no_grad():
            self.net.conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1) * gain)
            self.net.conv.bias.zero_()

    def architecture_config(self) -> dict[str, Any]:
        return {"gain": self.gain}

    def subnetworks(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def forward(self, image, part="image", reference=None, runners: Mapping | None = None):
        self.check_call(part, reference)
        run = runners["net"] if runners is not None else self.net
        return self.from_network(run(self.to_network(image)))


class TestStyleInterface:
    def test_third_architecture_saves_loads_runs_and_exports(self, tmp_path, monkeypatch):
        assert ARCHITECTURES["test-third"] is ThirdArchitecture
        folder = save_style(ThirdArchitecture(gain=0.5, name="third", input_range=[0.0, 1.0]), tmp_path / "third")
        assert json.loads((folder / "config.json").read_text())["arch"] == "test-third"
        assert isinstance(load_style_folder(folder), ThirdArchitecture)
        src = photo(200)
        for backend in ("torch", "onnx"):
            st = ps.load_style(folder, backend=backend)
            assert st.spec.kind == "local" and st.name == "third" and st.backend == backend
            assert np.abs(np.asarray(st(src), dtype=int) - 100).max() <= 1
        written = export_onnx(ps.load_style(folder).model, tmp_path / "onnx")
        assert sorted(p.name for p in written) == ["config.json", "net.onnx"]

    def test_unknown_arch_is_a_clear_error(self, tmp_path):
        folder = save_style(ThirdArchitecture(), tmp_path / "x")
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "arch": "nope"}))
        with pytest.raises(ps.InvalidStyleError, match="unsupported arch 'nope'.*test-third"):
            ps.load_style(folder)

    def test_architecture_names_are_unique(self):
        with pytest.raises(ValueError, match="already registered"):
            register_architecture(type("Clash", (ThirdArchitecture,), {}))

    def test_export_onnx_of_a_reference_style_is_one_clear_line(self, tmp_path, capsys):
        from portrait_stylize.models import ReferenceStyle

        folder = save_style(ReferenceStyle(generator={"attn_tokens": 256}, reference_size=16, name="ref"),
                            tmp_path / "ref")
        assert main(["export-onnx", str(folder), "-o", str(tmp_path / "onnx")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ref (arch 'u2lffm') has no sub-networks") and err.count("\n") == 1
        assert not (tmp_path / "onnx").exists()


class TestCaches:
    def test_a_slow_load_holds_back_only_its_own_style(self, monkeypatch):
        """A first download (the web demo's first style, fetched in the background) must not hold
        every other request; two requests for the loading style wait for the one load."""
        import threading
        import time

        pipeline.STYLIZERS.clear()
        release, calls, real = threading.Event(), [], pipeline.load_network

        def load_network(spec):
            calls.append(spec.name)
            if spec.name == "comic":
                release.wait(30)
            return real(spec)

        monkeypatch.setattr(pipeline, "load_network", load_network)
        got = []
        slow = [threading.Thread(target=lambda: got.append(pipeline.cached_stylizer("comic"))) for _ in range(2)]
        for thread in slow:
            thread.start()
        time.sleep(0.2)
        start = time.monotonic()
        assert pipeline.cached_stylizer("toon").name == "toon"
        assert time.monotonic() - start < 5 and not got
        release.set()
        for thread in slow:
            thread.join(30)
        assert len(got) == 2 and got[0] is got[1] and calls.count("comic") == 1

    def test_stylize_reuses_one_loaded_style(self):
        pipeline.STYLIZERS.clear()
        loads = pipeline.STYLIZERS.loads
        first = ps.stylize(photo(), "sketch")
        assert np.array_equal(np.asarray(ps.stylize(photo(), "sketch")), np.asarray(first))
        assert pipeline.STYLIZERS.loads == loads + 1

    def test_a_style_is_loaded_once_however_it_is_asked_for(self):
        """The three ways the web demo asked (no face backend, ``None``, the resolved name), the
        default style by ``None`` and by name, and the device by ``None`` and by name: one load."""
        from portrait_stylize.faces import resolve_face_backend
        from portrait_stylize.loading import resolve_spec

        pipeline.STYLIZERS.clear()
        loads = pipeline.STYLIZERS.loads
        default = resolve_spec(None).name
        asked = [pipeline.cached_stylizer(default), pipeline.cached_stylizer(default, face_backend=None),
                 pipeline.cached_stylizer(default, face_backend=resolve_face_backend(None)),
                 pipeline.cached_stylizer(None), pipeline.cached_stylizer(default, device="cpu", backend="auto")]
        assert all(st is asked[0] for st in asked) and pipeline.STYLIZERS.loads == loads + 1
        # A different option is a different stylizer; a full cache drops the least recently used.
        other = pipeline.cached_stylizer(default, min_face_size=64)
        assert other is not asked[0] and other.min_face_size == 64 and pipeline.STYLIZERS.loads == loads + 2
        assert pipeline.cached_stylizer(default) is asked[0]  # now the most recently used
        for size in range(3):
            pipeline.cached_stylizer(default, min_face_size=100 + size)
        assert pipeline.cached_stylizer(default) is asked[0]
        assert pipeline.cached_stylizer(default, min_face_size=64) is not other  # evicted, loaded again
        with pytest.raises(ps.InvalidArgumentError, match="tile_sise"):
            pipeline.cached_stylizer(default, tile_sise=256)

    def test_face_backends_are_cached_on_the_resolved_name(self, monkeypatch):
        from portrait_stylize import faces as faces_module

        monkeypatch.setattr(faces_module, "resolve_face_backend",
                            lambda name=None: "mediapipe" if name in (None, "auto", "mediapipe") else name)
        assert faces_module.get_face_backend(None) is faces_module.get_face_backend("auto")
        assert faces_module.get_face_backend("auto") is faces_module.get_face_backend("mediapipe", "cpu")

    def test_the_face_backend_runs_on_the_stylizers_device(self, monkeypatch):
        """One backend per device: a stylizer asks for its own (a GPU stylizer finds faces on the GPU)."""
        from portrait_stylize import faces as faces_module

        monkeypatch.setattr(faces_module, "_backend_instance", lambda resolved, device: f"{resolved} on {device}")
        monkeypatch.setattr(pipeline, "get_face_backend", faces_module.get_face_backend)
        st = stylizer()
        assert st.face_backend == f"{faces_module.resolve_face_backend(None)} on {st.device}"
        assert faces_module.get_face_backend("mediapipe", "meta") == "mediapipe on meta"


class TestMaxShortSide:
    def test_works_on_a_smaller_copy_and_returns_the_input_size(self):
        model = FlatNoFaces()
        out = stylizer(model, max_short_side=60)(photo())
        assert out.size == (W, H) and model.calls[0][1] == (1, 3, 60, 80)
        assert np.all(np.asarray(out) == level(IMAGE_VALUE))

    def test_small_images_are_untouched_and_bad_values_refused(self):
        model = FlatNoFaces()
        stylizer(model, max_short_side=720)(photo())
        assert model.calls[0][1] == (1, 3, H, W)
        with pytest.raises(ValueError, match="max_short_side"):
            stylizer(max_short_side=0)
