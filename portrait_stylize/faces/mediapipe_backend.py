"""Face detection, 478-point mesh and region masks with MediaPipe 0.10.21's models and graphs, run
without MediaPipe (:mod:`.mediapipe_graphs`; the models ship in this package).

* Detection: the full-range BlazeFace model on the image and again on an auto-contrasted copy
  (faded old photos); where that finds faces, also on four overlapping zoomed quarters (it sees
  a 192² input, so zooming is what makes a face bigger); overlapping boxes are merged. Where no
  face or only small ones were found (group photos, faces down to about 24 px): the short-range
  model, slid over the whole picture at two scales (as if on every 128- and 224-px window),
  proposes, the full-range model on a window around each proposal and then the face mesh confirm.
* Landmarks: the face mesh (with irises) runs on each face's aligned crop, so small and tilted
  faces are seen upright at a good size; the 5 alignment points come from it.
* Regions: polygons of the mesh give skin, brows, eyes, nose, lips and mouth; selfie segmentation
  gives the person (edges refined to the photo with a guided filter), so background = not person;
  hair is the part of the person around the head and over the shoulders coloured like the hair
  above the forehead (see :func:`_hair`).
  MediaPipe cannot see ears, neck or clothes.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from PIL import Image

from . import align, mesh_topology
from . import mediapipe_graphs as graphs
from .backend import FaceBackend
from .face import Face, box_iou, merge_detections
from .parsing import FaceParse, Parsing
from .refine import colour_likelihood, guided_refine

REGIONS = ("skin", "brows", "eyes", "nose", "lips", "mouth", "hair", "background")
_DETECT_SIDE = 1280
#: Images (and zoomed detection windows) with a shorter side hold no detectable face.
MIN_IMAGE_SIDE = 16
#: Small faces: the short-range model (128² input; it finds faces from about 24 px of its input,
#: wherever they are in it) slid over the detection copy (it is fully convolutional:
#: :func:`graphs.detect_faces_dense`) at the scales where windows of these sides fill its input:
#: 128-px windows propose faces of about 24-60 px, 224-px windows faces of about 42-110 px; the
#: whole-image passes find larger ones (on composed groups of 1280², those passes found none of 49
#: faces of 105 px and this search all of them). On a 1024² image that is the work of 85 of its
#: 128² inputs (overlapping tiles took 136, and warps to cut them out).
_WINDOW_SIDES = (128, 224)
#: A proposal from the sliding windows needs this score; then the full-range model must find the face again,
#: with this score too, in a window of _CONFIRM_ZOOMS times its size around it (the next size is
#: tried when it misses), and the face mesh must find it on the aligned crop. Below 0.65, bits of
#: gravel and a cameraman's ear passed all three (skimage's test photos).
_SMALL_FACE_MIN_SCORE = 0.65
_CONFIRM_ZOOMS = (4.0, 3.0, 5.0)
#: The small-face search runs when no face is found, or when the largest one is smaller than this
#: fraction of the detection copy's short side (group photos).
_SMALL_FACE_TRIGGER = 0.2
_MESH_CROP = 256
_MESH_SCALE = 0.6
#: The face mesh's face detection on that crop (the FaceMesh solution's ``min_detection_confidence``).
_MESH_MIN_DETECTION = 0.3
# Eyebrow outlines (upper arc then lower arc back), image-left brow first.
_BROWS = ([70, 63, 105, 66, 107, 55, 65, 52, 53, 46], [300, 293, 334, 296, 336, 285, 295, 282, 283, 276])
_NOSE_TIP, _MOUTH_CORNERS, _FOREHEAD, _CHIN = 1, (61, 291), 10, 152
#: Selfie-segmentation edges are refined with a guided filter of this radius (× the longer side).
_PERSON_EDGE = 0.006
#: Hair is looked for this far from the face centre, in face widths across (u) and face heights
#: down (v): the top of the head and long hair down to the chest.
_HAIR_REACH_U, _HAIR_REACH_V = (-1.6, 1.6), (-1.3, 2.6)
#: Hair masks are computed on a copy of the face window at most this long, then refined at full
#: size with a guided filter of radius _HAIR_EDGE face widths.
_HAIR_WORK_SIDE, _HAIR_EDGE = 256, 0.03
#: A pixel is hair when its colour is this much (log-likelihood ratio) more typical of the hair on
#: top of the head than of skin, background and clothes: 0 took black shirts under brown hair,
#: 1 lost fair strands (the fixtures' selfies).
_HAIR_MARGIN = 0.75
_MIN_HAIR_SAMPLES = 20


def _loops(edges) -> list[list[int]]:
    """Closed vertex loops from an undirected edge set (MediaPipe's FACEMESH_* connections, :mod:`.mesh_topology`)."""
    adjacent: dict[int, list[int]] = {}
    for a, b in edges:
        adjacent.setdefault(a, []).append(b)
        adjacent.setdefault(b, []).append(a)
    seen, loops = set(), []
    for start in sorted(adjacent):
        if start in seen:
            continue
        loop, prev, cur = [start], None, start
        seen.add(start)
        while True:
            nxt = next((n for n in adjacent[cur] if n != prev and n not in seen), None)
            if nxt is None:
                break
            loop.append(nxt)
            seen.add(nxt)
            prev, cur = cur, nxt
        loops.append(loop)
    return loops


def _is_new(face: Face, kept: list[Face]) -> bool:
    """``face`` overlaps no face of ``kept`` (IoU < 0.3), and neither holds the other's box
    centre: a window that shows part of a bigger face can take an eye or a mouth for a face."""

    def centre_in(a: Face, b: Face) -> bool:
        cx, cy = (a.box[0] + a.box[2]) / 2, (a.box[1] + a.box[3]) / 2
        return b.box[0] <= cx <= b.box[2] and b.box[1] <= cy <= b.box[3]

    return all(box_iou(face.box, k.box) < 0.3 and not centre_in(face, k) and not centre_in(k, face) for k in kept)


def _autocontrast(image: np.ndarray, cutoff: int = 1) -> np.ndarray:
    """PIL's ``ImageOps.autocontrast(cutoff=cutoff)`` of an ``(H, W, 3)`` uint8 array, bit for bit,
    with OpenCV's histograms and lookup (PIL's own, round trips included, took 6 ms on a 1024²
    photo): per channel, ``cutoff`` % of the pixels are cut from each end of the histogram and
    the rest stretched linearly over 0-255."""
    luts = []
    for channel in range(3):
        # (256, 1) before OpenCV 5, (256,) from it on.
        counts = cv2.calcHist([image], [channel], None, [256], [0, 256]).reshape(-1).astype(np.int64)
        total = int(counts.sum())
        for order in (range(256), range(255, -1, -1)):  # low end, then high end
            cut = int(total * cutoff // 100)
            for level in order:
                taken = min(cut, int(counts[level]))
                counts[level] -= taken
                cut -= taken
                if cut <= 0:
                    break
        present = np.flatnonzero(counts)
        lo, hi = (int(present[0]), int(present[-1])) if len(present) else (0, 0)
        if hi <= lo:
            luts.append(np.arange(256, dtype=np.uint8))
            continue
        scale = 255.0 / (hi - lo)
        luts.append(np.clip(np.trunc(np.arange(256) * scale - lo * scale), 0, 255).astype(np.uint8))
    return cv2.LUT(np.ascontiguousarray(image), np.stack(luts, axis=1)[:, None, :])


def _detection_copies(image: np.ndarray) -> tuple[float, np.ndarray, np.ndarray] | None:
    """``(factor, plain, contrasted)``: ``image`` scaled by ``factor`` to at most :data:`_DETECT_SIDE`
    pixels, as it is and auto-contrasted (faded old photos); ``None`` when no face fits in it."""
    if min(image.shape[:2]) < MIN_IMAGE_SIDE:
        return None
    factor = min(1.0, _DETECT_SIDE / max(image.shape[:2]))
    plain = image
    if factor < 1.0:
        plain = np.asarray(Image.fromarray(image).resize(
            (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor))), Image.BILINEAR))
    return factor, plain, _autocontrast(plain)


