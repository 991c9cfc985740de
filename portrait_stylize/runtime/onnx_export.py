"""Export a style's sub-networks to ONNX (dynamic batch, height and width) and check them numerically.

Each exported graph is a sub-network's ``forward_aligned`` (for a TTN style: ``head`` and ``bg``,
see :meth:`StyleNetwork.subnetworks <portrait_stylize.models.base.StyleNetwork.subnetworks>`):
input ``image`` ``(B, 3, H, W)`` float32 in the style's ``input_range`` and ``channel_order`` with
``H, W`` multiples of the sub-network's ``size_multiple`` (pad by edge replication, then crop the
output), output ``stylized`` of the same shape, unclipped. Colour order, range and padding stay
outside the graph so that any runtime can feed it. A TTN's output convolution is written as a
sub-pixel convolution (:mod:`.subpixel`: the same values, faster on CPUs), and its stride-2
convolutions pad inside the ``Conv`` (no ``Pad`` node). Styles without sub-networks (built-in
filters, reference-based styles, which run only as a whole in PyTorch) have nothing to export.

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

from ..errors import ExportError, InvalidArgumentError
from ..imaging.ops import pad_to_multiple
from ..models import StyleNetwork
from .subpixel import with_subpixel_output

OPSET = 17
#: How exported graphs are made (this module, the rewrites it applies, int8 quantization). Cached
#: int8 graphs and ``auto``'s remembered rankings include it: when it changes, graphs are made and
#: backends measured again instead of trusting what was made or measured the old way.
GRAPH_VERSION = 2
#: Largest absolute difference between ONNX Runtime and PyTorch accepted by :func:`export_onnx`.
ONNX_TOLERANCE = 1e-4
_CHECK_SHAPES = ((1, 3, 64, 96), (2, 3, 100, 36))


class _Method(nn.Module):
    def __init__(self, net: nn.Module, method: str) -> None:
        super().__init__()
        self.net, self.method = net, method

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return getattr(self.net, self.method)(image)


def onnx_bytes(net: nn.Module, method: str = "forward_aligned") -> bytes:
    """Serialize ``net.<method>`` (float32, on CPU; default ``forward_aligned``, or ``unet`` for a
    TTN's U-Net alone) as an ONNX model with dynamic B, H, W."""
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it; fail with our message, not torch's)
    except ImportError:
        raise ExportError("ONNX export needs the 'onnx' package: pip install onnx onnxruntime") from None
    net = with_subpixel_output(copy.deepcopy(net).float().cpu().eval())
    buffer = io.BytesIO()
    dynamic = {0: "batch", 2: "height", 3: "width"}
    # The tracer warns about shape arithmetic turned into constants and the exporter about its
    # deprecation; both are expected here (shapes only matter through multiples of 4, and the
    # numerical check in export_onnx catches any graph that does not generalise).
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Method(net, method), (torch.zeros(1, 3, 64, 64),), buffer, input_names=["image"],
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


def max_onnx_difference(net: nn.Module, session, shapes=_CHECK_SHAPES) -> float:
    """Largest ``|onnxruntime - torch|`` over random inputs of ``shapes`` (non-square, batch 2;
    sides rounded up to the sub-network's ``size_multiple``)."""
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    reference = copy.deepcopy(net).float().cpu().eval()
    for shape in shapes:
        x = pad_to_multiple(torch.rand(shape, generator=generator) * 2 - 1, net.size_multiple)
        with torch.inference_mode():
            expected = reference.forward_aligned(x).numpy()
        got = session.run(None, {"image": x.numpy()})[0]
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def export_onnx(model: StyleNetwork, out_dir: str | Path) -> list[Path]:
    """Write ``NAME.onnx`` per sub-network (a TTN style: ``head.onnx``, and ``bg.onnx`` when it has
    one) plus ``config.json`` to ``out_dir``.

    Every graph is checked against PyTorch on random non-square inputs; a difference above
    :data:`ONNX_TOLERANCE` raises :class:`ExportError` and leaves ``out_dir`` untouched. Files are
    written to a temporary folder first and moved in place at the end.

    Returns:
        The written file paths.

    Raises:
        InvalidArgumentError: the style has no sub-networks (nothing to export).
        ExportError: a graph does not reproduce PyTorch.
    """
    out_dir = Path(out_dir)
    parts = model.subnetworks()
    if not parts:
        name = model.meta["name"] or "this style"
        raise InvalidArgumentError(f"{name} (arch {model.arch!r}) has no sub-networks that run on their own, so "
                                   "there is nothing to export to ONNX; it runs in PyTorch only")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=f".{out_dir.name}.") as tmp:
        tmp_dir = Path(tmp)
        for part, net in parts.items():
            data = onnx_bytes(net)
            diff = max_onnx_difference(net, onnx_session(data))
            if diff > ONNX_TOLERANCE:
                raise ExportError(f"{part}: ONNX Runtime differs from PyTorch by {diff:.2e} (> {ONNX_TOLERANCE:g})")
            (tmp_dir / f"{part}.onnx").write_bytes(data)
        onnx_info = {"inputs": "image", "outputs": "stylized", "opset": OPSET,
                     "layout": "NCHW, H and W multiples of size_multiple",
                     "size_multiple": {part: net.size_multiple for part, net in parts.items()},
                     "graphs": {part: f"{part}.onnx" for part in parts}}
        config = {**model.config, "onnx": onnx_info}
        (tmp_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        out_dir.mkdir(exist_ok=True)
        written = []
        for path in sorted(tmp_dir.iterdir()):
            target = out_dir / path.name
            shutil.move(str(path), target)
            written.append(target)
    return written
