"""MediaPipe 0.10.21's face detection, face mesh and selfie segmentation "solutions", computed as its
graphs compute them, with the shipped models (:mod:`.face_models`) run by PyTorch: no MediaPipe needed.

Each stage is one function, configured with the numbers of MediaPipe's own graphs (the ``.pbtxt``
and calculator sources at the v0.10.21 tag, named in each docstring). Images are ``(H, W, 3)`` uint8
RGB arrays. Coordinates:

* *pixels*: OpenCV's, x to the right and y down, pixel ``(i, j)``'s centre at ``(j, i)``;
* *normalised*: pixels divided by the image's width (x) and height (y), as MediaPipe reports
  detections and landmarks (multiply by the size to get pixels);
* rectangles (:class:`Rect`) have a centre, a size and a rotation in radians, positive turning the
  rectangle clockwise on screen (y down), in pixels or normalised as each function says.

The models take batches: :func:`detect_faces`, :func:`face_mesh` and :func:`selfie_segmentation`
take a list of images (tiles, face crops, video frames) and run each model once per chunk of
:data:`MAX_BATCH`; only the networks run on ``device`` (CPU by default; where they run:
:func:`~.face_models.run_face_model`). The warps onto the models'
inputs are OpenCV's, as in MediaPipe's CPU graphs (the same rectangle gives the same tensor, bit for
bit); decoding, suppression and rectangle maths are NumPy, within a few 1e-7 of MediaPipe's float32.
``tests/faces/test_mediapipe_parity.py`` compares every stage with MediaPipe itself.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .face_models import load_face_model, run_face_model

#: Images per network run: bounds the activations' memory on long lists (a photo's tiles). On CPU,
#: chunks of 16 detected a 4K group photo's 152 short-range tiles faster than chunks of 24, 32 or 64
#: (measured with 2 threads: smaller activations cost fewer fresh memory pages).
MAX_BATCH = 16


@dataclass(frozen=True)
class Rect:
    """MediaPipe's ``NormalizedRect`` / ``RotatedRect``: centre, size and rotation (radians, clockwise
    on screen), in pixels or normalised coordinates as the function using it says."""

    x_center: float
    y_center: float
    width: float
    height: float
    rotation: float = 0.0

    def to_pixels(self, width: int, height: int) -> Rect:
        """This normalised rectangle in pixels of a ``width`` x ``height`` image."""
        return Rect(self.x_center * width, self.y_center * height, self.width * width, self.height * height,
                    self.rotation)


@dataclass
class Detections:
    """Faces found in one image, normalised coordinates of that image, best score first.

    Attributes:
        boxes: ``(N, 4)`` float32 ``(xmin, ymin, xmax, ymax)``.
        keypoints: ``(N, 6, 2)`` float32 ``(x, y)``: the subject's right eye, left eye, nose tip,
            mouth centre, right ear tragion, left ear tragion (MediaPipe's ``FaceKeyPoint`` order;
            the subject's right eye is the image-left one).
        scores: ``(N,)`` float32 in [0, 1].
    """

    boxes: np.ndarray
    keypoints: np.ndarray
    scores: np.ndarray


# --- image to tensor -------------------------------------------------------------------------------


def pad_roi(roi: Rect, width: int, height: int) -> Rect:
    """``roi`` grown along one side to the ``width`` x ``height`` tensor's aspect ratio, about its centre
    (``ImageToTensorCalculator``'s ``keep_aspect_ratio``: the model sees the image letterboxed)."""
    tensor_aspect, roi_aspect = height / width, roi.height / roi.width
    if tensor_aspect > roi_aspect:
        return Rect(roi.x_center, roi.y_center, roi.width, roi.width * tensor_aspect, roi.rotation)
    return Rect(roi.x_center, roi.y_center, roi.height / tensor_aspect, roi.height, roi.rotation)


def image_to_tensor(image: np.ndarray, roi: Rect | None, width: int, height: int, value_range: tuple[float, float],
                    keep_aspect_ratio: bool = False, border_zero: bool = True) -> tuple[np.ndarray, Rect]:
    """``ImageToTensorCalculator`` on the CPU (OpenCV converter): the rotated ``roi`` (pixels; ``None``:
    the whole image) of ``image`` warped onto a ``height`` x ``width`` tensor.

    The rectangle's corners go to the tensor's corners (``getPerspectiveTransform`` of the four
    ``boxPoints``; tensor pixel ``j`` samples the rectangle at ``j / width`` of its side), bilinear,
    outside pixels black (``border_zero``, BORDER_ZERO) or the edge repeated (BORDER_REPLICATE, the
    default when unspecified); the warp is uint8 like the image, then mapped from [0, 255] to
    ``value_range``. With ``keep_aspect_ratio`` the roi is first padded (:func:`pad_roi`).

    Returns:
        ``(tensor, roi)``: ``(height, width, 3)`` float32, and the rectangle the tensor shows (pixels;
        padded), which :func:`roi_to_image_matrix` needs to bring results back.
    """
    h, w = image.shape[:2]
    roi = Rect(0.5 * w, 0.5 * h, float(w), float(h)) if roi is None else roi
    if keep_aspect_ratio:
        roi = pad_roi(roi, width, height)
    corners = cv2.boxPoints(((roi.x_center, roi.y_center), (roi.width, roi.height), math.degrees(roi.rotation)))
    # boxPoints starts at the bottom-left corner (for rotation 0) and goes clockwise, as the tensor's corners do here.
    target = np.array([[0, height], [0, 0], [width, 0], [width, height]], np.float32)
    matrix = cv2.getPerspectiveTransform(corners, target)
    warped = cv2.warpPerspective(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT if border_zero else cv2.BORDER_REPLICATE)
    low, high = value_range
    return warped.astype(np.float32) * np.float32((high - low) / 255.0) + np.float32(low), roi


def roi_to_image_matrix(roi: Rect, width: int, height: int) -> np.ndarray:
    """``(2, 3)`` affine map from the tensor's normalised coordinates to the ``width`` x ``height``
    image's normalised coordinates, for a tensor made from the pixel rectangle ``roi``
    (``GetRotatedSubRectToRectTransformMatrix``, as ``DetectionProjectionCalculator`` uses it)."""
    c, s = math.cos(roi.rotation), math.sin(roi.rotation)
    a, b = roi.width, roi.height
    return np.array([[a * c / width, -b * s / width, (-0.5 * a * c + 0.5 * b * s + roi.x_center) / width],
                     [a * s / height, b * c / height, (-0.5 * b * c - 0.5 * a * s + roi.y_center) / height]])


def _run(model_name: str, tensors: Sequence[np.ndarray], device: str | torch.device | None) -> list[np.ndarray]:
    """The model's outputs for a list of ``(H, W, C)`` float32 inputs, as float32 arrays with batch first."""
    chunks = [run_face_model(model_name, np.stack(tensors[start:start + MAX_BATCH]), device)
              for start in range(0, len(tensors), MAX_BATCH)]
    return [np.concatenate(parts) for parts in zip(*chunks)]


# --- face detection --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Detector:
    """One BlazeFace model with its graph's options (``face_detection_{short,full}_range.pbtxt``).

    Attributes:
        model: the shipped model's name (:func:`load_face_model`).
        size: the square input's side in pixels (``tensor_width`` = ``tensor_height``).
        strides: SSD anchor layers' strides (``num_layers`` = their count).
        interpolated_scale_aspect_ratio: > 0 adds one anchor per cell and layer (``SsdAnchorsCalculator``).
        scale: ``x_scale`` = ``y_scale`` = ``w_scale`` = ``h_scale``: raw box values are in input pixels.
        min_score: the graph's ``min_score_thresh``. MediaPipe 0.10.21's ``FaceDetection`` solution
            always uses it: its ``min_detection_confidence`` does not reach the subgraph (measured on
            the fixtures: 0.0 and 0.9 give the same faces, those of these thresholds).
    """

    model: str
    size: int
    strides: tuple[int, ...]
    interpolated_scale_aspect_ratio: float
    scale: float
    min_score: float


SHORT_RANGE = Detector("face_detection_short_range", 128, (8, 16, 16, 16), 1.0, 128.0, 0.5)
FULL_RANGE = Detector("face_detection_full_range_sparse", 192, (4,), 0.0, 192.0, 0.6)
#: ``face_detection.pbtxt``'s shared options: anchors, decoding (``TensorsToDetectionsCalculator``:
#: 16 values per box = box x, y, w, h then 6 keypoints x, y; scores clipped to ±100 then sigmoid) and
#: weighted non-max suppression of boxes whose IoU is above 0.3.
ANCHOR_ASPECT_RATIOS = (1.0,)
ANCHOR_OFFSET = 0.5
NUM_KEYPOINTS = 6
SCORE_CLIPPING = 100.0
NMS_THRESHOLD = 0.3


#: Bounded: the sliding search asks for the anchors of each picture size it sees.
@functools.lru_cache(maxsize=32)
def ssd_anchors(detector: Detector, height: int | None = None, width: int | None = None) -> np.ndarray:
    """``(N, 4)`` float32 anchors, one per model output, ``(x_center, y_center, w, h)``, normalised to the input
    (``SsdAnchorsCalculator``, ``fixed_anchor_size: true``: w = h = 1, so the scales
    ``min_scale: 0.1484375``, ``max_scale: 0.75`` do not enter). Layers of equal stride share one
    grid of ``ceil(size / stride)`` cells, row by row, each cell with one anchor per aspect ratio and
    one more for ``interpolated_scale_aspect_ratio`` > 0, per layer.

    ``height`` x ``width`` (default: the model's square input) gives the anchors of a fully
    convolutional detector run on a bigger input (:func:`detect_faces_dense`): the grids grow with
    it, and each anchor keeps the size of the model's input, ``size / width`` by ``size / height``."""
    height, width = height or detector.size, width or detector.size
    anchors, layer, strides = [], 0, detector.strides
    while layer < len(strides):
        same = layer
        while same < len(strides) and strides[same] == strides[layer]:
            same += 1
        per_cell = (same - layer) * (len(ANCHOR_ASPECT_RATIOS) + (detector.interpolated_scale_aspect_ratio > 0))
        rows, cols = math.ceil(height / strides[layer]), math.ceil(width / strides[layer])
        yy, xx = np.meshgrid((np.arange(rows, dtype=np.float32) + ANCHOR_OFFSET) / rows,
                             (np.arange(cols, dtype=np.float32) + ANCHOR_OFFSET) / cols, indexing="ij")
        grid = np.stack([xx.ravel(), yy.ravel()], axis=1).repeat(per_cell, axis=0)
        sizes = np.broadcast_to(np.float32([detector.size / width, detector.size / height]), grid.shape)
        anchors.append(np.concatenate([grid, sizes], axis=1))
        layer = same
    return np.concatenate(anchors).astype(np.float32)


def decode_boxes(raw: np.ndarray, anchors: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """``TensorsToDetectionsCalculator``'s decoding (``reverse_output_order``: x before y): ``raw``
    ``(..., N, 16)`` model values -> ``(boxes (..., N, 4) (xmin, ymin, xmax, ymax), keypoints
    (..., N, 6, 2))``, normalised to the model's input."""
    ax, ay, aw, ah = (anchors[:, i] for i in range(4))
    x_center, y_center = raw[..., 0] / scale * aw + ax, raw[..., 1] / scale * ah + ay
    w, h = raw[..., 2] / scale * aw, raw[..., 3] / scale * ah
    boxes = np.stack([x_center - w / 2, y_center - h / 2, x_center + w / 2, y_center + h / 2], axis=-1)
    points = raw[..., 4:4 + 2 * NUM_KEYPOINTS].reshape(*raw.shape[:-1], NUM_KEYPOINTS, 2)
    keypoints = points / scale * np.stack([aw, ah], -1)[:, None] + np.stack([ax, ay], -1)[:, None]
    return boxes, keypoints


def detection_scores(raw: np.ndarray) -> np.ndarray:
    """Raw classifier values ``(..., N, 1)`` -> ``(..., N)`` scores: clipped to ±100, then sigmoid."""
    clipped = np.clip(raw[..., 0], -SCORE_CLIPPING, SCORE_CLIPPING).astype(np.float64)  # exp(100) overflows float32
    return (1.0 / (1.0 + np.exp(-clipped))).astype(np.float32)


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``(4,)`` box with ``(N, 4)`` boxes, ``(xmin, ymin, xmax, ymax)``; 0 where they do not
    touch or the union is empty (MediaPipe's ``INTERSECTION_OVER_UNION``)."""
    iw = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])
    ih = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])
    inter = np.where((iw >= 0) & (ih >= 0), iw * ih, 0.0)
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray,
                 threshold: float = NMS_THRESHOLD) -> Detections:
    """``NonMaxSuppressionCalculator`` with ``algorithm: WEIGHTED``: the best remaining detection takes
    every remaining one whose IoU with it is above ``threshold`` (itself included) and becomes their
    score-weighted mean box and keypoints, keeping its own score; repeated until none remain.

    Args:
        boxes: ``(N, 4)``, keypoints ``(N, K, 2)``, scores ``(N,)``, in any one coordinate system.

    Returns:
        the merged detections, best score first (equal scores keep their input order).
    """
    remaining = np.argsort(-scores, kind="stable")
    kept_boxes, kept_points, kept_scores = [], [], []
    while remaining.size:
        top = remaining[0]
        group = box_iou(boxes[top], boxes[remaining]) > threshold
        members = remaining[group]
        kept_scores.append(scores[top])
        if not members.size:  # an empty box overlaps nothing, not even itself: MediaPipe keeps it and stops
            kept_boxes.append(boxes[top])
            kept_points.append(keypoints[top])
            break
        weights = scores[members]
        kept_boxes.append((boxes[members] * weights[:, None]).sum(0) / weights.sum())
        kept_points.append((keypoints[members] * weights[:, None, None]).sum(0) / weights.sum())
        remaining = remaining[~group]
    n = len(kept_scores)
    return Detections(np.array(kept_boxes, np.float32).reshape(n, 4),
                      np.array(kept_points, np.float32).reshape(n, *keypoints.shape[1:]),
                      np.array(kept_scores, np.float32))


