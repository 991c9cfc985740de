"""int8 U-Nets for CPUs with int8 dot-product units (VNNI, AMX), by ONNX Runtime static quantization.

A TTN's U-Net is exported to ONNX and quantized in QDQ format: weights int8 per output channel,
activations uint8 per tensor. The activation ranges are calibrated on the portraits shipped in
``portrait_stylize/data/calibration`` (crops of the public-domain photos in ``examples/``) and on
a seeded synthetic texture (gradients plus noise): portraits alone leave out the contrast of
textured pictures, which then clip (29.5 dB from float32 on such a picture, 42 dB with the
texture in the calibration; docs/performance.md). The guided filter is not quantized: it runs in
float32 after the U-Net (:meth:`TTN.finish <portrait_stylize.models.ttn.TTN.finish>`), because
its variance terms need the precision. Both int8 backends run the same QDQ graph: ``onnx-int8``
with ONNX Runtime, ``openvino-int8`` with OpenVINO (the same arithmetic, within 0.2 dB).

Three calibration methods (min-max, the 99.99th percentile, entropy) are tried and the one whose
network comes closest to float32 on a held-out portrait and a held-out texture (PSNR, peak = the
[-1, 1] range; the smaller margin over each floor decides) is kept; under
:data:`MIN_PORTRAIT_PSNR` on the portrait or :data:`MIN_TEXTURE_PSNR` on the texture the style is
refused for int8. Quantizing takes a few seconds, so the result is cached in
``$HF_HOME/portrait-stylize/int8/``, keyed by the network's weights and the ONNX Runtime version
(written to a temporary name and renamed: never half-written).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import io
import json
import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..common.data_home import data_home
from ..common.files import write_atomically
from ..errors import QuantizationError
from ..models.ttn import TTN
from . import cpu
from .onnx_export import GRAPH_VERSION

#: Quantized U-Nets further from float32 than this (dB) on the held-out portrait, or on the
#: held-out texture, are refused.
MIN_PORTRAIT_PSNR, MIN_TEXTURE_PSNR = 40.0, 35.0
CALIBRATION = Path(__file__).parents[1] / "data" / "calibration"
#: Portraits whose activations set the ranges, and the one held out to measure the PSNR.
CALIBRATE_ON, HELD_OUT = ("astronaut.jpg", "group.jpg"), "hopper.jpg"
#: Seeds of the synthetic textures that calibrate, and of the one held out.
CALIBRATE_TEXTURES, HELD_OUT_TEXTURE = (1,), 2
#: Side of the calibration pictures (the portraits' crops are this size).
_SIDE = 192


@dataclass(frozen=True)
class Int8UNet:
    """A quantized U-Net: the ONNX model, the calibration method chosen and its PSNR (dB) from
    float32 on the held-out portrait and texture."""

    onnx: bytes
    method: str
    psnr: float
    texture_psnr: float

    def margin(self) -> float:
        """dB over the nearer of the two floors (negative: refused)."""
        return min(self.psnr - MIN_PORTRAIT_PSNR, self.texture_psnr - MIN_TEXTURE_PSNR)


def cache_dir() -> Path:
    """``$HF_HOME/portrait-stylize/int8`` (read at every call)."""
    return data_home() / "int8"


def _portrait(name: str) -> np.ndarray:
    """``(1, 3, H, W)`` float32 in [-1, 1], a TTN's input range."""
    with Image.open(CALIBRATION / name) as image:
        rgb = np.asarray(image.convert("RGB"), np.float32)
    return np.ascontiguousarray((rgb / 127.5 - 1.0).transpose(2, 0, 1)[None])


def texture(seed: int, side: int = _SIDE) -> np.ndarray:
    """``(1, 3, side, side)`` float32 in [-1, 1]: colour gradients plus Gaussian noise (sigma 0.1
    of the range's half), a seeded stand-in for textured, high-contrast pictures."""
    yy, xx = np.mgrid[0:side, 0:side] / side
    base = np.stack([xx, 1 - yy, xx * yy]) * 2 - 1
    noise = np.random.default_rng(seed).normal(0.0, 0.1, base.shape)
    return np.clip(base + noise, -1, 1).astype(np.float32)[None]


