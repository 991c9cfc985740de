"""The MediaPipe backend's graphs (faces/mediapipe_graphs.py) against MediaPipe 0.10.21 itself.

Stage by stage on the fixture photos in ../shared/fixtures/faces (portraits, selfies, group photos)
and on a composed group of 30 small faces: face detection (both models), the face mesh, selfie
segmentation; then the whole backend against the previous implementation, which is the same backend
code on MediaPipe's solutions (:class:`SolutionsBackend`, here only). Those tests need ``mediapipe``
(the oracle) and skip without it; the hand-made checks of anchors, suppression and ROI maths do not.
"""

from __future__ import annotations

import functools
import importlib.util
import math

import cv2
import numpy as np
import pytest

from portrait_stylize.faces import align
from portrait_stylize.faces import mediapipe_graphs as graphs
from portrait_stylize.faces.face import box_iou
from portrait_stylize.faces.mediapipe_backend import MediapipeBackend
from portrait_stylize.imaging.io import load_image

from helpers import compose_group

needs_mediapipe = pytest.mark.skipif(importlib.util.find_spec("mediapipe") is None,
                                     reason="mediapipe 0.10.21 (the oracle these tests compare with) is not installed")
#: Distances are compared as if each image's longer side were this long.
SIDE = 512
pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- hand-made checks (no MediaPipe) ---------------------------------------------------------------


def test_anchor_grids_of_both_detectors():
    short, full = graphs.ssd_anchors(graphs.SHORT_RANGE), graphs.ssd_anchors(graphs.FULL_RANGE)
    assert short.shape == (896, 4) and full.shape == (2304, 4)
    assert (short[:, 2:] == 1).all() and (full[:, 2:] == 1).all()  # fixed anchor size
    # Short range: 16² cells of stride 8 with 2 anchors each, then 8² cells of stride 16 with 6 (three layers).
    np.testing.assert_allclose(short[[0, 1, 2]], [[1 / 32, 1 / 32, 1, 1]] * 2 + [[3 / 32, 1 / 32, 1, 1]])
    np.testing.assert_allclose(short[511], [31 / 32, 31 / 32, 1, 1])
    np.testing.assert_allclose(short[[512, 517, 518]], [[1 / 16, 1 / 16, 1, 1]] * 2 + [[3 / 16, 1 / 16, 1, 1]])
    # Full range: 48² cells of stride 4, one anchor each, row by row.
    np.testing.assert_allclose(full[[0, 1, 48]], [[0.5 / 48, 0.5 / 48, 1, 1], [1.5 / 48, 0.5 / 48, 1, 1],
                                                  [0.5 / 48, 1.5 / 48, 1, 1]])


def test_box_decoding_on_hand_made_values():
    anchors = np.array([[0.25, 0.5, 1, 1]], np.float32)
    raw = np.zeros((1, 16), np.float32)
    raw[0, :4] = [12.8, -25.6, 64, 32]  # x, y offsets and w, h in input pixels of a 128² input
    raw[0, 4:6] = [-12.8, 0]  # first keypoint
    boxes, keypoints = graphs.decode_boxes(raw, anchors, 128.0)
    np.testing.assert_allclose(boxes[0], [0.35 - 0.25, 0.3 - 0.125, 0.35 + 0.25, 0.3 + 0.125], atol=1e-6)
    np.testing.assert_allclose(keypoints[0, :2], [[0.15, 0.5], [0.25, 0.5]], atol=1e-6)
    scores = graphs.detection_scores(np.array([[0.0], [1000.0], [-1000.0]], np.float32))
    np.testing.assert_allclose(scores, [0.5, 1, 0], atol=1e-7)
    assert scores[2] > 0  # clipped to -100 before the sigmoid: a tiny score, not 0


