"""Region control end to end on real photos: only the chosen regions change, without seams."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import portrait_stylize as ps
from portrait_stylize.convert.ttn_releases import read_tflite, ttn_from_weights
from portrait_stylize.faces import enlarge_box, get_face_backend
from portrait_stylize.faces.regions import region_feather
from portrait_stylize.imaging.blending import (
    FACE_FEATHER,
    composite,
    dilate,
    erode,
    feather,
    feather_width,
    harmonize,
    histogram_luts,
)
from portrait_stylize.imaging.io import load_image
from portrait_stylize.models import TTNStyle

from helpers import gray

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def whitebox(fixtures) -> ps.Stylizer:
    """A real trained style (White-box weights, BGR) so textures and seams look like real use."""
    path = fixtures / "weights" / "whitebox_cartoon_gan_dr.tflite"
    model = TTNStyle(head=ttn_from_weights(read_tflite(path), str(path)).config, channel_order="bgr").eval()
    model.head.load_state_dict(ttn_from_weights(read_tflite(path), str(path)).state_dict())
    return ps.Stylizer(model, ps.StyleSpec(name="whitebox", kind="local"), face_backend="mediapipe")


@pytest.fixture(scope="module")
def blake(fixtures):
    path = fixtures / "faces" / "whole" / "Blake_Lively.jpg"
    return path, np.asarray(load_image(path).convert("RGB"))


def _region_bounds(rgb, name):
    """Union over faces of the binary region dilated / eroded by that face's feather width."""
    backend = get_face_backend("mediapipe")
    faces = backend.detect(rgb)
    parsing = backend.parse(rgb, faces)
    grown, core = np.zeros(rgb.shape[:2], bool), np.zeros(rgb.shape[:2], bool)
    for face, parsed in zip(faces, parsing.faces):
        x0, y0, x1, y1 = parsed.window
        radius = region_feather(parsed.masks[name], face.size)
        pad = radius + 1
        local = np.zeros((y1 - y0 + 2 * pad, x1 - x0 + 2 * pad), bool)
        local[pad:-pad, pad:-pad] = parsed.masks[name]
        gy0, gx0 = y0 - pad, x0 - pad
        big = dilate(local, radius)
        ys, xs = np.nonzero(big)
        keep = (ys + gy0 >= 0) & (xs + gx0 >= 0) & (ys + gy0 < rgb.shape[0]) & (xs + gx0 < rgb.shape[1])
        grown[ys[keep] + gy0, xs[keep] + gx0] = True
        ys, xs = np.nonzero(erode(local, radius))
        core[ys + gy0, xs + gx0] = True
    return faces, grown, core


def test_lips_only(whitebox, blake):
    path, rgb = blake
    full = np.asarray(whitebox(path))
    out = np.asarray(whitebox(path, regions=["lips"]))
    faces, grown, core = _region_bounds(rgb, "lips")
    assert core.sum() > 200 and (out[~grown] == rgb[~grown]).all()
    assert (out[core] == full[core]).all()
    boxes = np.zeros(rgb.shape[:2], bool)
    for face in faces:
        x0, y0, x1, y1 = (round(v) for v in enlarge_box(face.box, 1.25, rgb.shape[:2]))
        boxes[y0:y1, x0:x1] = True
    assert (out[~boxes] == rgb[~boxes]).all()


def test_face_regions_never_leave_the_enlarged_face_boxes(whitebox, blake):
    path, rgb = blake
    out, details = whitebox(path, regions=["skin", "brows", "eyes", "nose", "lips", "mouth"], return_details=True)
    boxes = np.zeros(rgb.shape[:2], bool)
    for face in details.faces:
        x0, y0, x1, y1 = (round(v) for v in enlarge_box(face.box, 1.25, rgb.shape[:2]))
        boxes[y0:y1, x0:x1] = True
    out = np.asarray(out)
    changed = (out != rgb).any(-1)
    assert changed[boxes].mean() > 0.2 and not changed[~boxes].any()