def project_detections(detections: Detections, matrix: np.ndarray) -> Detections:
    """``DetectionProjectionCalculator``: keypoints through the ``(2, 3)`` ``matrix``; each box becomes the
    axis-aligned bounding box of its four projected corners."""
    def project(points: np.ndarray) -> np.ndarray:
        return points @ matrix[:, :2].T + matrix[:, 2]

    boxes = detections.boxes
    corners = project(np.stack([boxes[:, [0, 1]], boxes[:, [2, 1]], boxes[:, [2, 3]], boxes[:, [0, 3]]], axis=1))
    boxes = np.concatenate([corners.min(1), corners.max(1)], axis=1)
    return Detections(boxes.astype(np.float32), project(detections.keypoints).astype(np.float32),
                      detections.scores)


def detect_faces(images: Sequence[np.ndarray], detector: Detector, min_score: float | None = None,
                 device: str | torch.device | None = None) -> list[Detections]:
    """MediaPipe's ``FaceDetection`` solution (``face_detection.pbtxt``) on each of ``images``: the whole
    image letterboxed onto the model's square input (black bars, values in [-1, 1]), boxes decoded
    on :func:`ssd_anchors`, those scoring below ``min_score`` dropped (``None``: the detector's own, as
    the solution does; the rest are what the weighted suppression averages), boxes of negative size
    dropped, :func:`weighted_nms`, and the result brought back to the image.

    Returns:
        one :class:`Detections` per image, normalised coordinates of that image.
    """
    if not images:
        return []
    made = [image_to_tensor(image, None, detector.size, detector.size, (-1.0, 1.0), keep_aspect_ratio=True)
            for image in images]
    raw_boxes, raw_scores = _run(detector.model, [tensor for tensor, _ in made], device)
    found = _suppressed(raw_boxes, raw_scores, ssd_anchors(detector), detector, min_score)
    return [project_detections(merged, roi_to_image_matrix(roi, image.shape[1], image.shape[0]))
            for image, (_, roi), merged in zip(images, made, found)]