def test_weighted_nms_on_hand_made_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [6, 0, 16, 10]], np.float32)
    keypoints = np.array([[[2, 2]], [[3, 2]], [[25, 25]], [[9, 2]]], np.float32)
    scores = np.array([0.9, 0.6, 0.8, 0.7], np.float32)
    # Box 1 overlaps box 0 (IoU 0.82): merged into it. Box 3 overlaps it with IoU 0.25 (not above 0.3):
    # kept, and box 1, already merged, does not count for it.
    merged = graphs.weighted_nms(boxes, keypoints, scores)
    np.testing.assert_allclose(merged.scores, [0.9, 0.8, 0.7])
    np.testing.assert_allclose(merged.boxes, [[0.4, 0, 10.4, 10], [20, 20, 30, 30], [6, 0, 16, 10]], atol=1e-5)
    np.testing.assert_allclose(merged.keypoints[:, 0], [[2.4, 2], [25, 25], [9, 2]], atol=1e-5)
    # An empty box overlaps nothing, not even itself: MediaPipe keeps it and stops there.
    empty = graphs.weighted_nms(np.array([[5, 5, 5, 5], [0, 0, 9, 9]], np.float32), np.zeros((2, 1, 2), np.float32),
                                np.array([0.9, 0.8], np.float32))
    np.testing.assert_array_equal(empty.boxes, [[5, 5, 5, 5]])
    nothing = graphs.weighted_nms(np.zeros((0, 4), np.float32), np.zeros((0, 6, 2), np.float32), np.zeros(0))
    assert nothing.boxes.shape == (0, 4) and nothing.keypoints.shape == (0, 6, 2) and nothing.scores.shape == (0,)


def test_letterbox_removal():
    """A 200x100 image is letterboxed onto a square with 50-px bars above and below."""
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, :100] = 255  # left half white
    tensor, roi = graphs.image_to_tensor(image, None, 128, 128, (-1.0, 1.0), keep_aspect_ratio=True)
    assert (roi.width, roi.height) == (200, 200)
    assert tensor[0, 0, 0] == -1 and tensor[64, 10, 0] == 1 and tensor[64, 118, 0] == -1  # bar, white, black
    matrix = graphs.roi_to_image_matrix(roi, 200, 100)
    np.testing.assert_allclose([matrix @ (0.5, 0.5, 1), matrix @ (0, 0.25, 1), matrix @ (1, 0.75, 1)],
                               [[0.5, 0.5], [0, 0], [1, 1]], atol=1e-12)


def test_roi_of_a_tilted_face_levels_its_eyes_and_projects_back():
    """The eyes 20 px right and 20 px down from each other: the crop turns 45° clockwise; dots at the eyes
    land on one row of the 192² crop, and projecting them back gives the eyes again."""
    side = 200
    box = np.array([0.4, 0.2, 0.6, 0.4])  # 40x40 px
    eyes = np.array([[90, 50], [110, 70]], np.float64)
    roi = graphs.detection_to_roi(box, np.vstack([eyes / side, [[0.5, 0.4]] * 4]), side, side)
    assert roi.rotation == pytest.approx(math.pi / 4)
    assert (roi.x_center, roi.y_center, roi.width, roi.height) == pytest.approx((0.5, 0.3, 0.3, 0.3))
    image = np.zeros((side, side, 3), np.uint8)
    for x, y in eyes:
        cv2.circle(image, (int(x), int(y)), 2, (255, 255, 255), -1)
    crop, _ = graphs.image_to_tensor(image, roi.to_pixels(side, side), 192, 192, (0.0, 1.0), border_zero=False)
    count, _, _, centres = cv2.connectedComponentsWithStats((crop[..., 0] > 0.5).astype(np.uint8))
    assert count == 3
    dots = centres[1:][np.argsort(centres[1:, 0])]
    assert abs(dots[0, 1] - dots[1, 1]) < 0.5  # level
    back = graphs.project_landmarks(np.hstack([dots / 192, np.zeros((2, 1))]), roi)[:, :2] * side
    np.testing.assert_allclose(back, eyes, atol=1.0)


def test_normalize_radians():
    for angle, expected in ((0.0, 0.0), (math.pi, -math.pi), (-math.pi, -math.pi), (3 * math.pi / 2, -math.pi / 2),
                            (-5 * math.pi / 2, -math.pi / 2)):
        assert graphs.normalize_radians(angle) == pytest.approx(expected)


