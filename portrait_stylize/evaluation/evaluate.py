"""Score styles on a folder of photos with the papers' metrics, and show the results side by side.

For each style, every photo is stylized and scored (see :mod:`portrait_stylize.evaluation.metrics`):

* **content** (the photo's structure kept): SSIM of luma, PSNR and LPIPS, photo against result;
* **style** (how close the results come to the style): FID and KID between the results and a
  folder of style exemplars (e.g. the anime pictures a style was trained on), when given;
* **face** (the person still recognisable): cosine similarity of ArcFace embeddings of the
  largest face in the photo and the same place in the result (identity), and how far that face's
  landmarks moved (landmark error).

``evaluate`` scores what it can: a metric whose network cannot be had (offline and not cached, its
package not installed) or that has nothing to compare with (no exemplars) is left out, and the
report says why under ``protocol["skipped"]``; SSIM and PSNR need nothing, so a run always scores.
Training's validation (``strict``) stops instead, before the first step, so a long run does not
go without the metrics it was asked for.

Protocol. Photos and exemplars are scaled so their short side is ``size`` (256, DCT-Net's
training and test size) and centre-cropped square; styles run on that crop. DCT-Net's paper
reports FID and identity on its own 100-image test set and the locally controllable paper SSIM,
LPIPS and FID per style; their pictures are not public, so numbers here are comparable between
styles scored on the same folders, not with the papers' tables. FID uses torchvision's
ImageNet Inception-v3 rather than the 2015 TensorFlow Inception of the original FID, and
identity uses ArcFace rather than the paper's CosFace: both are stated in every report.
FID needs many pictures to be stable (the papers use hundreds to thousands); KID is unbiased
for small sets and is reported with its standard deviation over random subsets.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file
from tqdm.auto import tqdm

from ..batch import expand_inputs
from ..common.files import write_atomically
from ..errors import InvalidArgumentError, MissingDependencyError, PortraitStylizeError, StyleNotCachedError
from ..faces import detect_faces, resolve_face_backend
from ..imaging.io import load_image, pil_to_tensor, save_image
from ..options import IMAGE_SUFFIXES
from .metric_weights import METRIC_WEIGHTS, metric_weights_path
from .metrics import (
    FaceEmbedder,
    PerceptualDistance,
    PoolFeatures,
    SetDistance,
    identity_similarity,
    landmark_error,
    psnr,
    ssim,
)

#: Side of the square crops everything is scored at (DCT-Net's training and test size).
DEFAULT_SIZE = 256
#: Photos shown in the picture grid.
GRID_ROWS = 6
GRID_THUMB = 192
#: The metrics that can be left out of a report (``protocol["skipped"]``), as reports name them.
OPTIONAL_METRICS = {"lpips": "LPIPS", "fid_kid": "FID and KID", "identity": "identity", "landmarks": "landmark error"}
NO_EXEMPLARS = ("needs pictures of the style to compare with: a folder of exemplars (--exemplars DIR, "
                "exemplars= in Python)")


@dataclass(frozen=True)
class _Network:
    """What one metric's network needs (packages, then its weights) and how it is built."""

    packages: tuple[str, ...]
    weights: str
    build: Callable[[Path], object]
    description: str


_NETWORKS = {
    "lpips": _Network(("lpips", "torchvision"), "lpips", lambda path: PerceptualDistance(load_file(str(path))),
                      f"LPIPS v0.1, AlexNet trunk ({METRIC_WEIGHTS['lpips'].licence})"),
    "fid_kid": _Network(("torchmetrics", "torchvision"), "inception", lambda path: PoolFeatures(load_file(str(path))),
                        "torchmetrics FID/KID on torchvision's ImageNet Inception-v3 pool features "
                        f"({METRIC_WEIGHTS['inception'].licence}); not the TF-2015 Inception of the original FID"),
    "identity": _Network(("onnxruntime",), "arcface", FaceEmbedder, "ArcFace ResNet-50, WebFace600K, InsightFace "
                         f"buffalo_l ({METRIC_WEIGHTS['arcface'].licence})"),
}


