"""Weights of the networks behind the evaluation metrics: downloaded on first use from their
publishers, checked, converted to a safe format and cached, like styles.

=============  =====================================================  ==========================
name           network (publisher)                                    licence
=============  =====================================================  ==========================
``lpips``      AlexNet features (torchvision) + LPIPS v0.1 linear      BSD-3-Clause (both)
               heads (the ``lpips`` package's own file)
``inception``  Inception-v3, ImageNet (torchvision), 2048-d pool       BSD-3-Clause
               features for FID and KID
``arcface``    ArcFace ResNet-50 trained on WebFace600K (InsightFace    non-commercial research
               ``buffalo_l``), 512-d face embeddings                   only (InsightFace models)
=============  =====================================================  ==========================

Pickle files are read only here, with PyTorch's restricted ``weights_only`` unpickler, after
their checksum is verified, and only to be rewritten as safetensors; the ONNX face network is
protobuf (no code) and kept as it is. What the publishers state about their files differs, and
so does what is checked: torchvision names its files by the first 8 hex digits of their sha256
(checked, as torchvision itself does); the ``lpips`` wheel's file is checked against its full
sha256; InsightFace publishes no checksum, so its archive's sha256 is recorded on first download
(trust on first use) and shown in ``source.json``. Every later use checks the converted file
against the sha256 recorded when it was made, so a damaged cache is found, not used.

The cache is ``$HF_HOME/portrait-stylize/metrics/NAME/``.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..common.data_home import data_home
from ..common.downloads import download
from ..common.files import sha256_file, write_atomically
from ..common.offline import OFFLINE_VARIABLES, is_offline
from ..errors import ChecksumMismatchError, MetricWeightsError, StyleNotCachedError

#: The ``lpips`` 0.1.4 wheel's ``lpips/weights/v0.1/alex.pth`` (the perceptual linear heads).
LPIPS_HEADS_SHA256 = "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0"
SOURCE_FILE = "source.json"


@dataclass(frozen=True)
class MetricWeights:
    """Where one metric network's weights come from and how they become a safe file.

    Attributes:
        name: key in :data:`METRIC_WEIGHTS`, and the cache folder's name.
        url: the publisher's file.
        sha256_prefix: the leading hex digits of its sha256 that the publisher states ("" when
            it states none: recorded on first download instead).
        filename: the safe file made from it (``.safetensors`` or ``.onnx``).
        convert: makes ``filename`` (second argument) from the downloaded file (first).
        licence: the weights' licence, repeated in evaluation reports.
    """

    name: str
    url: str
    sha256_prefix: str
    filename: str
    convert: Callable[[Path, Path], None]
    licence: str


def _read_pickled_state(path: Path) -> dict:
    import torch

    # weights_only: PyTorch's restricted unpickler (tensors and plain containers, no code).
    return torch.load(path, map_location="cpu", weights_only=True)


def _save(tensors: dict, dest: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(dest))


def _lpips_heads() -> Path:
    import lpips

    heads = Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"
    if sha256_file(heads) != LPIPS_HEADS_SHA256:
        raise ChecksumMismatchError(f"{heads}: not the LPIPS v0.1 heads of lpips 0.1.4 (sha256 differs); "
                                    "reinstall lpips (pip install --force-reinstall lpips==0.1.4)")
    return heads


#: torchvision AlexNet ``features`` index -> the ``lpips`` package's slice holding that layer.
_ALEX_SLICES = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}


def _convert_lpips(download: Path, dest: Path) -> None:
    alexnet = _read_pickled_state(download)
    tensors = {f"net.slice{s}.{i}.{p}": alexnet[f"features.{i}.{p}"]
               for i, s in _ALEX_SLICES.items() for p in ("weight", "bias")}
    tensors.update(_read_pickled_state(_lpips_heads()))
    _save(tensors, dest)


def _convert_inception(download: Path, dest: Path) -> None:
    state = _read_pickled_state(download)
    _save({k: v for k, v in state.items() if not k.startswith("AuxLogits.")}, dest)


def _extract_arcface(download: Path, dest: Path) -> None:
    with zipfile.ZipFile(download) as archive:
        members = [m for m in archive.namelist() if m.endswith("w600k_r50.onnx")]
        if not members:
            raise MetricWeightsError(f"{download}: no w600k_r50.onnx inside (members: {archive.namelist()[:8]})")
        with archive.open(members[0]) as src, open(dest, "wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)


METRIC_WEIGHTS: dict[str, MetricWeights] = {w.name: w for w in (
    MetricWeights("lpips", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", "7be5be79",
                  "lpips_alex.safetensors", _convert_lpips, "BSD-3-Clause (torchvision AlexNet, LPIPS heads)"),
    MetricWeights("inception", "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth", "0cc3c7bd",
                  "inception_v3.safetensors", _convert_inception, "BSD-3-Clause (torchvision Inception-v3)"),
    MetricWeights("arcface", "https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip", "",
                  "w600k_r50.onnx", _extract_arcface, "InsightFace models: non-commercial research use only"),
)}


def metric_folder(name: str) -> Path:
    """The cache folder of one metric network."""
    return data_home() / "metrics" / name


def metric_weights_path(name: str, progress: bool = True) -> Path:
    """The verified safe weights file of metric network ``name``, downloaded and converted first
    if needed.

    Raises:
        MetricWeightsError: unknown name, offline with nothing cached, a damaged cache entry
            that cannot be refetched, or a failed conversion.
        ChecksumMismatchError: the download is not the publisher's file.
    """
    if name not in METRIC_WEIGHTS:
        raise MetricWeightsError(f"unknown metric network {name!r}; known: {', '.join(METRIC_WEIGHTS)}")
    spec = METRIC_WEIGHTS[name]
    folder = metric_folder(name)
    dest = folder / spec.filename
    record = _read_record(folder)
    if record and dest.is_file() and sha256_file(dest) == record.get("converted_sha256"):
        return dest
    copy = f"or copy {folder} from a machine that has it (there: $HF_HOME/portrait-stylize/metrics/{name})"
    if is_offline():
        state = "is damaged (its sha256 differs from the one recorded)" if dest.exists() else "is not cached"
        raise MetricWeightsError(f"the {name} network for the evaluation metrics {state} at {dest}, and downloading is "
                                 f"off ({' or '.join(OFFLINE_VARIABLES)} is set). Unset it and run once online to "
                                 f"fetch {spec.url}, {copy}.")
    folder.mkdir(parents=True, exist_ok=True)
    raw = folder / ("download" + Path(spec.url).suffix)
    try:
        download(spec.url, raw, label=f"metric network {name!r}", progress=progress)
    except StyleNotCachedError as exc:
        # The message of `download` ends with advice for styles (use a built-in one), which means
        # nothing for a metric network: name the transport error it was raised from (DNS, refused,
        # timed out; its __context__, since offline was ruled out above) instead.
        cause = exc.__context__
        raise MetricWeightsError(f"the {name} network for the evaluation metrics is not cached at {dest} and "
                                 f"{spec.url} cannot be reached ({type(cause).__name__}: {cause}). Connect to the "
                                 f"internet and run again, {copy}.") from None
    try:
        digest = sha256_file(raw)
        if not digest.startswith(spec.sha256_prefix):
            raise ChecksumMismatchError(f"{spec.url}: sha256 {digest} does not start with {spec.sha256_prefix}, "
                                        "which the publisher states; the download is not their file, "
                                        "so it was deleted")
        try:
            write_atomically(dest, lambda tmp: spec.convert(raw, Path(tmp)))
        except (OSError, KeyError, RuntimeError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError) as exc:
            raise MetricWeightsError(f"{spec.url}: cannot make {spec.filename} from it "
                                     f"({type(exc).__name__}: {exc})") from None
        record = {"url": spec.url, "download_sha256": digest, "converted_sha256": sha256_file(dest),
                  "licence": spec.licence}
        write_atomically(folder / SOURCE_FILE, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2)))
    finally:
        raw.unlink(missing_ok=True)
    return dest


def _read_record(folder: Path) -> dict | None:
    try:
        record = json.loads((folder / SOURCE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None