def _suppressed(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, detector: Detector,
                min_score: float | None) -> list[Detections]:
    """Per batch element: boxes decoded on ``anchors``, those under ``min_score`` (``None``: the
    detector's) or of negative size dropped, :func:`weighted_nms`; normalised to the model's input."""
    scores = detection_scores(raw_scores)
    # MediaPipe compares float32 scores with the float32 threshold.
    passed = scores >= np.float32(detector.min_score if min_score is None else min_score)
    results = []
    for i in range(len(raw_boxes)):
        # Only the boxes that scored are decoded (each alone, so the same numbers as decoding them all).
        boxes, keypoints = decode_boxes(raw_boxes[i][passed[i]], anchors[passed[i]], detector.scale)
        # NaN sizes fail ">= 0" as in MediaPipe's "< 0 or NaN".
        sized = (boxes[:, 2] - boxes[:, 0] >= 0) & (boxes[:, 3] - boxes[:, 1] >= 0)
        results.append(weighted_nms(boxes[sized], keypoints[sized], scores[i][passed[i]][sized]))
    return results


def detect_faces_dense(images: Sequence[np.ndarray], detector: Detector, min_score: float | None = None,
                       device: str | torch.device | None = None) -> list[Detections]:
    """A fully convolutional ``detector`` (the short-range one) over each whole image at the image's
    own scale, one run per image (:meth:`TFLiteGraph.forward_any_size
    <portrait_stylize.models.tflite_graph.TFLiteGraph.forward_any_size>`): the same as its square
    input slid over the image at every multiple of its coarsest stride (the graph's
    ``size_multiple``), without cutting the image
    into overlapping tiles (faces of about 24-60 px for the short-range model). The image is padded
    black at the bottom and right to that multiple, mapped to [-1, 1] as :func:`detect_faces` does;
    scores, decoding and suppression as there, on :func:`ssd_anchors` of the padded size.

    Returns:
        one :class:`Detections` per image, normalised coordinates of that image.
    """
    model = load_face_model(detector.model, device)
    multiple = model.size_multiple
    results = []
    for image in images:
        h, w = image.shape[:2]
        ph, pw = -(-h // multiple) * multiple, -(-w // multiple) * multiple
        padded = cv2.copyMakeBorder(image, 0, ph - h, 0, pw - w, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        x = (padded.astype(np.float32) * np.float32(2 / 255) - np.float32(1))[None]
        raw_boxes, raw_scores = run_face_model(detector.model, x, device, any_size=True)
        (found,) = _suppressed(raw_boxes, raw_scores, ssd_anchors(detector, ph, pw), detector, min_score)
        # From the padded input's normalised coordinates to the image's.
        results.append(project_detections(found, np.array([[pw / w, 0, 0], [0, ph / h, 0]])))
    return results


# --- face mesh -------------------------------------------------------------------------------------

#: ``face_landmark_front_cpu.pbtxt`` with the FaceMesh solution's settings: the short-range detector
#: finds the face (``min_detection_confidence``), ``face_detection_front_detection_to_roi.pbtxt``
#: turns it into the crop (rotation that levels the eyes, the box squared on its long side and
#: scaled 1.5), ``face_landmark_cpu.pbtxt`` runs the model on a 192² crop in [0, 1] whose outside
#: repeats the image's edge, and keeps the landmarks when the face flag's sigmoid exceeds
#: ``min_tracking_confidence``.
MESH_INPUT = 192
ROI_SCALE = 1.5
MESH_POINTS, REFINED_POINTS = 468, 478
#: ``tensors_to_face_landmarks_with_attention.pbtxt``: where the attention model's refined outputs
#: go among the 478 landmarks (their x, y replace the mesh's; z stays the mesh's), and the irises
#: (468-472, 473-477) take as z the mean z of the first 16 points of their eye's contour. Left and
#: right are the model's output names: its "left" eye is the image-left one of an upright face.
LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409,
        78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415,
        76, 77, 90, 180, 85, 16, 315, 404, 320, 307, 306, 184, 74, 73, 72, 11, 302, 303, 304, 408,
        62, 96, 89, 179, 86, 15, 316, 403, 319, 325, 292, 183, 42, 41, 38, 12, 268, 271, 272, 407)
LEFT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173,
            130, 25, 110, 24, 23, 22, 26, 112, 243, 247, 30, 29, 27, 28, 56, 190,
            226, 31, 228, 229, 230, 231, 232, 233, 244, 113, 225, 224, 223, 222, 221, 189,
            35, 124, 46, 53, 52, 65, 143, 111, 117, 118, 119, 120, 121, 128, 245, 156, 70, 63, 105, 66, 107, 55, 193)