# --- stage by stage against MediaPipe -------------------------------------------------------------


def _rgb(path) -> np.ndarray:
    return np.asarray(load_image(path).convert("RGB"))


@pytest.fixture(scope="module")
def photos(fixtures) -> dict[str, np.ndarray]:
    """Every fixture photo with faces (4 crops, 11 selfies, 3 group photos) and the composed group of 30."""
    folder = fixtures / "faces"
    found = {f"{p.parent.name}/{p.name}": _rgb(p) for sub in ("cropped", "selfies", "whole")
             for p in sorted((folder / sub).glob("*")) if p.suffix.lower() in (".jpg", ".jpeg", ".png")}
    assert len(found) == 18
    found["composed group of 30"] = compose_group(fixtures, seed=0)[0]
    return found


@functools.cache
def _solutions():
    import mediapipe as mp

    s = mp.solutions
    return {"full": s.face_detection.FaceDetection(model_selection=1),
            "short": s.face_detection.FaceDetection(model_selection=0),
            "mesh": s.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                                         min_detection_confidence=0.3),
            "selfie": s.selfie_segmentation.SelfieSegmentation(model_selection=0)}


def _oracle_detections(image: np.ndarray, which: str) -> graphs.Detections:
    found = _solutions()[which].process(np.ascontiguousarray(image)).detections or []
    boxes = [(d.location_data.relative_bounding_box.xmin, d.location_data.relative_bounding_box.ymin,
              d.location_data.relative_bounding_box.xmin + d.location_data.relative_bounding_box.width,
              d.location_data.relative_bounding_box.ymin + d.location_data.relative_bounding_box.height) for d in found]
    keypoints = [[(k.x, k.y) for k in d.location_data.relative_keypoints] for d in found]
    return graphs.Detections(np.array(boxes, np.float32).reshape(-1, 4),
                             np.array(keypoints, np.float32).reshape(-1, 6, 2),
                             np.array([d.score[0] for d in found], np.float32))


def _oracle_mesh(image: np.ndarray) -> np.ndarray | None:
    found = _solutions()["mesh"].process(np.ascontiguousarray(image)).multi_face_landmarks
    return None if not found else np.array([(p.x, p.y, p.z) for p in found[0].landmark], np.float32)


def _pixels_at_side(image: np.ndarray) -> np.ndarray:
    """Normalised -> pixels of the image scaled so that its longer side is :data:`SIDE`."""
    h, w = image.shape[:2]
    return np.array([w, h]) * SIDE / max(h, w)


def _compare_detections(image: np.ndarray, ours: graphs.Detections, expected: graphs.Detections, name: str) -> list:
    """Asserts equal counts, box IoU >= 0.95, keypoints and box corners within 1 px at 512; returns the worst
    ``(IoU, px)`` per face."""
    assert len(ours.scores) == len(expected.scores), name
    scale = _pixels_at_side(image)
    worst = []
    for box, points, ref_box, ref_points in zip(ours.boxes, ours.keypoints, expected.boxes, expected.keypoints):
        iou = box_iou(box * np.tile(scale, 2), ref_box * np.tile(scale, 2))
        px = max(np.abs((points - ref_points) * scale).max(), np.abs((box - ref_box) * np.tile(scale, 2)).max())
        assert iou >= 0.95 and px <= 1.0, (name, iou, px)
        worst.append((iou, px))
    np.testing.assert_allclose(ours.scores, expected.scores, atol=1e-3, err_msg=name)
    return worst


@needs_mediapipe
def test_face_detection_solution_ignores_min_detection_confidence(photos):
    """Why :class:`graphs.Detector` carries a threshold of its own: MediaPipe 0.10.21's FaceDetection keeps
    its graphs' thresholds (0.6 full range, 0.5 short range) whatever ``min_detection_confidence`` says."""
    import mediapipe as mp

    image = photos["whole/10045.png"]
    for selection, detector in ((1, graphs.FULL_RANGE), (0, graphs.SHORT_RANGE)):
        answers = [[d.score[0] for d in mp.solutions.face_detection.FaceDetection(
            model_selection=selection, min_detection_confidence=confidence).process(image).detections or []]
            for confidence in (0.0, 0.9)]
        assert answers[0] == answers[1]
        assert len(graphs.detect_faces([image], detector, 0.0)[0].scores) > len(answers[0])  # lower ones exist


