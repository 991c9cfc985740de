"""int8 U-Nets for CPUs with int8 dot-product units (VNNI, AMX), by ONNX Runtime static quantization.

A TTN's U-Net is exported to ONNX and quantized in QDQ format: weights int8 per output channel,
activations uint8 per tensor, their ranges calibrated on the portraits shipped in
``portrait_stylize/data/calibration`` (crops of the public-domain photos in ``examples/``). The
guided filter is not quantized: it runs in float32 after the U-Net (:meth:`TTN.finish
<portrait_stylize.models.ttn.TTN.finish>`), because its variance terms need the precision.

Three calibration methods (min-max, the 99.99th percentile, entropy) are tried and the one whose
network comes closest to float32 on a held-out portrait (PSNR, peak = the [-1, 1] range) is kept;
below :data:`MIN_INT8_PSNR` the style is refused for int8. Quantizing takes a few seconds, so the
result is cached in ``$HF_HOME/portrait-stylize/int8/``, keyed by the network's weights and the
ONNX Runtime version (written to a temporary name and renamed: never half-written).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import io
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..common.data_home import data_home
from ..common.files import write_atomically
from ..errors import QuantizationError
from ..models.ttn import TTN

#: Quantized U-Nets closer to float32 than this (dB) are refused.
MIN_INT8_PSNR = 35.0
CALIBRATION = Path(__file__).parents[1] / "data" / "calibration"
#: Portraits whose activations set the ranges, and the one held out to measure the PSNR.
CALIBRATE_ON, HELD_OUT = ("astronaut.jpg", "group.jpg"), "hopper.jpg"


@dataclass(frozen=True)
class Int8UNet:
    """A quantized U-Net: the ONNX model, the calibration method chosen and its PSNR (dB)."""

    onnx: bytes
    method: str
    psnr: float


def cache_dir() -> Path:
    """``$HF_HOME/portrait-stylize/int8`` (read at every call)."""
    return data_home() / "int8"


def _portrait(name: str) -> np.ndarray:
    """``(1, 3, H, W)`` float32 in [-1, 1], a TTN's input range."""
    with Image.open(CALIBRATION / name) as image:
        rgb = np.asarray(image.convert("RGB"), np.float32)
    return np.ascontiguousarray((rgb / 127.5 - 1.0).transpose(2, 0, 1)[None])


def _key(net: TTN) -> str:
    digest = hashlib.sha256(json.dumps(net.config, sort_keys=True).encode())
    for name, tensor in sorted(net.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    digest.update(importlib.metadata.version("onnxruntime").encode())
    return digest.hexdigest()[:32]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(4.0 / mse)


@contextlib.contextmanager
def _quiet():
    """ONNX Runtime's quantizer prints its progress to stdout and advice to the root logger;
    neither belongs in a user's output (the root logger's level is restored afterwards)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def quantized_unet(net: TTN, min_psnr: float | None = MIN_INT8_PSNR) -> Int8UNet:
    """The int8 U-Net of ``net``: cached, or quantized now (see the module docstring).

    Args:
        min_psnr: refuse a result further from float32 than this (``None``: keep any, for
            timing runs on random weights).

    Raises:
        QuantizationError: the best calibration method stays below ``min_psnr``.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from .onnx_export import onnx_bytes, onnx_session

    key = _key(net)
    model_path, info_path = cache_dir() / f"{key}.onnx", cache_dir() / f"{key}.json"
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
        found = Int8UNet(model_path.read_bytes(), str(info["method"]), float(info["psnr"]))
    except (OSError, ValueError, KeyError, TypeError):
        found = None  # not made yet, or damaged: make it again
    if found is None:
        held_out = _portrait(HELD_OUT)
        with torch.inference_mode():
            reference = net.forward_aligned(torch.from_numpy(held_out)).numpy()

        class Portraits(CalibrationDataReader):
            def __init__(self) -> None:
                self._inputs = iter([{"image": _portrait(name)} for name in CALIBRATE_ON])

            def get_next(self):
                return next(self._inputs, None)

        results = []
        with tempfile.TemporaryDirectory() as tmp:
            source = Path(tmp) / "unet.onnx"
            source.write_bytes(onnx_bytes(net, "unet"))
            methods = ((CalibrationMethod.MinMax, {}), (CalibrationMethod.Percentile, {"CalibPercentile": 99.99}),
                       (CalibrationMethod.Entropy, {}))
            for method, extra in methods:
                target = Path(tmp) / f"{method.name}.onnx"
                with _quiet():
                    quantize_static(str(source), str(target), Portraits(), quant_format=QuantFormat.QDQ,
                                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                    calibrate_method=method, extra_options=extra)
                data = target.read_bytes()
                unet = onnx_session(data).run(None, {"image": held_out})[0]
                with torch.inference_mode():
                    out = net.finish(torch.from_numpy(held_out), torch.from_numpy(unet)).numpy()
                results.append(Int8UNet(data, method.name.lower(), _psnr(out, reference)))
        found = max(results, key=lambda r: r.psnr)
        info = json.dumps({"method": found.method, "psnr": found.psnr,
                           "all": {r.method: round(r.psnr, 2) for r in results}})
        model_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(model_path, lambda tmp: Path(tmp).write_bytes(found.onnx))
        write_atomically(info_path, lambda tmp: Path(tmp).write_text(info, encoding="utf-8"))
    if min_psnr is not None and found.psnr < min_psnr:
        raise QuantizationError(f"in int8 this network is {found.psnr:.1f} dB from float32 on a held-out portrait "
                                f"(the floor is {min_psnr:g} dB); use the onnx or openvino backend instead")
    return found