def test_no_regions_stylizes_everything(whitebox, blake):
    path, rgb = blake
    out, details = whitebox(path, return_details=True)
    assert details.stylized_faces == [1, 2] and len(details.crops) == 2
    assert (np.abs(np.asarray(out, float) - rgb).max(-1) > 0).mean() > 0.97
    bare = np.asarray(ps.Stylizer(whitebox.model, whitebox.spec, min_face_size=65536)(path))  # no face pass
    boxes = [tuple(round(v) for v in f.box) for f in details.faces]
    differs = [np.abs(np.asarray(out, float) - bare)[y0:y1, x0:x1].mean() for x0, y0, x1, y1 in boxes]
    assert min(differs) > 1.0  # each face was re-stylized by the aligned head pass


def test_no_visible_seam(whitebox, blake):
    """Mean gradient across the feather band <= 1.5x that of the bands just inside and outside."""
    path, rgb = blake
    out, details = whitebox(path, regions=["skin"], return_details=True)
    weight = details.weight
    luma = gray(out)
    grad = np.hypot(*np.gradient(luma))
    band = (weight > 0.05) & (weight < 0.95)
    radius = feather_width(min(f.size for f in details.faces), FACE_FEATHER)
    inner = (weight >= 0.95) & dilate(band, radius) & ~band
    outer = (weight <= 0.05) & dilate(band, radius) & ~band
    assert band.sum() > 1000 and inner.sum() > 1000 and outer.sum() > 1000
    assert grad[band].mean() <= 1.5 * (grad[inner].mean() + grad[outer].mean()) / 2


def test_faces_pick_which_face(whitebox, blake):
    path, rgb = blake
    out, details = whitebox(path, regions=["lips", "eyes"], faces=[2], return_details=True)
    x0, y0, x1, y1 = (round(v) for v in enlarge_box(details.faces[0].box, 1.0, rgb.shape[:2]))
    out = np.asarray(out)
    assert (out[y0:y1, x0:x1] == rgb[y0:y1, x0:x1]).all()
    assert details.stylized_faces == [2] and (out != rgb).any()
    with pytest.raises(ValueError, match="there is no face 3: 2 face"):
        whitebox(path, regions=["lips"], faces=[3])


def test_strength_per_region_and_harmonize(whitebox, blake):
    path, rgb = blake
    full = np.asarray(whitebox(path), float)
    half, details = whitebox(path, regions=["lips", "hair"], strength={"lips": 0.5}, return_details=True)
    core = details.masks["lips"] >= 1.0
    expected = rgb[core] + (full[core] - rgb[core]) * 0.5
    assert np.abs(np.asarray(half, float)[core] - expected).max() <= 1.0
    untouched = details.weight == 0
    harmonized = np.asarray(whitebox(path, regions=["lips", "hair"], harmonize=1.0), float)
    # The untouched area's colours move towards the stylized picture's.
    before = np.abs(np.sort(rgb[untouched], 0).mean(0) - np.sort(full.reshape(-1, 3), 0).mean(0)).sum()
    after = np.abs(np.sort(harmonized[untouched], 0).mean(0) - np.sort(full.reshape(-1, 3), 0).mean(0)).sum()
    assert (harmonized[untouched] != rgb[untouched]).any() and after < before
    with pytest.raises(ValueError, match="strength for 'lips' must be a finite number in"):
        whitebox(path, regions=["lips"], strength={"lips": 2})
    with pytest.raises(ValueError, match="harmonize must be a finite number"):
        whitebox(path, regions=["lips"], harmonize=-1)


def test_small_faces_are_skipped_and_reported(whitebox, blake):
    path, rgb = blake
    st = ps.Stylizer(whitebox.model, whitebox.spec, face_backend="mediapipe", min_face_size=10_000)
    out, details = st(path, regions=["lips"], return_details=True)
    assert [n for n, _ in details.skipped] == [1, 2] and "below min_face_size" in details.skipped[0][1]
    assert (np.asarray(out) == rgb).all()


def test_feather_and_composite_are_exact_where_promised():
    mask = np.zeros((90, 120), bool)
    mask[20:60, 30:100] = True
    soft = feather(mask, 7)
    assert soft[~dilate(mask, 7)].max() == 0 and soft[erode(mask, 7)].min() == 1
    rng = np.random.default_rng(0)
    photo, stylized = rng.random((2, 90, 120, 3), dtype=np.float32)
    out = composite(photo, stylized, soft, 7)
    assert (out[soft == 0] == photo[soft == 0]).all() and (out[soft == 1] == stylized[soft == 1]).all()
    matched = harmonize(photo * 0.5, histogram_luts(photo * 0.5, stylized), 1.0)
    assert abs(np.sort(matched, axis=None).mean() - np.sort(stylized, axis=None).mean()) < 0.01