#: A detection window: ``(pixels, their offset in the image (x, y), the score a face there needs)``.
Window = tuple[np.ndarray, tuple[int, int], float]


def _whole_windows(copies: tuple[float, np.ndarray, np.ndarray] | None) -> list[Window]:
    """The full-range passes' windows ``(window, offset, min_score)`` on one image's whole
    detection copies, plain and contrasted."""
    if copies is None:
        return []
    return [(copies[1], (0, 0), 0.0), (copies[2], (0, 0), 0.0)]


def _zoomed_windows(copies: tuple[float, np.ndarray, np.ndarray] | None) -> list[Window]:
    """The contrasted copy's four overlapping zoomed quarters (the full-range detector sees 192²,
    so zooming is what makes a face bigger), which see more false positives: only confident ones count."""
    if copies is None:
        return []
    contrasted = copies[2]
    h, w = contrasted.shape[:2]
    th, tw = int(h * 0.625), int(w * 0.625)
    if min(th, tw) < MIN_IMAGE_SIDE:
        return []
    return [(contrasted[y:y + th, x:x + tw], (x, y), 0.8) for y in (0, h - th) for x in (0, w - tw)]


class MediapipeBackend(FaceBackend):
    """Face detection + parsing with MediaPipe's models and graphs (offline: the models ship in the package).

    Args:
        device: where the networks run (default CPU); the rest is NumPy / OpenCV on the CPU.
    """

    name = "mediapipe"
    regions = REGIONS

    def __init__(self, device: str | torch.device | None = None) -> None:
        # The networks keep no state between calls, so threads share one backend without a lock.
        self._device = device
        self._oval = max(_loops(mesh_topology.FACEMESH_FACE_OVAL), key=len)
        self._lips = sorted(_loops(mesh_topology.FACEMESH_LIPS), key=len)  # inner, outer: same length; sorted below
        self._eyes = (max(_loops(mesh_topology.FACEMESH_RIGHT_EYE), key=len),
                      max(_loops(mesh_topology.FACEMESH_LEFT_EYE), key=len))
        self._nose = sorted({i for edge in mesh_topology.FACEMESH_NOSE for i in edge})

    # --- the three MediaPipe solutions -----------------------------------------------------------

    def _detections(self, images: list[np.ndarray], detector: graphs.Detector) -> list[graphs.Detections]:
        """The FaceDetection solution (full range unless told) on each image."""
        return graphs.detect_faces(images, detector, device=self._device)

    def _meshes(self, crops: list[np.ndarray]) -> list[np.ndarray | None]:
        """The FaceMesh solution (one face, irises) on each crop: ``(478, 3)`` normalised landmarks or ``None``."""
        return graphs.face_mesh(crops, min_detection_confidence=_MESH_MIN_DETECTION, device=self._device)

    def _person(self, image: np.ndarray) -> np.ndarray:
        """The SelfieSegmentation solution (general model): ``(H, W)`` float32 person probability."""
        return graphs.selfie_segmentation([image], self._device)[0]

    # --- detection ---------------------------------------------------------------------------

    def _detect_windows(self, windows: list[Window],
                        detector: graphs.Detector = graphs.FULL_RANGE) -> list[list[Face]]:
        """Faces of every ``(window, offset, min_score)`` (one batch for the detector), per window, in
        image pixels (window pixels + ``offset``), those scoring below the window's ``min_score`` left out."""
        return [self._faces(found, image.shape[:2], offset, min_score)
                for (image, offset, min_score), found in zip(windows, self._detections([w[0] for w in windows],
                                                                                       detector))]

    def _faces(self, found: graphs.Detections, shape: tuple[int, int], offset: tuple[int, int],
               min_score: float) -> list[Face]:
        """Detections normalised to a window of ``shape`` (height, width) as faces in image pixels
        (window pixels + ``offset``), those scoring below ``min_score`` left out."""
        h, w = shape
        faces = []
        for rel, points, score in zip(found.boxes, found.keypoints, found.scores):
            if score < min_score:
                continue
            box = (float(rel[0]) * w + offset[0], float(rel[1]) * h + offset[1],
                   float(rel[2]) * w + offset[0], float(rel[3]) * h + offset[1])
            kp = points.astype(np.float64) * (w, h) + offset
            faces.append(Face(box=box, landmarks=self._five_from_keypoints(kp), score=float(score)))
        return faces

    def _small_face_proposals(self, image: np.ndarray) -> list[Face]:
        """Faces the short-range model sees in ``image`` (a detection copy) slid over it at each
        scale of :data:`_WINDOW_SIDES`, scoring at least :data:`_SMALL_FACE_MIN_SCORE`, in its pixels.
        A scale whose windows would not be much smaller than the image is left out: the
        whole-image passes already see faces that small there."""
        h, w = image.shape[:2]
        scaled = []
        for side in _WINDOW_SIDES:
            factor = graphs.SHORT_RANGE.size / side
            size = (round(w * factor), round(h * factor))
            if side * 1.5 <= max(h, w) and min(size) >= MIN_IMAGE_SIDE:
                scaled.append(image if factor == 1 else cv2.resize(image, size, interpolation=cv2.INTER_LINEAR))
        found = graphs.detect_faces_dense(scaled, graphs.SHORT_RANGE, device=self._device)
        # Normalised coordinates are the image's at every scale: each resize maps its extent to the image's.
        return [face for detections in found for face in self._faces(detections, (h, w), (0, 0), _SMALL_FACE_MIN_SCORE)]

    def _batched_windows(self, windows: list[list[Window]],
                         detector: graphs.Detector = graphs.FULL_RANGE) -> list[list[Face]]:
        """:meth:`_detect_windows` on several images' windows in one batch: the faces per image."""
        found = self._detect_windows([w for image_windows in windows for w in image_windows], detector)
        starts = np.cumsum([0] + [len(w) for w in windows])
        return [[face for faces in found[a:b] for face in faces] for a, b in zip(starts[:-1], starts[1:])]

    @staticmethod
    def _five_from_keypoints(kp: np.ndarray) -> np.ndarray:
        """BlazeFace's 6 keypoints (eyes, nose, mouth centre, ears) -> approximate 5 points."""
        eyes = kp[:2][np.argsort(kp[:2, 0])]
        axis = eyes[1] - eyes[0]
        return np.array([eyes[0], eyes[1], kp[2], kp[3] - 0.35 * axis, kp[3] + 0.35 * axis])

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 ``(H, W, 3)`` image, sorted left to right, landmarks from the mesh."""
        return self.detect_many([image])[0]

    def detect_many(self, images: list[np.ndarray]) -> list[list[Face]]:
        """:meth:`detect` on each of ``images`` (video frames), each network run once per step for all of them."""
        found, small = self._detections_of(images)
        # 4. The face mesh on every face's aligned crop (one batch); it has the last word on small faces.
        refined = self._refine(images, [faces + kept for faces, kept in zip(found, small)])
        return [merge_detections(merge_detections(faces[:len(first)]) + [f for f in faces[len(first):]
                                                                          if f.mesh is not None])
                for faces, first in zip(refined, found)]

    def face_sizes(self, image: np.ndarray) -> list[float]:
        """Box sides of the faces in ``image`` without the face mesh (steps 1-3 of :meth:`detect_many`:
        a style's scale needs sizes, not landmarks); small faces count once the full-range model
        confirmed them."""
        found, small = self._detections_of([image])
        return [face.size for face in merge_detections(found[0] + small[0])]

    def _detections_of(self, images: list[np.ndarray]) -> tuple[list[list[Face]], list[list[Face]]]:
        """Per image, the faces of the full-range passes and the confirmed small faces, in the
        image's pixels, with BlazeFace's keypoints (steps 1-3 of :meth:`detect_many`)."""
        # 1. Passes on each image's detection copy, plain and auto-contrasted. The detector sees
        #    192², so a copy of at most _DETECT_SIDE pixels loses nothing.
        copies = [_detection_copies(image) for image in images]
        found = [merge_detections(faces) for faces in self._batched_windows([_whole_windows(c) for c in copies])]
        # 2. Where that found faces: the four zoomed quarters, for more faces of medium size and
        #    better boxes of those found (the whole copy shows a face of 90 px in 1146 at 15 px).
        #    Where it found none, the small-face search below covers their scales, and pictures
        #    without a face (a product photo, a landscape) pay for one search, not both.
        zoomed = self._batched_windows([_zoomed_windows(c) if faces else [] for c, faces in zip(copies, found)])
        found = [merge_detections(faces + more) if more else faces for faces, more in zip(found, zoomed)]
        # 3. Small faces: the sliding short-range model proposes, best first; the full-range model
        #    confirms each new proposal (textures, hands and parts of big faces now and then fool one
        #    model, rarely both). This search costs about as much as the other passes together; a photo
        #    whose faces are all big (a portrait, a selfie) has no room for small ones in practice, so
        #    it runs only where faces are small or missing.
        searched = [c is not None and (not faces or max(f.size for f in faces)
                                       < _SMALL_FACE_TRIGGER * min(c[1].shape[:2])) for c, faces in zip(copies, found)]
        proposals = [sorted((p for p in self._small_face_proposals(c[2]) if _is_new(p, faces)), key=lambda f: -f.score)
                     if search else [] for c, faces, search in zip(copies, found, searched)]
        confirmed = iter(self._confirmed([(c[2], p) for c, image_proposals in zip(copies, proposals)
                                          for p in image_proposals]))
        small: list[list[Face]] = []
        for scaled, faces, image_proposals in zip(copies, found, proposals):
            kept: list[Face] = []
            for proposal, face in zip(image_proposals, confirmed):
                if face is not None and _is_new(proposal, faces + kept) and _is_new(face, faces + kept):
                    kept.append(face)
            small.append(kept)
            for face in faces + kept:  # back to the image's pixels
                face.box = tuple(v / scaled[0] for v in face.box)
                face.landmarks = face.landmarks / scaled[0]
        return found, small

    def _confirmed(self, pending: list[tuple[np.ndarray, Face]]) -> list[Face | None]:
        """For each ``(image, proposal)``: the full-range detection of the proposed face in a window
        around it, or ``None``. The window is _CONFIRM_ZOOMS times the face's size (so the face
        fills a third to a fifth of the detector's input); the next size is tried where the
        detector misses the face in one. One batch per size for all proposals."""
        results: list[Face | None] = [None] * len(pending)
        todo = list(range(len(pending)))
        for zoom in _CONFIRM_ZOOMS:
            windows, asked = [], []
            for i in todo:
                image, face = pending[i]
                h, w = image.shape[:2]
                cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
                side = max(round(zoom * face.size), 2 * MIN_IMAGE_SIDE)
                x = int(min(max(cx - side / 2, 0), max(w - side, 0)))
                y = int(min(max(cy - side / 2, 0), max(h - side, 0)))
                window = image[y:y + side, x:x + side]
                if min(window.shape[:2]) >= MIN_IMAGE_SIDE:  # else: too close to nothing to confirm
                    windows.append((window, (x, y), _SMALL_FACE_MIN_SCORE))
                    asked.append(i)
            todo = []
            for i, found in zip(asked, self._detect_windows(windows)):
                seen = [f for f in found if box_iou(f.box, pending[i][1].box) >= 0.3]
                if seen:
                    results[i] = max(seen, key=lambda f: f.score)
                else:
                    todo.append(i)
        return results

    def _refine(self, images: list[np.ndarray], faces: list[list[Face]]) -> list[list[Face]]:
        """Run the face mesh on each face's aligned crop (one batch for all images' faces); take the
        5 points from it where it succeeds, and keep the face as it is where it does not."""
        matrices = [[align.crop_transform(face.landmarks, _MESH_CROP, _MESH_SCALE) for face in image_faces]
                    for image_faces in faces]
        meshes = iter(self._meshes([align.warp_to_crop(image, matrix, _MESH_CROP)
                                    for image, image_matrices in zip(images, matrices) for matrix in image_matrices]))
        refined = []
        for image_faces, image_matrices in zip(faces, matrices):
            kept = []
            for face, matrix, landmarks in zip(image_faces, image_matrices, meshes):
                if landmarks is None:
                    kept.append(face)
                    continue
                mesh = align.apply(align.invert(matrix), landmarks[:, :2].astype(np.float64) * _MESH_CROP)
                five = np.array([mesh[self._eyes[0]].mean(0), mesh[self._eyes[1]].mean(0), mesh[_NOSE_TIP],
                                 mesh[_MOUTH_CORNERS[0]], mesh[_MOUTH_CORNERS[1]]])
                kept.append(Face(box=face.box, landmarks=five, score=face.score, mesh=mesh))
            refined.append(kept)
        return refined

    def opening_ratios(self, face: Face) -> np.ndarray | None:
        """``(3,)`` expression values: height / width of the image-left eye, the image-right eye and
        the inner mouth, from the face mesh (``None`` without a mesh). DCT-Net's facial
        perception loss keeps these equal between photo and stylized face."""
        if face.mesh is None:
            return None

        def ratio(points: np.ndarray) -> float:
            (x0, y0), (x1, y1) = points.min(0), points.max(0)
            return float((y1 - y0) / max(x1 - x0, 1e-6))

        inner = min(self._lips, key=lambda loop: np.ptp(face.mesh[loop, 0]))
        return np.array([ratio(face.mesh[self._eyes[0]]), ratio(face.mesh[self._eyes[1]]), ratio(face.mesh[inner])])

    # --- parsing -----------------------------------------------------------------------------

    def parse(self, image: np.ndarray, faces: list[Face]) -> Parsing:
        """Region masks for ``faces`` (from :meth:`detect`) and the whole-image background."""
        h, w = image.shape[:2]
        if min(h, w) < MIN_IMAGE_SIDE:
            person = np.zeros((h, w), bool)  # too thin to hold a person
        else:
            soft = self._person(image)
            # The segmenter answers at 256²: its edge is a blur that spills onto the background.
            person = guided_refine(image, soft, max(round(_PERSON_EDGE * max(h, w)), 2)) > 0.5
        parsed = [self._parse_face(image, face, person) for face in faces]
        return Parsing(faces=parsed, image_masks={"background": ~person})

    def _parse_face(self, image: np.ndarray, face: Face, person: np.ndarray) -> FaceParse:
        if face.mesh is None:
            return FaceParse(window=(0, 0, 0, 0))
        mesh = face.mesh
        frame = _FaceFrame(mesh, self._oval)
        window = frame.window(person.shape)
        x0, y0, x1, y1 = window
        size = (y1 - y0, x1 - x0)

        def poly(points: np.ndarray) -> np.ndarray:
            mask = np.zeros(size, np.uint8)
            cv2.fillPoly(mask, [np.round((points - (x0, y0)) * 4).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=2)
            return mask.astype(bool)

        lips_a, lips_b = (poly(mesh[loop]) for loop in self._lips)
        outer, inner = (lips_a, lips_b) if lips_a.sum() >= lips_b.sum() else (lips_b, lips_a)
        masks = {
            "eyes": poly(mesh[self._eyes[0]]) | poly(mesh[self._eyes[1]]),
            "brows": poly(mesh[_BROWS[0]]) | poly(mesh[_BROWS[1]]),
            "nose": poly(mesh[self._nose][cv2.convexHull(mesh[self._nose].astype(np.float32),
                                                         returnPoints=False)[:, 0]]),
            "lips": outer & ~inner,
            "mouth": inner,
        }
        face_area = poly(mesh[self._oval])
        masks["nose"] &= ~outer
        masks["skin"] = face_area & ~masks["eyes"] & ~masks["brows"] & ~masks["nose"] & ~outer
        masks["hair"] = _hair(image[y0:y1, x0:x1], person[y0:y1, x0:x1], face_area, frame, (x0, y0))
        return FaceParse(window=window, masks={k: v for k, v in masks.items() if v.any()})


class _FaceFrame:
    """A face's own coordinates, so that head and shoulders are found the same way on tilted and
    lying faces: ``u`` across the face in face widths (image-left eye side negative), ``v`` down
    the face in face heights (forehead top to chin), both from the centre of the face oval."""

    def __init__(self, mesh: np.ndarray, oval: list[int]) -> None:
        up = mesh[_FOREHEAD] - mesh[_CHIN]
        self.height = float(np.linalg.norm(up)) or 1.0
        self.up = up / self.height
        self.right = np.array([-self.up[1], self.up[0]])
        self.centre = mesh[oval].mean(0)
        across = (mesh[oval] - self.centre) @ self.right
        self.width = float(np.ptp(across)) or 1.0

    def window(self, shape: tuple[int, int]) -> tuple[int, int, int, int]:
        """Integer image window holding the head and the shoulders long hair falls on."""
        corners = np.array([self.point(u, v) for u in _HAIR_REACH_U for v in _HAIR_REACH_V])
        (x0, y0), (x1, y1) = np.floor(corners.min(0)), np.ceil(corners.max(0))
        h, w = shape
        return max(int(x0), 0), max(int(y0), 0), min(int(x1) + 1, w), min(int(y1) + 1, h)

    def point(self, u: float, v: float) -> np.ndarray:
        return self.centre + u * self.width * self.right - v * self.height * self.up

    def uv(self, xx: np.ndarray, yy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Face coordinates of image pixel coordinates ``xx``, ``yy`` (same shapes)."""
        dx, dy = xx - self.centre[0], yy - self.centre[1]
        return ((dx * self.right[0] + dy * self.right[1]) / self.width,
                -(dx * self.up[0] + dy * self.up[1]) / self.height)