@dataclass
class MetricNetworks:
    """The networks behind the metrics: LPIPS, the FID/KID feature network and the face embedder;
    ``None`` for one that is not available, with the reason in ``skipped`` (metric -> reason)."""

    perceptual: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None
    features: torch.nn.Module | None
    faces: Callable[[np.ndarray, np.ndarray], np.ndarray] | None
    descriptions: dict[str, str]
    skipped: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, progress: bool = True, *, strict: bool = True, fid_kid: bool = True) -> MetricNetworks:
        """The real networks, downloaded and converted on first use
        (:func:`~portrait_stylize.evaluation.metric_weights.metric_weights_path`).

        Args:
            strict: raise when a network cannot be had; otherwise leave it out and say why.
            fid_kid: load the FID/KID feature network (only needed with exemplars).

        Raises:
            MissingDependencyError, MetricWeightsError, ...: with ``strict``, the first network that
                cannot be had (a package not installed, weights not cached offline, a failed download).
        """
        loaded, descriptions, skipped = {}, {}, {}
        for metric, network in _NETWORKS.items():
            if metric == "fid_kid" and not fid_kid:
                continue
            try:
                for module in network.packages:
                    if importlib.util.find_spec(module) is None:
                        raise MissingDependencyError(f"{OPTIONAL_METRICS[metric]} needs the {module} package: "
                                                     "pip install 'portrait-stylize[evaluate]'")
                loaded[metric] = network.build(metric_weights_path(network.weights, progress))
            except PortraitStylizeError as exc:
                if strict:
                    raise
                skipped[metric] = str(exc)
            else:
                descriptions[metric] = network.description
        return cls(loaded.get("lpips"), loaded.get("fid_kid"), loaded.get("identity"), descriptions, skipped)