RIGHT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398,
             359, 255, 339, 254, 253, 252, 256, 341, 463, 467, 260, 259, 257, 258, 286, 414,
             446, 261, 448, 449, 450, 451, 452, 453, 464, 342, 445, 444, 443, 442, 441, 413,
             265, 353, 276, 283, 282, 295, 372, 340, 346, 347, 348, 349, 350, 357, 465, 383, 300, 293, 334, 296, 336,
             285, 417)
LEFT_IRIS, RIGHT_IRIS = tuple(range(468, 473)), tuple(range(473, 478))
IRIS_Z_FROM = 16


def normalize_radians(angle: float) -> float:
    """``angle`` in [-pi, pi)."""
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


def detection_to_roi(box: np.ndarray, keypoints: np.ndarray, width: int, height: int) -> Rect:
    """``FaceDetectionFrontDetectionToRoi``: the face mesh's crop for one detection in a ``width`` x
    ``height`` image (all normalised). ``DetectionsToRectsCalculator``: the box's centre and size,
    rotated so that the line from keypoint 0 to keypoint 1 (the eyes, in pixels) becomes horizontal;
    ``RectTransformationCalculator``: squared on its longer side in pixels, then scaled by 1.5."""
    (x0, y0), (x1, y1) = keypoints[0] * (width, height), keypoints[1] * (width, height)
    rotation = normalize_radians(-math.atan2(-(y1 - y0), x1 - x0))
    box_w, box_h = float(box[2] - box[0]), float(box[3] - box[1])
    side = max(box_w * width, box_h * height)
    return Rect(float(box[0]) + box_w / 2, float(box[1]) + box_h / 2, side / width * ROI_SCALE,
                side / height * ROI_SCALE, rotation)