@pytest.mark.slow
def test_face_and_region_machinery_adds_at_most_30_percent():
    import sys

    from helpers import REPO

    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_pipeline import measure

    # Against the float32 pass: with bf16 on AMX (Sapphire Rapids) the network runs 3.4x faster
    # while faces and regions cost the same ~0.22 s, so "auto"'s ratio depends on the CPU's units
    # (0.22 on Zen 4, 0.42 there; docs/performance.md).
    result = measure(repeats=9, backend="torch")
    if result["added_share"] > 0.3:
        # A busy spell on a shared machine slows the face and region code more than the network
        # (a CI run in which every test took 1.3-1.6x as long measured 0.32; quiet, 0.26-0.28):
        # measured once more before failing.
        result = min(result, measure(repeats=9, backend="torch"), key=lambda r: r["added_share"])
    assert result["faces"] == 1 and result["added_share"] <= 0.3, result
    assert result["full"] / result["bare"] <= 1.6, result  # raw ratio, with the machine's noise


class TestCompositeInBlocks:
    """:func:`composite` blends block by block (bounded memory at 4K) as if in one piece."""

    @pytest.mark.parametrize("radius", [3, 20, 60])
    def test_small_blocks_match_one_block(self, monkeypatch, radius):
        import portrait_stylize.imaging.blending as regions

        mask = np.zeros((700, 900), np.uint8)
        cv2.circle(mask, (450, 350), 250, 1, -1)
        soft = feather(mask.astype(bool), radius)
        rng = np.random.default_rng(radius)
        photo, stylized = rng.random((2, 700, 900, 3), dtype=np.float32)
        one = composite(photo, stylized, soft, radius)
        monkeypatch.setattr(regions, "BLEND_BLOCK", 128)  # 6 x 8 blocks over the band
        blocks = composite(photo, stylized, soft, radius)
        # Measured: 0 for radii up to 20, 0.13 grey levels at 60 (the coarsest band's tails).
        assert np.abs(one - blocks).max() * 255 <= 0.25
        assert (blocks[soft == 0] == photo[soft == 0]).all() and (blocks[soft == 1] == stylized[soft == 1]).all()
        # Without the margin the block edges show: the check above can fail.
        monkeypatch.setattr(regions, "BLEND_MARGIN", 0)
        assert np.abs(one - composite(photo, stylized, soft, radius)).max() * 255 > 1

    def test_writes_into_the_photo_when_asked(self):
        soft = feather(np.pad(np.ones((40, 40), bool), 30), 5)
        rng = np.random.default_rng(1)
        photo, stylized = rng.random((2, 100, 100, 3), dtype=np.float32)
        expected = composite(photo, stylized, soft, 5)
        buffer = photo.copy()
        assert composite(buffer, stylized, soft, 5, out=buffer) is buffer
        assert (buffer == expected).all()


class TestHarmonizeAndMixInPlace:
    """:func:`harmonize` and :func:`mix` give the same pixels in place as into a new array."""

    def test_harmonize_in_place(self):
        rng = np.random.default_rng(2)
        photo, stylized = rng.random((2, 600, 70, 3), dtype=np.float32)  # more rows than one chunk
        photo *= 0.5
        luts = histogram_luts(photo, stylized, np.ones(photo.shape[:2], bool))
        fresh = harmonize(photo, luts, 0.7)
        assert not np.allclose(fresh, photo)
        buffer = photo.copy()
        assert harmonize(buffer, luts, 0.7, out=buffer) is buffer and (buffer == fresh).all()
        assert (harmonize(photo, None, 0.7) == photo).all() and (harmonize(photo, luts, 0.0) == photo).all()

    def test_mix_in_place_and_per_pixel(self):
        from portrait_stylize.imaging.blending import mix

        rng = np.random.default_rng(3)
        photo, stylized = rng.random((2, 30, 40, 3), dtype=np.float32)
        amount = rng.random((30, 40), dtype=np.float32)
        expected = photo + (stylized - photo) * amount[..., None]
        buffer = stylized.copy()
        assert mix(photo, buffer, amount, out=buffer) is buffer and (buffer == expected).all()
        assert (mix(photo, stylized, 0.25) == photo + (stylized - photo) * np.float32(0.25)).all()