def list_images(folder: str | os.PathLike, what: str) -> list[Path]:
    """The image files directly in ``folder``, sorted by name.

    Raises:
        InvalidArgumentError: ``folder`` is not a folder or holds no images.
    """
    path = Path(folder)
    if not path.is_dir():
        raise InvalidArgumentError(f"{what}: {path} is not a folder")
    files = expand_inputs([str(path)])
    if not files:
        raise InvalidArgumentError(f"{what}: {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def square(image: Image.Image, size: int) -> Image.Image:
    """``image`` scaled so its short side is ``size`` and centre-cropped to ``size``², RGB."""
    image = image.convert("RGB")
    scale = size / min(image.size)
    w, h = max(size, round(image.width * scale)), max(size, round(image.height * scale))
    image = image.resize((w, h), Image.LANCZOS)
    left, top = (w - size) // 2, (h - size) // 2
    return image.crop((left, top, left + size, top + size))


def _largest_face_landmarks(rgb: np.ndarray) -> np.ndarray | None:
    faces = detect_faces(rgb)
    return max(faces, key=lambda f: f.size).landmarks if faces else None


def _mean(values: list[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


class Validation:
    """A folder of photos (and optionally exemplars), read and prepared once, that scores any
    stylizing function with every metric it can: what ``evaluate`` runs per style and what
    training runs every N steps.

    Args:
        photos: folder of photos.
        exemplars: folder of style exemplars for FID and KID (``None``: not scored).
        size: side of the square crops (see the module docstring).
        limit: use at most this many photos (the first by name).
        networks: the metric networks (default: :meth:`MetricNetworks.load`).
        progress: show download progress bars.
        strict: raise when a metric cannot be had; ``False``: score the others and say why in
            ``protocol["skipped"]`` (metric -> reason; FID and KID are there without exemplars).

    Raises:
        InvalidArgumentError: a folder without images, too few exemplars, a bad size or limit.
        InvalidImageError: an unreadable photo or exemplar (named).
        MissingDependencyError: with ``strict``, a metric package is not installed.
        MetricWeightsError: with ``strict``, a metric network cannot be fetched (offline and not cached).
        StyleNotCachedError: with ``strict``, the face backend's weights cannot be fetched.
    """

    def __init__(self, photos: str | os.PathLike, exemplars: str | os.PathLike | None = None, *,
                 size: int = DEFAULT_SIZE, limit: int | None = None, networks: MetricNetworks | None = None,
                 progress: bool = True, strict: bool = True) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or not 32 <= size <= 2048:
            raise InvalidArgumentError(f"size must be an integer in [32, 2048], got {size!r}")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise InvalidArgumentError(f"limit must be a positive integer, got {limit!r}")
        # Every picture is read first: a bad file stops before any network is loaded.
        self.files = list_images(photos, "photos")[:limit]
        self.pictures = [square(load_image(p), size) for p in self.files]
        references = [square(load_image(p), size) for p in list_images(exemplars, "exemplars")] if exemplars else []
        if exemplars and len(references) < 2:
            raise InvalidArgumentError(f"exemplars: FID and KID need at least 2 pictures in {exemplars}")
        self.networks = networks or MetricNetworks.load(progress, strict=strict, fid_kid=bool(references))
        skipped = dict(self.networks.skipped)
        if not references:
            skipped["fid_kid"] = NO_EXEMPLARS
        # The results keep faces where the photos have them: landmarks found once, on the photos.
        try:
            self.landmarks = [_largest_face_landmarks(np.asarray(p)) for p in self.pictures]
        except StyleNotCachedError as exc:  # a face backend whose weights cannot be had (facexlib offline)
            if strict:
                raise
            self.landmarks = [None] * len(self.pictures)
            skipped["landmarks"] = str(exc)
            skipped["identity"] = "; ".join(reason for reason in (skipped.get("identity"), str(exc)) if reason)
        descriptions = {**self.networks.descriptions,
                        "landmarks": f"the 5 landmarks of the {resolve_face_backend()} face detector, found again "
                                     "in the result: mean distance over the photo's distance between the eyes"}
        self.photo_tensors = [pil_to_tensor(p) for p in self.pictures]
        # The exemplars' features once, not at every score (every style, every validation step).
        self.set_distance = SetDistance(self.networks.features, [pil_to_tensor(p) for p in references]) \
            if references and self.networks.features is not None else None
        self.protocol = {"photos": len(self.pictures), "exemplars": len(references), "size": size,
                         "crop": "short side scaled to size, centre square",
                         "networks": {k: v for k, v in descriptions.items() if k not in skipped}, "skipped": skipped}

    def score(self, stylize: Callable[[Image.Image], Image.Image], progress: bool = False,
              desc: str = "scoring") -> tuple[dict, list[Image.Image]]:
        """Stylize every photo with ``stylize`` (PIL RGB -> PIL RGB of the same size) and score
        the results: ``({"images", "ssim", "psnr", "lpips", "identity", "faces", "landmark_error",
        "faces_found", "fid", "kid", "kid_std"}, results)``, ``None`` where a metric has nothing
        to score or is skipped (``protocol["skipped"]``). ``faces``: photos with a face;
        ``faces_found``: those whose face was found again in the result (the landmark error's)."""
        results: list[Image.Image] = []
        stylized_tensors: list[torch.Tensor] = []
        scores: dict[str, list[float]] = {"ssim": [], "psnr": [], "lpips": [], "identity": [], "landmarks": []}
        for picture, tensor, marks in tqdm(list(zip(self.pictures, self.photo_tensors, self.landmarks)), desc=desc,
                                           unit="photo", disable=not progress):
            result = stylize(picture).convert("RGB")
            results.append(result)
            stylized = pil_to_tensor(result)
            stylized_tensors.append(stylized)
            scores["ssim"].append(float(ssim(tensor, stylized)[0]))
            scores["psnr"].append(float(psnr(tensor, stylized)[0]))
            if self.networks.perceptual is not None:
                scores["lpips"].append(float(self.networks.perceptual(tensor, stylized)[0]))
            if marks is None:
                continue
            if self.networks.faces is not None:
                scores["identity"].append(identity_similarity(self.networks.faces, np.asarray(picture),
                                                              np.asarray(result), marks))
            error = landmark_error(marks, detect_faces(np.asarray(result)))
            if error is not None:
                scores["landmarks"].append(error)
        row = {"images": len(results), "ssim": _mean(scores["ssim"]), "psnr": _mean(scores["psnr"]),
               "lpips": _mean(scores["lpips"]), "identity": _mean(scores["identity"]),
               "faces": sum(marks is not None for marks in self.landmarks),
               "landmark_error": _mean(scores["landmarks"]), "faces_found": len(scores["landmarks"]),
               "fid": None, "kid": None, "kid_std": None}
        if self.set_distance is not None:
            row.update(self.set_distance(stylized_tensors))
        return row, results


def evaluate(styles: list[str], photos: str | os.PathLike, out: str | os.PathLike, *,
             exemplars: str | os.PathLike | None = None, size: int = DEFAULT_SIZE, limit: int | None = None,
             networks: MetricNetworks | None = None, device: str | None = None, progress: bool = True) -> dict:
    """Stylize ``photos`` with each style, score the results with every metric that can be had
    and write a report to ``out``.

    Args:
        styles: style names (as for :func:`~portrait_stylize.load_style`).
        photos, exemplars, size, limit, networks: see :class:`Validation`.
        out: folder for ``metrics.json``, ``metrics.md``, ``grid.jpg`` and each style's results
            (``STYLE/NAME.png``); created if needed.
        device: where the styles run.
        progress: show progress bars.

    Returns:
        The report written to ``metrics.json``: ``{"protocol": {...}, "styles": {name: row}}``
        with the rows of :meth:`Validation.score`; ``protocol["skipped"]`` names each metric
        left out and why (e.g. the network it needs, where it comes from and how to get it).

    Raises:
        InvalidArgumentError, InvalidImageError: see :class:`Validation`; before any style runs.
    """
    from ..pipeline import load_style

    if not styles:
        raise InvalidArgumentError("name at least one style to evaluate")
    validation = Validation(photos, exemplars, size=size, limit=limit, networks=networks, progress=progress,
                            strict=False)
    stylizers = [load_style(name, device=device) for name in styles]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"protocol": {**validation.protocol, "styles": styles}, "styles": {}}
    results: dict[str, list[Image.Image]] = {}
    for stylizer in stylizers:
        report["styles"][stylizer.name], results[stylizer.name] = validation.score(stylizer, progress, stylizer.name)
        folder = out / stylizer.name.replace("/", "--")
        folder.mkdir(exist_ok=True)
        for path, result in zip(validation.files, results[stylizer.name]):
            save_image(result, folder / f"{path.stem}.png")
    write_report(report, out)
    save_image(grid(validation.pictures, results), out / "grid.jpg")
    return report


def write_report(report: dict, out: Path) -> None:
    """``metrics.json`` and ``metrics.md`` in ``out``, each written atomically."""
    write_atomically(out / "metrics.json", lambda tmp: Path(tmp).write_text(json.dumps(report, indent=2)))
    write_atomically(out / "metrics.md", lambda tmp: Path(tmp).write_text(markdown_table(report)))


def _cell(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _kid(row: dict) -> str:
    return "–" if row["kid"] is None else f"{row['kid']:.4f} ± {row['kid_std']:.4f}"


#: The table's columns: the metric that may be skipped (``None``: never), header, cell of a row.
_COLUMNS: tuple[tuple[str | None, str, Callable[[dict], str]], ...] = (
    (None, "SSIM ↑", lambda row: _cell(row["ssim"], 3)),
    (None, "PSNR dB ↑", lambda row: _cell(row["psnr"], 2)),
    ("lpips", "LPIPS ↓", lambda row: _cell(row["lpips"], 3)),
    ("identity", "identity ↑ (faces)", lambda row: f"{_cell(row['identity'], 3)} ({row['faces']})"),
    ("landmarks", "landmark error ↓ (found)",
     lambda row: f"{_cell(row['landmark_error'], 3)} ({row['faces_found']}/{row['faces']})"),
    ("fid_kid", "FID ↓", lambda row: _cell(row["fid"], 1)),
    ("fid_kid", "KID ↓ (± std)", _kid),
)


def markdown_table(report: dict) -> str:
    """The report as a Markdown table (one row per style, a column per metric scored) with its
    protocol below, and the metrics not scored with the reason for each."""
    protocol = report["protocol"]
    skipped = protocol["skipped"]
    columns = [(header, cell) for metric, header, cell in _COLUMNS if metric not in skipped]
    lines = ["| style | " + " | ".join(header for header, _ in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    lines += [f"| {name} | " + " | ".join(cell(row) for _, cell in columns) + " |"
              for name, row in report["styles"].items()]
    lines += ["", f"{protocol['photos']} photos, {protocol['exemplars']} exemplars, {protocol['size']}² crops "
                  f"({protocol['crop']})."]
    lines += [f"- {metric}: {text}" for metric, text in protocol["networks"].items()]
    if skipped:
        lines += ["", "Not scored:"]
        lines += [f"- {OPTIONAL_METRICS[metric]}: {reason}" for metric, reason in skipped.items()]
    return "\n".join(lines) + "\n"


def grid(photos: list[Image.Image], results: dict[str, list[Image.Image]]) -> Image.Image:
    """The first :data:`GRID_ROWS` photos, one per row: the photo, then each style's result."""
    rows = min(len(photos), GRID_ROWS)
    columns = 1 + len(results)
    gap = 4
    canvas = Image.new("RGB", (columns * (GRID_THUMB + gap) - gap, rows * (GRID_THUMB + gap) - gap), "white")
    for r in range(rows):
        for c, image in enumerate([photos[r]] + [images[r] for images in results.values()]):
            canvas.paste(image.resize((GRID_THUMB, GRID_THUMB), Image.LANCZOS),
                         (c * (GRID_THUMB + gap), r * (GRID_THUMB + gap)))
    return canvas