def decode_face_landmarks(outputs: Sequence[np.ndarray]) -> np.ndarray:
    """The attention model's outputs for a batch of B crops -> ``(B, 478, 3)`` landmarks, normalised to
    the crop (``TensorsToLandmarksCalculator``: x, y and z divided by 192, so z is in crop widths),
    refined as ``LandmarksRefinementCalculator`` is configured (:data:`LIPS`, :data:`LEFT_EYE`,
    :data:`RIGHT_EYE`, irises)."""
    mesh, lips, left_eye, right_eye, left_iris, right_iris = (np.asarray(o).reshape(len(o), -1) for o in outputs[:6])
    batch = len(mesh)
    landmarks = np.zeros((batch, REFINED_POINTS, 3), np.float32)
    landmarks[:, :MESH_POINTS] = mesh.reshape(batch, MESH_POINTS, 3) / MESH_INPUT
    for values, indices in ((lips, LIPS), (left_eye, LEFT_EYE), (right_eye, RIGHT_EYE), (left_iris, LEFT_IRIS),
                            (right_iris, RIGHT_IRIS)):
        landmarks[:, indices, :2] = values.reshape(batch, len(indices), 2) / MESH_INPUT
    for iris, eye in ((LEFT_IRIS, LEFT_EYE), (RIGHT_IRIS, RIGHT_EYE)):
        landmarks[:, iris, 2] = landmarks[:, eye[:IRIS_Z_FROM], 2].mean(1, keepdims=True)
    return landmarks


