"""Export a style's TTNs to ONNX (dynamic batch, height and width) and check them numerically.

Each exported graph is :meth:`TTN.forward_aligned`: input ``image`` ``(B, 3, H, W)`` float32 in
the style's ``input_range`` and ``channel_order`` with ``H, W`` multiples of 4 (pad by edge
replication, then crop the output), output ``stylized`` of the same shape, unclipped. Colour order,
range and padding stay outside the graph so that any runtime can feed it.

Needs the ``onnx`` package (used by ``torch.onnx.export``) and ``onnxruntime`` for the check.
"""

from __future__ import annotations

import copy
import io
import json
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import PortraitStylizeError
from .models.style import StyleModel
from .models.ttn import TTN

OPSET = 17
#: Largest absolute difference between ONNX Runtime and PyTorch accepted by :func:`export_onnx`.
ONNX_TOLERANCE = 1e-4
_CHECK_SHAPES = ((1, 3, 64, 96), (2, 3, 100, 36))


class ExportError(PortraitStylizeError, RuntimeError):
    """The ONNX export failed or does not reproduce PyTorch."""


class _Aligned(nn.Module):
    def __init__(self, net: TTN) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net.forward_aligned(image)


def onnx_bytes(net: TTN) -> bytes:
    """Serialize ``net.forward_aligned`` (float32, on CPU) as an ONNX model with dynamic B, H, W."""
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it; fail with our message, not torch's)
    except ImportError:
        raise ExportError("ONNX export needs the 'onnx' package: pip install 'onnx<1.20' onnxruntime") from None
    net = copy.deepcopy(net).float().cpu().eval()
    buffer = io.BytesIO()
    dynamic = {0: "batch", 2: "height", 3: "width"}
    # The tracer warns about shape arithmetic turned into constants and the exporter about its
    # deprecation; both are expected here (shapes only matter through multiples of 4, and the
    # numerical check in export_onnx catches any graph that does not generalise).
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Aligned(net), (torch.zeros(1, 3, 64, 64),), buffer, input_names=["image"],
                          output_names=["stylized"], dynamic_axes={"image": dynamic, "stylized": dynamic},
                          opset_version=OPSET, dynamo=False)
    return buffer.getvalue()


def onnx_session(model: bytes | str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session for ``model`` (bytes or path), using ``threads`` intra-op threads
    (default: ``torch.get_num_threads()``, so both runtimes compete on equal terms)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError("the ONNX backend needs onnxruntime: pip install onnxruntime") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def max_onnx_difference(net: TTN, session, shapes=_CHECK_SHAPES) -> float:
    """Largest ``|onnxruntime - torch|`` over random inputs of ``shapes`` (non-square, batch 2)."""
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    reference = copy.deepcopy(net).float().cpu().eval()
    for shape in shapes:
        x = torch.rand(shape, generator=generator) * 2 - 1
        with torch.inference_mode():
            expected = reference.forward_aligned(x).numpy()
        got = session.run(None, {"image": x.numpy()})[0]
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def export_onnx(model: StyleModel, out_dir: str | Path) -> list[Path]:
    """Write ``head.onnx`` (and ``bg.onnx`` when the style has one) plus ``config.json`` to ``out_dir``.

    Every graph is checked against PyTorch on random non-square inputs; a difference above
    :data:`ONNX_TOLERANCE` raises :class:`ExportError` and leaves ``out_dir`` untouched. Files are
    written to a temporary folder first and moved in place at the end.

    Returns:
        The written file paths.
    """
    out_dir = Path(out_dir)
    parts = {"head": model.head, **({"bg": model.bg} if model.bg is not None else {})}
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=f".{out_dir.name}.") as tmp:
        tmp_dir = Path(tmp)
        for part, net in parts.items():
            data = onnx_bytes(net)
            diff = max_onnx_difference(net, onnx_session(data))
            if diff > ONNX_TOLERANCE:
                raise ExportError(f"{part}: ONNX Runtime differs from PyTorch by {diff:.2e} (> {ONNX_TOLERANCE:g})")
            (tmp_dir / f"{part}.onnx").write_bytes(data)
        config = {**model.config_dict(), "onnx": {"inputs": "image", "outputs": "stylized", "opset": OPSET,
                                                  "layout": "NCHW, H and W multiples of 4",
                                                  "graphs": {part: f"{part}.onnx" for part in parts}}}
        (tmp_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        out_dir.mkdir(exist_ok=True)
        written = []
        for path in sorted(tmp_dir.iterdir()):
            target = out_dir / path.name
            shutil.move(str(path), target)
            written.append(target)
    return written