@needs_mediapipe
@pytest.mark.parametrize("which,detector", [("full", graphs.FULL_RANGE), ("short", graphs.SHORT_RANGE)])
def test_detection_matches_mediapipe(photos, which, detector):
    names = list(photos)
    ours = graphs.detect_faces(list(photos.values()), detector)
    faces = []
    for name, image, found in zip(names, photos.values(), ours):
        faces += _compare_detections(image, found, _oracle_detections(image, which), name)
    assert len(faces) >= (20 if which == "full" else 15)  # the comparisons compared faces


@needs_mediapipe
def test_short_range_detection_on_windows_matches_mediapipe(photos):
    """128-px windows of the composed group, several faces cut at the edges: what the sliding
    small-face search sees at each stride (test_group_faces.py compares the two)."""
    group = photos["composed group of 30"]
    tiles = [group[y:y + 128, x:x + 128] for y in range(0, 672, 104) for x in range(0, 872, 104)]
    faces = 0
    for i, (tile, found) in enumerate(zip(tiles, graphs.detect_faces(tiles, graphs.SHORT_RANGE))):
        faces += len(_compare_detections(tile, found, _oracle_detections(tile, "short"), f"tile {i}"))
    assert faces >= 20


@pytest.mark.slow
@needs_mediapipe
def test_face_mesh_matches_mediapipe(photos):
    """On every photo as it is and on the backend's 256² aligned crop of each face it finds."""
    backend = MediapipeBackend()
    images = dict(photos)
    for name, image in photos.items():
        for i, face in enumerate(backend.detect(image)):
            matrix = align.crop_transform(face.landmarks, 256, 0.6)
            images[f"{name} face {i}"] = align.warp_to_crop(image, matrix, 256)
    ours = graphs.face_mesh(list(images.values()), min_detection_confidence=0.3)
    compared = 0
    for (name, image), landmarks in zip(images.items(), ours):
        expected = _oracle_mesh(image)
        assert (landmarks is None) == (expected is None), name
        if expected is not None:
            assert landmarks.shape == (478, 3)
            assert np.abs((landmarks[:, :2] - expected[:, :2]) * _pixels_at_side(image)).max() <= 1.0, name
            assert np.abs(landmarks[:, 2] - expected[:, 2]).max() * SIDE <= 1.0, name  # z in image widths
            compared += 1
    assert compared >= 45


@needs_mediapipe
def test_selfie_segmentation_matches_mediapipe(photos):
    for (name, image), mask in zip(photos.items(), graphs.selfie_segmentation(list(photos.values()))):
        expected = _solutions()["selfie"].process(np.ascontiguousarray(image)).segmentation_mask
        assert mask.shape == expected.shape == image.shape[:2] and mask.dtype == np.float32
        assert np.abs(mask - expected).mean() <= 2 / 255, name


# --- the whole backend against the previous implementation ---------------------------------------


class SolutionsBackend(MediapipeBackend):
    """The previous implementation: the same backend on MediaPipe's solutions, configured as it configured them."""

    def _detections(self, images, detector):
        which = "full" if detector is graphs.FULL_RANGE else "short"
        return [_oracle_detections(image, which) for image in images]

    def _meshes(self, crops):
        return [_oracle_mesh(crop) for crop in crops]

    def _person(self, image):
        return _solutions()["selfie"].process(np.ascontiguousarray(image)).segmentation_mask


def _in_image(mask: np.ndarray, window, shape) -> np.ndarray:
    full = np.zeros(shape, bool)
    x0, y0, x1, y1 = window
    full[y0:y1, x0:x1] = mask
    return full


