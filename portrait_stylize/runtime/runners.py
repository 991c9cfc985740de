"""A runner per backend (``torch``, ``torch-bf16``, ``onnx``, ``onnx-int8``, ``openvino``,
``openvino-bf16``, ``openvino-int8``) for one sub-network, and :class:`Runners`, a style's runners
made on first use."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ..errors import InvalidArgumentError
from ..imaging.ops import pad_to_multiple
from ..models.base import Runner
from ..models.ttn import TTN
from ..options import BACKENDS, INT8_BACKENDS
from .openvino_graph import OpenVINOGraph
from .quantize import QuantizationError
from .row_stream import RowStreamedTTN
from .winograd import with_winograd_convolutions

logger = logging.getLogger(__name__)

TORCH_BACKENDS = ("torch", "torch-bf16")
#: Tiles of a network streamed by rows are this many times the pipeline's ``tile_size`` a side:
#: it holds a few dozen rows of activations, not a tile's (2048 px by default: a 2048² picture
#: runs whole, a 4K one in 4 tiles computing 1.08× its pixels, where 512-px tiles compute 1.5×).
STREAM_TILE_FACTOR = 4
#: Tiles of a TTN's int8 and bf16 OpenVINO graphs, a side, times ``tile_size``: fewer, larger
#: tiles compute less context twice (a 4K picture: 1.23× its pixels in 12 windows, where 32 fixed
#: 640-px windows compute 1.58×). 3 or 4 were faster still but took the 4K group photo with
#: faces and regions to 1.95-2.4 GB (docs/performance.md, "Large pictures"). The float32 graph
#: stays at 1: four bytes per value, it runs no faster per pixel on large shapes, and compiling
#: one takes 1-5 s.
GRAPH_TILE_FACTOR = 2
_LOW_PRECISION_GRAPHS = ("openvino-int8", "openvino-bf16")


def _padded(run: Callable[[np.ndarray], np.ndarray], multiple: int,
            release: Callable[[], None] | None = None) -> Runner:
    """A runner for a numpy graph ``run`` whose sides must be multiples of ``multiple``: pads by
    edge replication, runs on the CPU in float32, crops, and returns on the input's device.
    ``release`` (an OpenVINO graph's: the buffers of large inputs given back) becomes its
    ``release`` attribute (:meth:`Runners.release`)."""

    def runner(x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        padded = pad_to_multiple(x.float(), multiple).cpu().contiguous().numpy()
        return torch.from_numpy(run(padded))[..., :h, :w].to(x.device)

    if release is not None:
        runner.release = release
    return runner


def _unet_then_filter(net: nn.Module, unet: Callable[[np.ndarray], np.ndarray]) -> Runner:
    """A TTN whose U-Net runs as the numpy graph ``unet`` (in int8 or bfloat16), then its guided
    filter in float32 PyTorch (``net.finish``: the filter's variance terms need the precision)."""

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net.finish(torch.from_numpy(x), torch.from_numpy(unet(x))).numpy()

    return _padded(run, net.size_multiple, getattr(unet, "release", None))


def int8_runner(net: nn.Module, backend: str, checked: bool = True) -> Runner:
    """The U-Net in int8 (:func:`.quantize.quantized_unet`, refused under its floors unless not
    ``checked``: timing runs on random weights) run by ONNX Runtime (``onnx-int8``) or OpenVINO
    (``openvino-int8``), the guided filter in float32."""
    from .onnx_export import onnx_session
    from .quantize import quantized_unet

    model = quantized_unet(net, checked).onnx
    if backend == "openvino-int8":
        return _unet_then_filter(net, OpenVINOGraph(model))
    session = onnx_session(model)
    return _unet_then_filter(net, lambda x: session.run(None, {"image": x})[0])


def takes(net: nn.Module, backend: str) -> bool:
    """Whether ``backend`` can run ``net``: the int8 and ``openvino-bf16`` backends run a TTN's
    U-Net apart from its guided filter, so they take only networks that have both."""
    return backend not in (*INT8_BACKENDS, "openvino-bf16") or (hasattr(net, "unet") and hasattr(net, "finish"))


def streams(net: nn.Module, backend: str, device: torch.device) -> bool:
    """Whether ``backend`` runs ``net`` on large pictures by rows (:mod:`.row_stream`): a TTN
    with a PyTorch backend on the CPU. (On a GPU whole tensors are what pays.)"""
    return backend in TORCH_BACKENDS and torch.device(device).type == "cpu" and isinstance(net, TTN)


def tiling(net: nn.Module, backend: str, device: torch.device) -> tuple[int, str]:
    """How the pipeline tiles a large picture for ``net`` run by ``backend`` on ``device``:
    ``(factor, cores)``, tiles ``factor`` times its ``tile_size`` a side, cut as
    :data:`portrait_stylize.imaging.tiling.CORE_PLANS` ``[cores]`` says. A network streamed by
    rows (:func:`streams`) takes large tiles with windows only as wide as their context; a TTN's
    int8 or bf16 OpenVINO graph large tiles in windows of one shape per picture (each shape is
    compiled); everything else tiles of ``tile_size`` in windows of one shape for all pictures."""
    if streams(net, backend, device):
        return STREAM_TILE_FACTOR, "tight"
    if backend in _LOW_PRECISION_GRAPHS and torch.device(device).type == "cpu" and takes(net, backend):
        return GRAPH_TILE_FACTOR, "even"
    return 1, "fixed"


def make_runner(net: nn.Module, backend: str, device: torch.device) -> Runner:
    """A callable running the sub-network ``net`` with ``backend`` on ``device``; ``net`` itself
    is not modified.

    The PyTorch backends run a channels-last copy (faster for these convolutions on CPU and GPU;
    a copy because channels-last parameters cannot be saved as safetensors), TTNs on the CPU
    streamed by rows when large (:func:`streams`).
    """
    if backend in TORCH_BACKENDS:
        dtype = torch.bfloat16 if backend == "torch-bf16" else torch.float32
        local = copy.deepcopy(net).to(device=device, dtype=dtype, memory_format=torch.channels_last)
        return RowStreamedTTN(local) if streams(net, backend, device) else local
    if not takes(net, backend):
        raise InvalidArgumentError(f"the {backend} backend runs a network's U-Net apart from its guided filter, and "
                                   f"{type(net).__name__} has none; use torch, onnx or openvino")
    if backend in INT8_BACKENDS:
        return int8_runner(net, backend)
    if backend in ("onnx", "openvino", "openvino-bf16"):
        from .onnx_export import onnx_bytes, onnx_session
        from .onnx_layout import without_transpose_round_trips

        if backend == "openvino-bf16":
            return _unet_then_filter(net, OpenVINOGraph(onnx_bytes(net, "unet"), precision="bf16"))
        if backend == "openvino":
            graph = OpenVINOGraph(without_transpose_round_trips(onnx_bytes(with_winograd_convolutions(net))))
            return _padded(graph, net.size_multiple, graph.release)
        session = onnx_session(onnx_bytes(net))
        return _padded(lambda x: session.run(None, {"image": x})[0], net.size_multiple)
    raise InvalidArgumentError(f"unknown backend {backend!r}; choose auto, {', '.join(BACKENDS)}")


class Runners(dict):
    """Runners for a style's sub-networks by name, each made on first use (an ONNX export or a
    bfloat16 copy costs time and memory, and a style may never use its face network).

    Args:
        nets: the sub-networks by name (:meth:`StyleNetwork.subnetworks`).
        backend, device: as :func:`make_runner`.
        fallback: the backend to switch to (for every sub-network) when ``backend`` refuses a
            network as too imprecise (int8 picked by ``auto``); ``None``: raise instead.
        check, checked: a :class:`~.ranking.CallCheck` of ``auto``'s ranking and the name of the
            sub-network it times (while its backend runs); ``None``: no check.
    """

    def __init__(self, nets: dict[str, nn.Module], backend: str, device: torch.device,
                 fallback: str | None = None, check=None, checked: str | None = None) -> None:
        super().__init__()
        self.nets, self.backend, self.device, self.fallback = nets, backend, device, fallback
        self.check, self.checked = check, checked

    @property
    def tiling(self) -> tuple[int, str]:
        """:func:`tiling` of the sub-networks where they all agree, else (and for a style without
        networks) ``(1, "fixed")``."""
        plans = {tiling(net, self.backend, self.device) for net in self.nets.values()}
        return plans.pop() if len(plans) == 1 else (1, "fixed")

    def release(self) -> None:
        """Give back what the runners made so far hold for large inputs (OpenVINO's buffers for
        large tiles; the pipeline calls it after each whole-image pass)."""
        for runner in list(self.values()):
            release = getattr(getattr(runner, "runner", runner), "release", None)
            if release is not None:
                release()

    def __missing__(self, name: str) -> Runner:
        try:
            runner = make_runner(self.nets[name], self.backend, self.device)
        except QuantizationError as exc:
            if self.fallback is None:
                raise
            logger.warning("%s: running this style on %s instead", exc, self.fallback)
            self.backend, self.fallback = self.fallback, None
            self.clear()
            runner = make_runner(self.nets[name], self.backend, self.device)
        if self.check is not None and name == self.checked and self.backend == self.check.backend:
            runner = self.check.timed(runner)
        self[name] = runner
        return runner