def _key(net: TTN) -> str:
    """The cache key of ``net``'s int8 U-Net: its weights, ONNX Runtime's version, how our graphs
    are made (:data:`~.onnx_export.GRAPH_VERSION`), and whether the CPU has int8 dot-product
    units. The PSNRs kept with it hold for that arithmetic only: without those units the runtimes
    multiply bytes in pairs that saturate at 16 bits (the White-box style: 42.7 dB on a portrait
    with VNNI, 33 on the same machine capped to AVX2), so a cache shared with another machine (a
    network home, a container image) must not carry a VNNI machine's check to an AVX2 one."""
    digest = hashlib.sha256(json.dumps(net.config, sort_keys=True).encode())
    digest.update(b"int8 units" if cpu.has_int8_units() else b"no int8 units")
    for name, tensor in sorted(net.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    digest.update(f"{importlib.metadata.version('onnxruntime')} graph {GRAPH_VERSION}".encode())
    return digest.hexdigest()[:32]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(4.0 / mse)


@contextlib.contextmanager
def _quiet():
    """ONNX Runtime's quantizer prints its progress to stdout, advice to the root logger and a
    NumPy warning for empty histogram bins (entropy calibration); none belongs in a user's output
    (the root logger's level is restored afterwards)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            yield
    finally:
        root.setLevel(level)


def quantized_unet(net: TTN, checked: bool = True) -> Int8UNet:
    """The int8 U-Net of ``net``: cached, or quantized now (see the module docstring).

    Args:
        checked: refuse a result under the floors (``False``: keep any, for timing runs on
            random weights).

    Raises:
        QuantizationError: the best calibration method stays under a floor.
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
        found = Int8UNet(model_path.read_bytes(), str(info["method"]), float(info["psnr"]),
                         float(info["texture_psnr"]))
    except (OSError, ValueError, KeyError, TypeError):
        found = None  # not made yet, or damaged: make it again
    if found is None:
        held_out = [_portrait(HELD_OUT), texture(HELD_OUT_TEXTURE)]
        with torch.inference_mode():
            references = [net.forward_aligned(torch.from_numpy(x)).numpy() for x in held_out]

        class Portraits(CalibrationDataReader):
            def __init__(self) -> None:
                pictures = [_portrait(name) for name in CALIBRATE_ON] + [texture(s) for s in CALIBRATE_TEXTURES]
                self._inputs = iter([{"image": picture} for picture in pictures])

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
                session = onnx_session(data)
                psnrs = []
                for x, reference in zip(held_out, references):
                    with torch.inference_mode():
                        unet = torch.from_numpy(session.run(None, {"image": x})[0])
                        psnrs.append(_psnr(net.finish(torch.from_numpy(x), unet).numpy(), reference))
                results.append(Int8UNet(data, method.name.lower(), *psnrs))
        found = max(results, key=Int8UNet.margin)
        info = json.dumps({"method": found.method, "psnr": found.psnr, "texture_psnr": found.texture_psnr,
                           "all": {r.method: [round(r.psnr, 2), round(r.texture_psnr, 2)] for r in results}})
        model_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(model_path, lambda tmp: Path(tmp).write_bytes(found.onnx))
        write_atomically(info_path, lambda tmp: Path(tmp).write_text(info, encoding="utf-8"))
    if checked and found.margin() < 0:
        raise QuantizationError(
            f"in int8 this network is {found.psnr:.1f} dB from float32 on a held-out portrait and "
            f"{found.texture_psnr:.1f} dB on a held-out texture (the floors are {MIN_PORTRAIT_PSNR:g} and "
            f"{MIN_TEXTURE_PSNR:g} dB); use the openvino, openvino-bf16 or onnx backend instead")
    return found