def _hair(window: np.ndarray, person: np.ndarray, face_area: np.ndarray, frame: _FaceFrame,
          origin: tuple[int, int]) -> np.ndarray:
    """Hair of one face: ``(h, w)`` bool mask of the ``(h, w, 3)`` RGB ``window`` at ``origin``.

    The person next to the head and above the forehead is sure to be hair; this face's skin, the
    background and the chest below the chin are sure not to be. A colour model of each then
    decides for the rest of the person around the head and over the shoulders (long hair), the
    guided filter moves the result onto the photo's edges, and only hair connected to the head
    is kept. Works on a copy at most :data:`_HAIR_WORK_SIDE` pixels long.
    """
    h, w = person.shape
    scale = min(1.0, _HAIR_WORK_SIDE / max(h, w, 1))
    size = (max(round(w * scale), 1), max(round(h * scale), 1))

    def small(mask: np.ndarray) -> np.ndarray:
        return cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)

    picture = cv2.resize(np.ascontiguousarray(window), size, interpolation=cv2.INTER_AREA)
    body, face = small(person), small(face_area)
    yy, xx = np.mgrid[0:size[1], 0:size[0]].astype(np.float32)
    u, v = frame.uv(xx / scale + origin[0], yy / scale + origin[1])
    head = (u / 0.95) ** 2 + ((v + 0.15) / 0.95) ** 2 <= 1.0
    shoulders = (np.abs(u) <= _HAIR_REACH_U[1] - 0.1) & (v >= 0) & (v <= _HAIR_REACH_V[1] - 0.1)
    chest = body & (np.abs(u) < 0.4) & (v > 0.55)
    margin = np.ones((2 * _hair_margin(frame, scale) + 1,) * 2, np.uint8)
    inside = cv2.erode(body.astype(np.uint8), margin).astype(bool)
    outside = ~cv2.dilate(body.astype(np.uint8), margin).astype(bool)
    face_core = cv2.erode(face.astype(np.uint8), margin).astype(bool)
    face_rim = cv2.dilate(face.astype(np.uint8), margin).astype(bool)
    sure = inside & head & ~face_rim & (v < 0.1)
    if sure.sum() < _MIN_HAIR_SAMPLES:
        return np.zeros((h, w), bool)  # bald, hooded or cropped at the hairline: nothing to learn from
    score = colour_likelihood(picture, sure, face_core | outside | chest)
    candidate = body & (head | shoulders) & ~face & ~chest
    soft = np.where(candidate, 1.0 / (1.0 + np.exp(_HAIR_MARGIN - score)), 0.0).astype(np.float32)
    soft[sure] = 1.0
    hair = guided_refine(window, soft, max(round(_HAIR_EDGE * frame.width), 1)) > 0.5
    hair &= ~face_area & person
    count, labels = cv2.connectedComponents(hair.astype(np.uint8))
    big_sure = cv2.resize(sure.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
    connected = np.zeros(count, bool)
    connected[labels[big_sure & hair]] = True
    connected[0] = False  # not hair
    return connected[labels]


def _hair_margin(frame: _FaceFrame, scale: float) -> int:
    return max(round(0.04 * frame.width * scale), 1)