def project_landmarks(landmarks: np.ndarray, roi: Rect) -> np.ndarray:
    """``LandmarkProjectionCalculator`` with a ``NORM_RECT`` and no image size (as ``face_landmark_cpu``
    uses it): ``(N, 3)`` landmarks normalised to the crop -> normalised to the image; the rotation is
    applied in normalised units (exact for square images, which is all MediaPipe supports this way),
    z is scaled by the roi's normalised width."""
    x, y = landmarks[:, 0] - 0.5, landmarks[:, 1] - 0.5
    c, s = math.cos(roi.rotation), math.sin(roi.rotation)
    return np.stack([(c * x - s * y) * roi.width + roi.x_center, (s * x + c * y) * roi.height + roi.y_center,
                     landmarks[:, 2] * roi.width], axis=1).astype(np.float32)


def face_mesh(images: Sequence[np.ndarray], min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5,
              device: str | torch.device | None = None) -> list[np.ndarray | None]:
    """MediaPipe's ``FaceMesh`` solution with ``static_image_mode=True, max_num_faces=1,
    refine_landmarks=True`` on each of ``images``: the best short-range detection (at
    ``min_detection_confidence``), its :func:`detection_to_roi` crop, the attention model, and the
    face flag's check.

    Returns:
        per image, ``(478, 3)`` float32 landmarks (x, y normalised to the image, z in image widths,
        smaller nearer the camera), or ``None`` when no face was found or the flag fails.
    """
    found = detect_faces(images, SHORT_RANGE, min_detection_confidence, device)
    jobs = []
    for index, (image, detections) in enumerate(zip(images, found)):
        if len(detections.scores):
            h, w = image.shape[:2]
            jobs.append((index, detection_to_roi(detections.boxes[0], detections.keypoints[0], w, h)))
    results: list[np.ndarray | None] = [None] * len(images)
    if not jobs:
        return results
    crops = [image_to_tensor(images[i], roi.to_pixels(images[i].shape[1], images[i].shape[0]), MESH_INPUT, MESH_INPUT,
                             (0.0, 1.0), border_zero=False)[0] for i, roi in jobs]
    outputs = _run("face_landmark_with_attention", crops, device)
    presence = 1.0 / (1.0 + np.exp(-outputs[6].reshape(-1).astype(np.float64)))  # float64: no overflow
    landmarks = decode_face_landmarks(outputs)
    for (index, roi), score, points in zip(jobs, presence, landmarks):
        if score > min_tracking_confidence:
            results[index] = project_landmarks(points, roi)
    return results


# --- selfie segmentation ---------------------------------------------------------------------------

SELFIE_INPUT = 256


def selfie_segmentation(images: Sequence[np.ndarray], device: str | torch.device | None = None) -> list[np.ndarray]:
    """MediaPipe's ``SelfieSegmentation`` solution, ``model_selection=0`` (``selfie_segmentation_cpu``):
    each image stretched (aspect ratio not kept) onto 256² in [0, 1], the general model, and its
    mask resized back bilinearly (``TensorsToSegmentationCalculator``, activation none: the model ends
    in a sigmoid).

    Returns:
        per image, an ``(H, W)`` float32 person probability in [0, 1].
    """
    if not images:
        return []
    tensors = [image_to_tensor(image, None, SELFIE_INPUT, SELFIE_INPUT, (0.0, 1.0))[0] for image in images]
    (masks,) = _run("selfie_segmentation", tensors, device)
    return [cv2.resize(mask[..., 0], (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
            for image, mask in zip(images, masks)]
