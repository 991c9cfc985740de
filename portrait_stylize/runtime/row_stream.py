"""A TTN over a large picture a band of rows at a time, every layer's rows computed once.

Exact tiles (:func:`portrait_stylize.imaging.tiling.run_tiled`) give each tile the network's
63 px of context on every side and compute that margin again for each neighbour: 1.27-1.56× the
pixels of one pass. One pass over the whole picture avoids that but is slower per pixel still
(``torch-bf16`` at 2048², AMX: 2-3× a 512² call per pixel): each layer reads and writes a
picture-sized activation that no cache holds. Streaming does neither. The U-Net is traced once
(``torch.fx``) into its layers; the picture is fed a band of rows at a time (:data:`BAND_BYTES`
per channel: 128 rows of a 2048-px-wide picture in bfloat16, 64 in float32), and each layer
computes the rows of its output that its inputs now allow, once. The guided filter follows the
U-Net's output rows the same way and writes the finished rows into the result.

Every row is computed as the whole-picture pass computes it: the picture is padded to the
U-Net's multiple of 4 by repeating its last row and column (as :meth:`TTN.forward` pads), a
convolution's zero padding is added where the picture ends and nowhere else, and an upsampling
or the guided filter runs on more rows than it outputs and is cropped (so that its edge handling
applies only at the picture's real edges). The result equals ``net(x)`` up to the convolution
kernels' summation order (the tests hold float32 to 1e-5 relative).

Memory: each layer keeps, in a window of its own, only the rows that the layers reading it still
need: once they have read a band, the next convolution's context (one to three rows) and the skip
connections' rows until the upsampled path catches up (about 64 full-resolution rows). So what is
held does not grow with the picture's height: about 265 MB for a 1984-px-wide tile in either
precision, the tile and its result included. Element-wise layers write into their window
directly (``out=``), so a band is not copied again to join the rows kept before it.

Layers it streams: :class:`~portrait_stylize.models.ttn.Conv2dSame`,
:func:`~portrait_stylize.models.ttn.upsample2x`, leaky ReLU and sums.
"""

from __future__ import annotations

import operator
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..models.ttn import TTN, Conv2dSame, upsample2x

#: Bytes of a band's activations per channel: a 512² picture's in bfloat16. Halving it cost 10 %
#: more time at 2048² (more, smaller calls), doubling it 20 % (caches; AMX, ``torch-bf16``).
BAND_BYTES = 1 << 19