def _same_region(a: np.ndarray, b: np.ndarray) -> tuple[float, bool]:
    """``(IoU, whether they differ only along their edges)``: every pixel of one lies within 1 px of the other."""
    iou = (a & b).sum() / max((a | b).sum(), 1)
    kernel = np.ones((3, 3), np.uint8)
    near = not (a & ~cv2.dilate(b.astype(np.uint8), kernel).astype(bool)).any() and \
        not (b & ~cv2.dilate(a.astype(np.uint8), kernel).astype(bool)).any()
    return float(iou), near


class NudgedSolutionsBackend(SolutionsBackend):
    """The previous implementation with each face's 5 points moved by 1e-4 px before its mesh crop: the
    noise floor of the comparison (our detections match MediaPipe's to about 1e-7 of the image, which
    moves the points by about that much)."""

    def _refine(self, images, faces):
        for face in (face for image_faces in faces for face in image_faces):
            face.landmarks = face.landmarks + 1e-4
        return super()._refine(images, faces)


def _region_ious(backend: MediapipeBackend, reference: SolutionsBackend, photos: dict) -> dict[str, list[float]]:
    """Per region, the IoU of ``backend``'s mask with ``reference``'s for every face of every photo (and the
    whole-image background), after checking that both find the same faces, boxes, points and meshes."""
    ious: dict[str, list[float]] = {}
    for name, image in photos.items():
        faces, expected = backend.detect(image), reference.detect(image)
        assert len(faces) == len(expected), name
        parsing, expected_parsing = backend.parse(image, faces), reference.parse(image, expected)
        background, expected_background = parsing.image_masks["background"], expected_parsing.image_masks["background"]
        ious.setdefault("background", []).append(_same_region(background, expected_background)[0])
        for face, ref, parsed, ref_parsed in zip(faces, expected, parsing.faces, expected_parsing.faces):
            assert box_iou(face.box, ref.box) >= 0.95, name
            assert (face.mesh is None) == (ref.mesh is None), name
            scale = SIDE / max(image.shape[:2])
            assert np.abs(face.landmarks - ref.landmarks).max() * scale <= 1.0, name
            if face.mesh is not None:
                assert np.abs(face.mesh - ref.mesh).max() * scale <= 1.0, name
            assert set(parsed.masks) == set(ref_parsed.masks), name
            for region, mask in parsed.masks.items():
                iou, near = _same_region(_in_image(mask, parsed.window, image.shape[:2]),
                                         _in_image(ref_parsed.masks[region], ref_parsed.window, image.shape[:2]))
                assert near or iou >= 0.95, (name, region, iou)
                ious.setdefault(region, []).append(iou)
    return ious


@pytest.mark.slow
@needs_mediapipe
def test_backend_gives_the_previous_faces_and_regions(photos):
    """Every region of every face within 0.95 IoU of the previous implementation's where MediaPipe itself
    holds that: a closed mouth, or the brows and lips of a 30-px face, are one or two pixels thin,
    and MediaPipe's own mesh moves their edges by a tenth of a pixel when its crop moves by 1e-4 px
    (a different rounding of a few crop pixels), which costs them up to 18 % IoU against
    themselves. Such regions are held to that floor: per region, the worst and the mean IoU no worse
    than the previous implementation's against itself nudged by 1e-4 px, and masks only ever
    differing along their edges."""
    previous = SolutionsBackend()
    ious = _region_ious(MediapipeBackend(), previous, photos)
    assert set(ious) == {"background", "skin", "brows", "eyes", "nose", "lips", "mouth", "hair"}
    floor = _region_ious(NudgedSolutionsBackend(), previous, photos)
    for region, values in ious.items():
        print(f"{region}: ours min {min(values):.3f} mean {np.mean(values):.4f}; "
              f"MediaPipe nudged min {min(floor[region]):.3f} mean {np.mean(floor[region]):.4f}")
        assert min(values) >= min(0.95, min(floor[region])), (region, values, floor[region])
        assert np.mean(values) >= min(0.99, np.mean(floor[region]) - 0.01), (region, values, floor[region])
