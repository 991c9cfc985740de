"""Face detection, landmarks, alignment and parsing on the real photos in ../shared/fixtures/faces."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import portrait_stylize as ps
from portrait_stylize.faces import align, enlarge_box, get_face_backend, resolve_face_backend
from portrait_stylize.faces import facexlib_backend as fx
from portrait_stylize.faces.regions import check_regions
from portrait_stylize.imaging.io import load_image

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _rgb(path) -> np.ndarray:
    return np.asarray(load_image(path).convert("RGB"))


def _whole_photos(fixtures) -> list[tuple[Path, int]]:
    """Every photo of ``faces/whole`` with its face count from ``faces.json`` (which lists them all)."""
    folder = fixtures / "faces" / "whole"
    expected = json.loads((folder / "faces.json").read_text())
    assert sorted(p.name for p in folder.glob("*.*g")) == sorted(expected) and len(expected) == 3
    return [(folder / name, count) for name, count in sorted(expected.items())]


@pytest.fixture(scope="module")
def mediapipe():
    return get_face_backend("mediapipe")


def test_face_counts_on_every_fixture_photo(fixtures, mediapipe):
    expected = json.loads((fixtures / "faces" / "whole" / "faces.json").read_text())
    photos = [(p, expected[p.name]) for p in sorted((fixtures / "faces" / "whole").glob("*")) if p.name in expected]
    photos += [(p, 1) for folder in ("cropped", "selfies") for p in sorted((fixtures / "faces" / folder).glob("*"))]
    counts = {p.name: (len(mediapipe.detect(_rgb(p))), n) for p, n in photos}
    assert len(photos) == 18 and all(found == n for found, n in counts.values()), counts


def test_detect_many_finds_what_detect_finds_on_each_image(fixtures, mediapipe):
    """Video frames are detected together: the same faces as one by one (networks in one batch
    round differently, by far less than a pixel), also with an image too small for any face."""
    images = [_rgb(path) for path, _ in _whole_photos(fixtures)]
    images += [_rgb(fixtures / "faces" / "selfies" / "a.jpg"), np.zeros((10, 12, 3), np.uint8)]
    together = mediapipe.detect_many(images)
    assert [len(faces) for faces in together] == [len(mediapipe.detect(image)) for image in images]
    assert [len(faces) for faces in together] == [count for _, count in _whole_photos(fixtures)] + [1, 0]
    for image, faces in zip(images, together):
        for face, alone in zip(faces, mediapipe.detect(image)):
            assert np.abs(np.subtract(face.box, alone.box)).max() < 0.01
            assert np.abs(face.landmarks - alone.landmarks).max() < 0.01
            assert np.abs(face.mesh - alone.mesh).max() < 0.01


def test_autocontrast_is_pils_bit_for_bit(fixtures):
    """The detection pass on a faded copy uses its own auto-contrast (OpenCV's histograms and lookup):
    PIL's ``ImageOps.autocontrast(cutoff=1)``, as the backend used before, on every fixture photo, on
    noise, on a low-contrast picture, on a flat one and on one with a single bright pixel."""
    from PIL import Image, ImageOps

    from portrait_stylize.faces.mediapipe_backend import _autocontrast

    rng = np.random.default_rng(0)
    spot = np.zeros((16, 17, 3), np.uint8)
    spot[3, 4] = 255
    images = [rng.integers(0, 256, (64, 80, 3), dtype=np.uint8), rng.integers(100, 140, (300, 200, 3), dtype=np.uint8),
              np.full((20, 20, 3), 7, np.uint8), spot]
    images += [_rgb(p) for p in sorted((fixtures / "faces").glob("*/*.*g"))[::3]]
    for image in images:
        assert np.array_equal(_autocontrast(image), np.asarray(ImageOps.autocontrast(Image.fromarray(image), cutoff=1)))


def test_faces_left_to_right_with_unswapped_landmarks(fixtures, mediapipe):
    for path, count in _whole_photos(fixtures):
        faces = mediapipe.detect(_rgb(path))
        assert len(faces) == count >= 2, path.name
        centres = [(f.box[0] + f.box[2]) / 2 for f in faces]
        assert centres == sorted(centres), path.name
        for face in faces:
            left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
            assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0], path.name
            assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1]), path.name
            x0, y0, x1, y1 = face.box
            assert all(x0 <= x <= x1 and y0 <= y <= y1 for x, y in face.landmarks), path.name
            assert face.mesh is not None and face.mesh.shape == (478, 2)


def test_alignment_round_trip_within_1_5_px(fixtures, mediapipe):
    """Blobs painted at the landmarks, warped into the 288² crop and back, land on the landmarks."""
    for name, count in (("Blake_Lively.jpg", 2), ("10045.png", 3)):
        rgb = _rgb(fixtures / "faces" / "whole" / name)
        h, w = rgb.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w]
        faces = mediapipe.detect(rgb)
        assert len(faces) == count, name
        for face in faces:
            matrix = align.crop_transform(face.landmarks)
            assert np.abs(align.apply(matrix, face.landmarks) - align.template()).max() < 12  # a good fit
            blobs = sum(np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.0**2)) for x, y in face.landmarks)
            crop = align.warp_to_crop(blobs.astype(np.float32), matrix)
            window = align.crop_footprint(matrix, (h, w))
            back = align.warp_from_crop(crop, matrix, window)
            for x, y in face.landmarks:
                gx, gy = np.mgrid[window[0]:window[2], window[1]:window[3]].transpose(0, 2, 1)
                near = ((gx - x) ** 2 + (gy - y) ** 2 <= 6**2) * back
                centroid = np.array([(near * gx).sum(), (near * gy).sum()]) / near.sum()
                assert np.hypot(*(centroid - (x, y))) <= 1.5, (name, centroid, (x, y))


def test_eye_brow_lip_masks_inside_their_face_and_on_the_right_side(fixtures, mediapipe):
    for path, count in _whole_photos(fixtures):
        rgb = _rgb(path)
        faces = mediapipe.detect(rgb)
        parsing = mediapipe.parse(rgb, faces)
        assert len(faces) == len(parsing.faces) == count, path.name
        assert parsing.image_masks["background"].shape == rgb.shape[:2]
        for face, parsed in zip(faces, parsing.faces):
            x0, y0 = parsed.window[:2]
            bx0, by0, bx1, by1 = face.box
            for name in ("eyes", "brows", "lips"):
                ys, xs = np.nonzero(parsed.masks[name])
                xs, ys = xs + x0, ys + y0
                assert xs.min() >= bx0 and xs.max() <= bx1 and ys.min() >= by0 and ys.max() <= by1, (path.name, name)
            ys, xs = np.nonzero(parsed.masks["eyes"])
            left, right = face.landmarks[0], face.landmarks[1]
            mid = (left[0] + right[0]) / 2 - x0
            assert abs(xs[xs < mid].mean() + x0 - left[0]) < 0.15 * face.size  # image-left eye mask at the left eye
            assert abs(xs[xs >= mid].mean() + x0 - right[0]) < 0.15 * face.size
            brow_y = np.nonzero(parsed.masks["brows"])[0].mean()
            assert brow_y < ys.mean() < np.nonzero(parsed.masks["lips"])[0].mean()


def test_region_names_are_checked_against_the_backend():
    with pytest.raises(ValueError, match="mediapipe face backend cannot see 'ears', 'neck'"):
        check_regions(["hair", "ears", "neck"], get_face_backend("mediapipe").regions, "mediapipe")
    with pytest.raises(ValueError, match="unknown region.*'beard'"):
        check_regions(["beard"], fx.REGIONS, "facexlib")
    assert check_regions(["ears", "clothes"], fx.REGIONS, "facexlib") == ["ears", "clothes"]


def test_bisenet_labels_translate_as_its_class_list_says():
    labels = np.repeat(np.arange(19, dtype=np.uint8), 3)[None].repeat(2, 0)  # each class in a 3-px stripe
    masks = fx.labels_to_masks(labels)
    classes_of = {"skin": [1], "brows": [2, 3], "eyes": [4, 5], "ears": [7, 8], "nose": [10], "mouth": [11],
                  "lips": [12, 13], "neck": [14], "clothes": [16], "hair": [17], "background": [0]}
    assert set(masks) == set(classes_of)
    for region, ids in classes_of.items():
        np.testing.assert_array_equal(masks[region], np.isin(labels, ids), err_msg=region)
    unmapped = np.isin(labels, [6, 9, 15, 18])  # eyeglasses, earrings, necklace, hat
    assert not any((m & unmapped).any() for m in masks.values())


@pytest.fixture
def facexlib_random_weights(tmp_path, monkeypatch):
    """facexlib's two networks with random weights, saved where it looks; downloading is an error."""
    import facexlib.utils.misc as misc
    from facexlib.detection.retinaface import RetinaFace
    from facexlib.parsing.bisenet import BiSeNet

    torch.manual_seed(0)
    torch.save(RetinaFace(network_name="resnet50", device="cpu").state_dict(), tmp_path / fx.WEIGHT_FILES[0])
    torch.save(BiSeNet(num_class=19).state_dict(), tmp_path / fx.WEIGHT_FILES[1])
    monkeypatch.setattr(misc, "download_url_to_file", lambda *a, **k: pytest.fail("facexlib tried to download"))
    monkeypatch.setenv("PORTRAIT_STYLIZE_FACEXLIB_DIR", str(tmp_path))
    return tmp_path


@pytest.mark.slow
def test_facexlib_backend_wiring_offline(fixtures, facexlib_random_weights, monkeypatch):
    monkeypatch.delenv("PORTRAIT_STYLIZE_FACE_BACKEND", raising=False)
    assert resolve_face_backend("auto") == "facexlib"
    monkeypatch.setenv("PORTRAIT_STYLIZE_FACE_BACKEND", "mediapipe")
    assert resolve_face_backend() == "mediapipe"
    backend = fx.FacexlibBackend(facexlib_random_weights)
    rgb = _rgb(fixtures / "faces" / "whole" / "Blake_Lively.jpg")
    found = backend.detect(rgb)  # random weights: boxes anywhere (over 2000 of them), but well-formed ones
    assert len(found) >= 1
    assert all(f.landmarks.shape == (5, 2) and 0 <= f.score <= 1 for f in found)
    faces = get_face_backend("mediapipe").detect(rgb)
    parsing = backend.parse(rgb, faces)
    assert len(faces) == len(parsing.faces) == 2 and parsing.image_masks["background"].shape == rgb.shape[:2]
    for face, parsed in zip(faces, parsing.faces):
        x0, y0, x1, y1 = parsed.window
        assert x0 < face.landmarks[:, 0].min() and face.landmarks[:, 0].max() < x1
        assert parsed.masks and all(m.shape == (y1 - y0, x1 - x0) and m.dtype == bool for m in parsed.masks.values())
        assert "background" not in parsed.masks


def test_auto_is_mediapipe_without_facexlib_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("PORTRAIT_STYLIZE_FACEXLIB_DIR", str(tmp_path))
    monkeypatch.delenv("PORTRAIT_STYLIZE_FACE_BACKEND", raising=False)
    assert resolve_face_backend() == "mediapipe"
    with pytest.raises(ValueError, match="unknown face backend 'dlib'"):
        resolve_face_backend("dlib")


def test_public_detect_faces(fixtures):
    faces = ps.detect_faces(fixtures / "faces" / "whole" / "00.jpg", backend="mediapipe")
    assert len(faces) == 2
    big = enlarge_box(faces[0].box, 1.25)
    assert big[2] - big[0] == pytest.approx(1.25 * (faces[0].box[2] - faces[0].box[0]))


def test_finding_and_parsing_faces_needs_no_mediapipe(portraits):
    """With the mediapipe package made unimportable, the default backend still finds and parses
    faces: its models ship with the package and run in PyTorch."""
    code = ("import importlib.abc, sys\n"
            "class Block(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name.partition('.')[0] == 'mediapipe':\n"
            "            raise ImportError('mediapipe is blocked')\n"
            "sys.meta_path.insert(0, Block())\n"
            "import portrait_stylize as ps\n"
            f"faces = ps.detect_faces({str(portraits[1])!r}, backend='mediapipe')\n"
            f"parsing = ps.parse_faces({str(portraits[1])!r}, faces, backend='mediapipe')\n"
            "print(len(faces), ','.join(sorted(parsing.faces[0].masks)), 'mediapipe' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    count, regions, imported = result.stdout.split()
    assert count == "2" and {"skin", "lips", "eyes"} <= set(regions.split(",")) and imported == "False"


def test_face_sizes_skip_the_face_mesh(fixtures, mediapipe, monkeypatch):
    """What a style's scale needs: the faces' box sides, as detect gives them, without the mesh."""
    photos = [path for path, _ in _whole_photos(fixtures)][:3]
    expected = [sorted(face.size for face in mediapipe.detect(_rgb(path))) for path in photos]
    monkeypatch.setattr(mediapipe, "_meshes", lambda crops: pytest.fail("the face mesh ran"))
    for path, sizes in zip(photos, expected):
        found = sorted(mediapipe.face_sizes(_rgb(path)))
        assert len(found) == len(sizes) >= 2 and np.allclose(found, sizes, rtol=0.2), (path.name, found, sizes)