def band_rows(width: int, element_size: int) -> int:
    """Rows per band of a ``width``-pixel-wide input whose activations take ``element_size``
    bytes: a multiple of 4 (the U-Net's two halvings)."""
    return max(4, BAND_BYTES // element_size // width // 4 * 4)


def _leaky_relu(args: tuple, kwargs: dict, out: torch.Tensor) -> torch.Tensor:
    slope = args[1] if len(args) > 1 else kwargs.get("negative_slope", 0.01)
    return torch.ops.aten.leaky_relu.out(args[0], slope, out=out)


def _add(args: tuple, kwargs: dict, out: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten.add.out(args[0], args[1], out=out)


#: Element-wise functions a traced U-Net may call between its layers, each as a call writing into ``out``.
_ELEMENTWISE = {F.leaky_relu: _leaky_relu, operator.add: _add, torch.add: _add}


class _Tracer(fx.Tracer):
    """Keeps :class:`Conv2dSame` as one layer (its padding depends on the height, which the
    stream decides) and :func:`upsample2x` as one call."""

    def __init__(self) -> None:
        super().__init__(autowrap_functions=(upsample2x,))

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, Conv2dSame) or super().is_leaf_module(m, qualname)


class _UNet(nn.Module):
    def __init__(self, net: TTN) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.unet(x)


class _Stream(ABC):
    """One layer's output as a stream of rows: rows ``[start, end)`` of the ``height`` rows the
    whole-picture pass gives it are held, from row ``offset`` on, in ``rows`` (its window)."""

    def __init__(self, inputs: list[_Stream], height: int, memory_format: torch.memory_format) -> None:
        self.inputs, self.height, self.format = inputs, height, memory_format
        self.readers: list[_Stream] = []
        for source in inputs:
            source.readers.append(self)
        self.rows: torch.Tensor | None = None
        self.offset = self.start = self.end = 0

    def needs(self, first: int, stop: int) -> tuple[int, int]:
        """Rows ``[lo, hi)`` of its input (unclipped) that output rows ``[first, stop)`` read."""
        return first, stop

    def ready(self) -> int:
        """How far this layer's rows can be computed from what its inputs hold now."""
        return min(source.end for source in self.inputs)

    @abstractmethod
    def compute(self, first: int, stop: int) -> None:
        """Compute rows ``[first, stop)`` into the window (the inputs hold what they read)."""

    def view(self, lo: int, hi: int) -> torch.Tensor:
        return self.rows[..., lo - self.offset:hi - self.offset, :]

    def advance(self, band: int) -> None:
        """Compute the rows that its inputs now allow, at most a band (of the input's ``band``
        rows, at this layer's scale: once the picture is all fed, everything would be ready)."""
        stop = min(self.ready(), self.end + max(1, band * self.height // self.inputs[0].height))
        if stop > self.end:
            self.compute(self.end, stop)
            self.end = stop
            for source in self.inputs:
                source.shrink()

    def shrink(self) -> None:
        """Once its readers have read a band, keep only the rows they still need, in a tensor of
        their own: a band of every layer at once would be most of the memory."""
        self.drop()
        if self.rows is not None and self.rows.shape[-2] > 2 * (self.end - self.start):
            self.rows, self.offset = self.view(self.start, self.end).clone(memory_format=self.format), self.start

    def drop(self) -> None:
        """Forget the rows no reader needs any more."""
        keep = min((reader.needs(reader.end, reader.end + 1)[0] for reader in self.readers), default=self.end)
        self.start = min(max(keep, self.start), self.end)

    def room(self, stop: int, like: torch.Tensor) -> torch.Tensor:
        """Where rows ``[end, stop)`` go: a view of the window (after :meth:`drop`)."""
        if self.rows is None or stop - self.offset > self.rows.shape[-2]:
            kept = None if self.rows is None else self.view(self.start, self.end)
            # Room for the kept rows and this band, no more: the window is shrunk to the kept
            # rows again once the band is read (:meth:`shrink`).
            capacity = stop - self.start
            if self.rows is None or capacity > self.rows.shape[-2]:
                self.rows = torch.empty((*like.shape[:2], capacity, like.shape[-1]), dtype=like.dtype,
                                        device=like.device, memory_format=self.format)
            elif self.start - self.offset < self.end - self.start:  # the kept rows overlap their new place
                kept = kept.clone()
            self.offset = self.start
            if kept is not None:
                self.view(self.start, self.end).copy_(kept)
        return self.view(self.end, stop)

    def store(self, first: int, new: torch.Tensor) -> None:
        """Make the computed rows ``new`` (from ``first`` on) part of the window."""
        self.drop()
        if self.start == self.end:  # nothing kept: the new rows are the window
            self.rows, self.offset, self.start = new, first, first
        else:
            self.room(first + new.shape[-2], new).copy_(new)


class _Input(_Stream):
    """The picture's rows, padded to the U-Net's multiple (its last row and column repeated) and
    in the network's dtype and memory format; a band more at each :meth:`advance`."""

    def __init__(self, x: torch.Tensor, multiple: int, dtype: torch.dtype, memory_format: torch.memory_format) -> None:
        super().__init__([], x.shape[-2] + -x.shape[-2] % multiple, memory_format)
        self.x, self.width, self.dtype = x, x.shape[-1] + -x.shape[-1] % multiple, dtype

    def advance(self, band: int) -> None:
        stop = min(self.end + band, self.height)
        if stop > self.end:
            self.compute(self.end, stop)
            self.end = stop

    def padded(self, lo: int, hi: int) -> torch.Tensor:
        """Rows ``[lo, hi)`` of the padded picture (``0 <= lo < hi <= height``), float as given."""
        h, w = self.x.shape[-2:]
        rows = self.x[..., lo:min(hi, h), :] if lo < h else self.x[..., h - 1:, :]
        missing = hi - lo - rows.shape[-2]
        return F.pad(rows, (0, self.width - w, 0, missing), mode="replicate") if missing or self.width > w else rows

    def compute(self, first: int, stop: int) -> None:
        new = self.padded(first, stop).to(self.dtype)
        self.drop()
        self.room(stop, new).copy_(new)


class _Conv(_Stream):
    """:class:`Conv2dSame` on rows: zeros where its input's rows lie outside the picture, no
    padding between bands, its own horizontal padding."""

    def __init__(self, conv: Conv2dSame, source: _Stream, memory_format: torch.memory_format) -> None:
        self.conv = conv
        k, s = conv.kernel_size[0], conv.stride[0]
        self.top, bottom = conv._pads(source.height) if conv.explicit_pad else (k // 2, k // 2)
        super().__init__([source], (source.height + self.top + bottom - k) // s + 1, memory_format)

    def needs(self, first: int, stop: int) -> tuple[int, int]:
        k, s = self.conv.kernel_size[0], self.conv.stride[0]
        return first * s - self.top, (stop - 1) * s - self.top + k

    def ready(self) -> int:
        source = self.inputs[0]
        if source.end == source.height:
            return self.height
        k, s = self.conv.kernel_size[0], self.conv.stride[0]
        return max(0, (source.end + self.top - k) // s + 1)

    def compute(self, first: int, stop: int) -> None:
        conv, source = self.conv, self.inputs[0]
        k, s = conv.kernel_size[0], conv.stride[0]
        lo, hi = self.needs(first, stop)
        slab = source.view(max(lo, 0), min(hi, source.height))
        above, below = max(0, -lo), max(0, hi - source.height)
        if conv.explicit_pad:
            left, right = conv._pads(slab.shape[-1])
            new = F.conv2d(F.pad(slab, (left, right, above, below)), conv.weight, conv.bias, s)
        else:
            # Zero rows by the convolution's own padding (on both sides; the extra rows are
            # cropped), not by a padded copy of the slab.
            rows = max(above, below)
            skip = (rows - above) // s
            new = F.conv2d(slab, conv.weight, conv.bias, s, padding=(rows, k // 2))[..., skip:skip + stop - first, :]
        self.store(first, new)


class _Upsample(_Stream):
    """:func:`upsample2x` on rows: run on one more input row below (and, with half-pixel centres,
    above) than its output rows read, and cropped, so its edge clamping applies only at the
    picture's edges."""

    def __init__(self, node: fx.Node, source: _Stream, memory_format: torch.memory_format) -> None:
        self.mode = node.args[1] if len(node.args) > 1 else node.kwargs["mode"]
        super().__init__([source], 2 * source.height, memory_format)

    def needs(self, first: int, stop: int) -> tuple[int, int]:
        # Output row i samples input row i/2 (TF1's legacy mode) or i/2 - 1/4 (half-pixel centres).
        return first // 2 - (self.mode != "tf_legacy"), (stop - 1) // 2 + 2

    def ready(self) -> int:
        source = self.inputs[0]
        return self.height if source.end == source.height else max(0, 2 * source.end - 2)

    def compute(self, first: int, stop: int) -> None:
        source = self.inputs[0]
        lo, hi = self.needs(first, stop)
        lo, hi = max(lo, 0), min(hi, source.height)
        self.store(first, upsample2x(source.view(lo, hi), self.mode)[..., first - 2 * lo:stop - 2 * lo, :])


class _Elementwise(_Stream):
    """An element-wise function of same-height layers, written into the window (``out=``)."""

    def __init__(self, node: fx.Node, inputs: list[_Stream], memory_format: torch.memory_format) -> None:
        if any(source.height != inputs[0].height for source in inputs):
            raise ValueError(f"{node.name}: element-wise inputs of different heights")
        self.node = node
        super().__init__(inputs, inputs[0].height, memory_format)

    def compute(self, first: int, stop: int) -> None:
        slabs = {n: source.view(first, stop) for n, source in zip(self.node.all_input_nodes, self.inputs)}
        self.drop()
        _ELEMENTWISE[self.node.target](fx.node.map_arg(self.node.args, slabs.__getitem__),
                                       fx.node.map_arg(self.node.kwargs, slabs.__getitem__),
                                       out=self.room(stop, next(iter(slabs.values()))))


class _Finish(_Stream):
    """The TTN's guided filter (:meth:`TTN.finish`) on the U-Net's rows, guided by the padded
    picture in its own dtype: run on its reach (twice the radius) more rows on each side and
    cropped; the finished rows go into ``result`` (the picture's size)."""

    def __init__(self, net: TTN, picture: _Input, unet: _Stream, result: torch.Tensor) -> None:
        self.net, self.picture, self.result, self.reach = net, picture, result, 2 * net.gf_radius
        super().__init__([unet], unet.height, torch.contiguous_format)

    def needs(self, first: int, stop: int) -> tuple[int, int]:
        return first - self.reach, stop + self.reach

    def ready(self) -> int:
        unet = self.inputs[0]
        return self.height if unet.end == unet.height else max(0, unet.end - self.reach)

    def compute(self, first: int, stop: int) -> None:
        lo, hi = self.needs(first, stop)
        lo, hi = max(lo, 0), min(hi, self.height)
        guide = self.picture.padded(lo, hi)
        finished = self.net.finish(guide, self.inputs[0].view(lo, hi).to(guide.dtype))
        h, w = self.result.shape[-2:]
        if first < h:
            self.result[..., first:min(stop, h), :] = finished[..., first - lo:min(stop, h) - lo, :w]


class RowStreamedTTN:
    """A runner for a TTN on the CPU: pictures of more than two bands are streamed (see the
    module docstring); smaller ones run the TTN as it is.

    Args:
        net: the TTN as the backend runs it (its weights' dtype and memory format are used).

    Shapes:
        ``(B, 3, H, W)`` float in the TTN's input range -> ``(B, 3, H, W)`` in ``x``'s dtype, as ``net(x)``.

    Raises:
        TypeError: the U-Net calls something the stream does not know how to run by rows.
    """

    def __init__(self, net: TTN) -> None:
        self.net = net
        root = _UNet(net)
        self._graph = fx.GraphModule(root, _Tracer().trace(root)).graph
        self._modules = dict(root.named_modules())
        weight = net.conv_in.weight
        self._dtype = weight.dtype
        # Activations in the memory format the weights are in (channels-last copies run fastest).
        self._format = torch.contiguous_format if weight.is_contiguous() else torch.channels_last
        for node in self._graph.nodes:
            if node.op == "call_module" and not isinstance(self._modules[node.target], Conv2dSame):
                raise TypeError(f"cannot stream the layer {node.target} ({type(self._modules[node.target]).__name__})")
            if node.op == "call_function" and node.target is not upsample2x and node.target not in _ELEMENTWISE:
                raise TypeError(f"cannot stream a call to {node.target}")
            if node.op == "call_method":
                raise TypeError(f"cannot stream a call to .{node.target}()")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        band = band_rows(x.shape[-1], self.net.conv_in.weight.element_size())
        if x.shape[-2] <= 2 * band:
            return self.net(x)
        result = torch.empty_like(x, memory_format=torch.contiguous_format)
        layers = self._layers(x, result)
        while layers[-1].end < layers[-1].height:
            for layer in layers:  # in the order of the graph: inputs first
                layer.advance(band)
        for layer in layers:  # readers and inputs refer to each other: free the windows now, not at a collection
            layer.rows = None
        return result

    def _layers(self, x: torch.Tensor, result: torch.Tensor) -> list[_Stream]:
        """The streams of one call, inputs before the layers that read them."""
        streams: dict[fx.Node, _Stream] = {}
        picture = None
        for node in self._graph.nodes:
            if node.op == "placeholder":
                picture = streams[node] = _Input(x, self.net.size_multiple, self._dtype, self._format)
            elif node.op == "call_module":
                streams[node] = _Conv(self._modules[node.target], streams[node.args[0]], self._format)
            elif node.target is upsample2x:
                streams[node] = _Upsample(node, streams[node.args[0]], self._format)
            elif node.op == "call_function":
                streams[node] = _Elementwise(node, [streams[n] for n in node.all_input_nodes], self._format)
            elif node.op == "output":
                streams[node] = _Finish(self.net, picture, streams[node.args[0]], result)
        return list(streams.values())
